#!/usr/bin/env bash
# Services for the integration tests: a throw-away Redis on 127.0.0.1.
#
#   scripts/services.sh [start]   install redis-server if missing (Debian/Ubuntu apt), start
#                                 it unless one already answers, wait until it does
#   scripts/services.sh status    say whether Redis answers
#   scripts/services.sh stop      stop the Redis this script started (never another one)
#
# The server keeps nothing on disk (no RDB snapshots, no AOF): it holds test data only.
# LENDML_REDIS_PORT picks the port (default 6379); the tests read LENDML_TEST_REDIS_URL
# (default redis://127.0.0.1:6379/15) and flush only their own keys in that database.
# Running it twice is harmless: a server that already answers is left as it is.
set -euo pipefail

PORT="${LENDML_REDIS_PORT:-6379}"
RUN_DIR="${TMPDIR:-/tmp}/lendml-redis-${PORT}"
PIDFILE="${RUN_DIR}/redis.pid"
LOGFILE="${RUN_DIR}/redis.log"

say() { printf 'services: %s\n' "$*"; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

redis_answers() {
  command -v redis-cli >/dev/null 2>&1 &&
    [ "$(redis-cli -h 127.0.0.1 -p "$PORT" ping 2>/dev/null || true)" = "PONG" ]
}

install_redis() {
  if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 ||
    die "redis-server is not installed and this system has no apt-get; install Redis 6+ \
yourself (e.g. 'brew install redis' or your distribution's package) and re-run."
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 ||
      die "redis-server is not installed; run 'apt-get install -y redis-server' as root and re-run."
    sudo="sudo"
  fi
  say "installing redis-server from the Debian packages"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
  command -v redis-server >/dev/null 2>&1 || die "apt-get did not install redis-server."
}

start_redis() {
  if redis_answers; then
    say "redis already answers on 127.0.0.1:${PORT}"
    return 0
  fi
  install_redis
  mkdir -p "$RUN_DIR"
  # No persistence: --save '' turns off RDB snapshots, --appendonly no the AOF.
  redis-server --bind 127.0.0.1 --port "$PORT" --daemonize yes \
    --save '' --appendonly no --dir "$RUN_DIR" \
    --pidfile "$PIDFILE" --logfile "$LOGFILE" ||
    die "redis-server did not start; see ${LOGFILE}"
  for _ in $(seq 1 100); do
    if redis_answers; then
      say "redis started on 127.0.0.1:${PORT} (pid $(cat "$PIDFILE" 2>/dev/null || echo '?'), log ${LOGFILE})"
      return 0
    fi
    sleep 0.1
  done
  tail -n 20 "$LOGFILE" >&2 2>/dev/null || true
  die "redis-server was started but 'redis-cli -p ${PORT} ping' did not answer PONG within 10 s; see ${LOGFILE}"
}

stop_redis() {
  if [ ! -s "$PIDFILE" ]; then
    say "no redis started by this script on port ${PORT} (no ${PIDFILE}); nothing to stop"
    return 0
  fi
  local pid
  pid="$(cat "$PIDFILE")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
  rm -f "$PIDFILE"
  say "redis on port ${PORT} stopped"
}

case "${1:-start}" in
  start) start_redis ;;
  stop) stop_redis ;;
  status)
    if redis_answers; then say "redis answers on 127.0.0.1:${PORT}"; else say "redis is not running on 127.0.0.1:${PORT}"; exit 1; fi
    ;;
  *) die "unknown command '$1'; use start, status or stop" ;;
esac
