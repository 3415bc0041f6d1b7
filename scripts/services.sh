#!/usr/bin/env bash
# Services for the integration tests: a throw-away Redis and a throw-away PostgreSQL on
# 127.0.0.1.
#
#   scripts/services.sh [start] [SERVICE...]   install what is missing (Debian/Ubuntu apt),
#                                              start each service unless one already
#                                              answers on its port, wait until it does
#   scripts/services.sh status [SERVICE...]    say whether each service answers (exit 1
#                                              if one does not)
#   scripts/services.sh stop [SERVICE...]      stop what this script started (never another
#                                              server)
#
# SERVICE is `redis` or `postgres`; without one, both. Running `start` twice is harmless: a
# server that already answers is left as it is.
#
# Redis keeps nothing on disk (no RDB snapshots, no AOF): it holds test data only.
# LENDML_REDIS_PORT picks the port (default 6379); the tests read LENDML_TEST_REDIS_URL
# (default redis://127.0.0.1:6379/15) and flush only their own keys in that database.
#
# PostgreSQL runs as a cluster of its own in LENDML_PG_DIR (default
# $TMPDIR/lendml-postgres-PORT), owned by the `postgres` system user when run as root, on
# 127.0.0.1:LENDML_PG_PORT (default 5432), with fsync off (test data only). It has the role
# LENDML_PG_USER (default lendml) with the password LENDML_PG_PASSWORD (default `lendml`, a
# TEST-ONLY password: never use it for a real database) and the database LENDML_PG_DB
# (default lendml_test); the role may create databases, so each test can use its own. TCP
# connections authenticate with a password (scram-sha-256); the Unix socket lives in the
# cluster's folder, readable by its owner only. The tests read LENDML_TEST_POSTGRES_URL
# (default postgresql://lendml:lendml@127.0.0.1:5432/lendml_test). `stop` stops the cluster
# and deletes its folder. When apt-get installs PostgreSQL here, the package is kept from
# creating a system cluster `main`, which would otherwise take port 5432.
set -euo pipefail

REDIS_PORT="${LENDML_REDIS_PORT:-6379}"
REDIS_DIR="${TMPDIR:-/tmp}/lendml-redis-${REDIS_PORT}"
REDIS_PIDFILE="${REDIS_DIR}/redis.pid"
REDIS_LOG="${REDIS_DIR}/redis.log"

PG_PORT="${LENDML_PG_PORT:-5432}"
PG_DIR="${LENDML_PG_DIR:-${TMPDIR:-/tmp}/lendml-postgres-${PG_PORT}}"
PG_DATA="${PG_DIR}/data"
PG_LOG="${PG_DIR}/postgres.log"
PG_MARK="${PG_DIR}/.lendml-services"  # this folder was made by this script (safe to delete)
PG_USER="${LENDML_PG_USER:-lendml}"
PG_DB="${LENDML_PG_DB:-lendml_test}"
PG_PASSWORD="${LENDML_PG_PASSWORD:-lendml}"  # test-only default, see above

say() { printf 'services: %s\n' "$*"; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "'$*' needs root and sudo is missing; run it as root and re-run."
  fi
}

apt_install() {
  command -v apt-get >/dev/null 2>&1 ||
    die "$1 is not installed and this system has no apt-get; install it yourself (e.g. \
'brew install $1' or your distribution's package) and re-run."
  say "installing $* from the Debian packages"
  if [ -z "${APT_UPDATED:-}" ]; then
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---------------------------------------------------------------------------- Redis

redis_answers() {
  command -v redis-cli >/dev/null 2>&1 &&
    [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null || true)" = "PONG" ]
}

install_redis() {
  if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    return 0
  fi
  apt_install redis-server
  command -v redis-server >/dev/null 2>&1 || die "apt-get did not install redis-server."
}

start_redis() {
  if redis_answers; then
    say "redis already answers on 127.0.0.1:${REDIS_PORT}"
    return 0
  fi
  install_redis
  mkdir -p "$REDIS_DIR"
  # No persistence: --save '' turns off RDB snapshots, --appendonly no the AOF.
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
    --save '' --appendonly no --dir "$REDIS_DIR" \
    --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" ||
    die "redis-server did not start; see ${REDIS_LOG}"
  for _ in $(seq 1 100); do
    if redis_answers; then
      say "redis started on 127.0.0.1:${REDIS_PORT} (pid $(cat "$REDIS_PIDFILE" 2>/dev/null || echo '?'), log ${REDIS_LOG})"
      return 0
    fi
    sleep 0.1
  done
  tail -n 20 "$REDIS_LOG" >&2 2>/dev/null || true
  die "redis-server was started but 'redis-cli -p ${REDIS_PORT} ping' did not answer PONG within 10 s; see ${REDIS_LOG}"
}

stop_redis() {
  if [ ! -s "$REDIS_PIDFILE" ]; then
    say "no redis started by this script on port ${REDIS_PORT} (no ${REDIS_PIDFILE}); nothing to stop"
    return 0
  fi
  local pid
  pid="$(cat "$REDIS_PIDFILE")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
  rm -f "$REDIS_PIDFILE"
  say "redis on port ${REDIS_PORT} stopped"
}

status_redis() {
  if redis_answers; then
    say "redis answers on 127.0.0.1:${REDIS_PORT}"
  else
    say "redis is not running on 127.0.0.1:${REDIS_PORT}"
    return 1
  fi
}

# ---------------------------------------------------------------------------- PostgreSQL

# The folder with initdb/pg_ctl/postgres: the newest Debian version, else whatever is on PATH.
pg_bindir() {
  local initdb
  initdb="$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)"
  [ -n "$initdb" ] || initdb="$(command -v initdb 2>/dev/null || true)"
  [ -n "$initdb" ] && dirname "$initdb"
}

# Run a server program as the cluster's owner: `postgres` for root (the server refuses to
# run as root), otherwise the calling user.
pg_owner() { if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi; }
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_answers() {
  local bin
  bin="$(pg_bindir || true)"
  if [ -n "$bin" ] && [ -x "$bin/pg_isready" ]; then
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2
  elif command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h 127.0.0.1 -p "$PG_PORT" -t 2
  else
    return 1
  fi
}

# Whether the cluster in PG_DATA (made by this script) is running.
pg_ours_running() {
  local bin
  [ -f "$PG_MARK" ] && [ -s "$PG_DATA/postmaster.pid" ] || return 1
  bin="$(pg_bindir || true)"
  [ -n "$bin" ] && as_owner "$bin/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

install_postgres() {
  if [ -n "$(pg_bindir || true)" ]; then
    return 0
  fi
  # The postgresql-NN package creates a cluster `main` on port 5432 on first install (and
  # starts it where services start on install). Only this script's own cluster is wanted,
  # so turn that off for the install, as the official postgres Docker image does, and put
  # the setting back afterwards (the package reads it only on a first install).
  command -v apt-get >/dev/null 2>&1 ||
    die "PostgreSQL's server programs (initdb, pg_ctl) are not installed and this system has \
no apt-get; install PostgreSQL 13+ yourself (e.g. 'brew install postgresql@16') and re-run."
  apt_install postgresql-common
  local conf=/etc/postgresql-common/createcluster.conf saved
  saved="$(mktemp)"
  as_root cp -p "$conf" "$saved"
  as_root pg_conftool "$conf" set create_main_cluster false
  if ! apt_install postgresql; then
    as_root cp -p "$saved" "$conf"
    rm -f "$saved"
    die "apt-get could not install postgresql."
  fi
  as_root cp -p "$saved" "$conf"
  rm -f "$saved"
  [ -n "$(pg_bindir || true)" ] || die "apt-get did not install PostgreSQL's server programs."
}

# SQL for the role and the test database, idempotent (sent on stdin: no password in argv).
pg_setup_sql() {
  local pw="${PG_PASSWORD//\'/\'\'}"
  cat <<SQL
SELECT format('CREATE ROLE %I LOGIN', '${PG_USER}')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${PG_USER}') \\gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB PASSWORD %L', '${PG_USER}', '${pw}') \\gexec
SELECT format('CREATE DATABASE %I OWNER %I', '${PG_DB}', '${PG_USER}')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '${PG_DB}') \\gexec
SQL
}

pg_setup_role() {
  pg_setup_sql | as_owner "$(pg_bindir)/psql" -X -q -v ON_ERROR_STOP=1 \
    -h "$PG_DIR" -p "$PG_PORT" -U postgres -d postgres >/dev/null ||
    die "could not create role ${PG_USER} and database ${PG_DB}; see ${PG_LOG}"
}

start_postgres() {
  local ident='^[a-z_][a-z0-9_]*$'
  [[ "$PG_USER" =~ $ident ]] || die "LENDML_PG_USER must match ${ident}; got '${PG_USER}'"
  [[ "$PG_DB" =~ $ident ]] || die "LENDML_PG_DB must match ${ident}; got '${PG_DB}'"
  if pg_ours_running; then
    pg_setup_role
    say "postgresql already answers on 127.0.0.1:${PG_PORT} (started by this script, data ${PG_DATA})"
    return 0
  fi
  if pg_answers; then
    say "a PostgreSQL server not started by this script already answers on 127.0.0.1:${PG_PORT}; \
leaving it alone (the tests need role ${PG_USER} and database ${PG_DB} on it; or set LENDML_PG_PORT \
to start one of ours on another port)"
    return 0
  fi
  local began=$SECONDS bin owner
  install_postgres
  bin="$(pg_bindir)"
  owner="$(pg_owner)"
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "there is no 'postgres' system user to own the cluster; \
create one (useradd --system postgres) or run this script as a normal user."
  fi
  if [ ! -s "$PG_DATA/PG_VERSION" ]; then
    if [ -e "$PG_DIR" ] && [ ! -f "$PG_MARK" ]; then
      die "${PG_DIR} exists but was not made by this script; remove it or set LENDML_PG_DIR."
    fi
    rm -rf "$PG_DATA"  # what an earlier, interrupted initdb left
    mkdir -p "$(dirname "$PG_DIR")"
    as_owner test -x "$(dirname "$PG_DIR")" ||
      die "the cluster's owner (${owner}) cannot reach $(dirname "$PG_DIR"); set LENDML_PG_DIR \
to a folder under /tmp."
    mkdir -p "$PG_DIR"
    touch "$PG_MARK"
    chown "$owner" "$PG_DIR"
    chmod 700 "$PG_DIR"
    as_owner "$bin/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
      --auth-local=trust --auth-host=scram-sha-256 >"$PG_DIR/initdb.log" 2>&1 ||
      { tail -n 20 "$PG_DIR/initdb.log" >&2; die "initdb failed; see ${PG_DIR}/initdb.log"; }
    # Only TCP on 127.0.0.1 and a socket in the cluster's folder (never /var/run/postgresql,
    # where a system cluster's socket lives); test data only, so no fsync.
    as_owner tee -a "$PG_DATA/postgresql.conf" >/dev/null <<CONF

# scripts/services.sh: a throw-away cluster for the integration tests
listen_addresses = '127.0.0.1'
port = ${PG_PORT}
unix_socket_directories = '${PG_DIR}'
unix_socket_permissions = 0700
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  fi
  as_owner "$bin/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t 30 >/dev/null ||
    { tail -n 20 "$PG_LOG" >&2 2>/dev/null || true; die "postgres did not start; see ${PG_LOG}"; }
  for _ in $(seq 1 100); do
    if pg_answers; then
      pg_setup_role
      say "postgresql started on 127.0.0.1:${PG_PORT} in $((SECONDS - began)) s (database ${PG_DB}, \
role ${PG_USER}; data ${PG_DATA}, log ${PG_LOG})"
      return 0
    fi
    sleep 0.1
  done
  tail -n 20 "$PG_LOG" >&2 2>/dev/null || true
  die "postgres was started but 'pg_isready -h 127.0.0.1 -p ${PG_PORT}' did not answer within 10 s; see ${PG_LOG}"
}

stop_postgres() {
  if [ ! -f "$PG_MARK" ]; then
    say "no postgresql started by this script on port ${PG_PORT} (no ${PG_MARK}); nothing to stop"
    return 0
  fi
  local bin
  bin="$(pg_bindir || true)"
  if [ -n "$bin" ] && [ -s "$PG_DATA/postmaster.pid" ]; then
    as_owner "$bin/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 30 >/dev/null 2>&1 || true
  fi
  if pg_ours_running; then
    die "the postgresql in ${PG_DATA} did not stop; see ${PG_LOG}"
  fi
  rm -rf "$PG_DIR"
  say "postgresql on port ${PG_PORT} stopped (its folder ${PG_DIR} deleted)"
}

status_postgres() {
  if pg_ours_running; then
    say "postgresql answers on 127.0.0.1:${PG_PORT} (started by this script, data ${PG_DATA})"
  elif pg_answers; then
    say "postgresql answers on 127.0.0.1:${PG_PORT} (not started by this script)"
  else
    say "postgresql is not running on 127.0.0.1:${PG_PORT}"
    return 1
  fi
}

# ---------------------------------------------------------------------------- main

command="${1:-start}"
[ $# -gt 0 ] && shift
services=("$@")
[ ${#services[@]} -gt 0 ] || services=(redis postgres)
for service in "${services[@]}"; do
  case "$service" in
    redis | postgres) ;;
    postgresql) ;;
    *) die "unknown service '${service}'; use redis or postgres" ;;
  esac
done

failed=0
case "$command" in
  start | stop | status)
    for service in "${services[@]}"; do
      case "$service" in postgresql) service=postgres ;; esac
      "${command}_${service}" || failed=1
    done
    ;;
  *) die "unknown command '${command}'; use start, status or stop" ;;
esac
exit "$failed"
