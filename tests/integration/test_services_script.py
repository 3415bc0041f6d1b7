"""scripts/services.sh: idempotent start, status of both services, stop of its own only."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from pathlib import Path

import psycopg2
import pytest

from tests.conftest import ON_CI

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "services.sh"


def services(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_start_twice_is_harmless_and_status_reports_both():
    before = services("status")
    if before.returncode != 0:
        msg = f"the services are not running ({before.stdout.strip()}); run scripts/services.sh"
        if ON_CI:
            pytest.fail(f"CI must have started them: {msg}")
        pytest.skip(msg)
    for _ in range(2):
        again = services("start")
        assert again.returncode == 0, again.stderr
        assert "redis already answers on 127.0.0.1:" in again.stdout
        assert "postgresql already answers on 127.0.0.1:" in again.stdout
        assert "started on" not in again.stdout
    status = services("status")
    assert status.returncode == 0, status.stderr
    assert "redis answers on 127.0.0.1:" in status.stdout
    assert "postgresql answers on 127.0.0.1:" in status.stdout


@pytest.mark.slow
def test_a_full_cycle_on_ports_of_its_own_touches_no_other_server():
    have_pg = glob.glob("/usr/lib/postgresql/*/bin/initdb") or shutil.which("initdb")
    if not (shutil.which("redis-server") and have_pg):
        msg = "redis-server or PostgreSQL's initdb is not installed; scripts/services.sh installs them"
        if ON_CI:
            pytest.fail(f"CI must have them: {msg}")
        pytest.skip(msg)
    redis_port, pg_port = free_port(), free_port()
    env = {
        "TMPDIR": "/tmp",
        "LENDML_REDIS_PORT": str(redis_port),
        "LENDML_PG_PORT": str(pg_port),
        "LENDML_PG_PASSWORD": "cycle-test-only",
    }
    pg_dir = Path(f"/tmp/lendml-postgres-{pg_port}")
    try:
        first = services("start", env=env)
        assert first.returncode == 0, first.stderr
        assert f"redis started on 127.0.0.1:{redis_port}" in first.stdout
        assert f"postgresql started on 127.0.0.1:{pg_port}" in first.stdout

        def connect(password: str):
            return psycopg2.connect(
                host="127.0.0.1",
                port=pg_port,
                user="lendml",
                password=password,
                dbname="lendml_test",
                connect_timeout=3,
            )

        with connect("cycle-test-only") as conn, conn.cursor() as cur:
            cur.execute("SELECT current_database(), current_user")
            assert cur.fetchone() == ("lendml_test", "lendml")
        conn.close()
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            connect("not-the-password")

        second = services("start", env=env)
        assert second.returncode == 0, second.stderr
        assert f"redis already answers on 127.0.0.1:{redis_port}" in second.stdout
        assert f"postgresql already answers on 127.0.0.1:{pg_port}" in second.stdout
        status = services("status", env=env)
        assert status.returncode == 0
        assert f"redis answers on 127.0.0.1:{redis_port}" in status.stdout
        assert f"postgresql answers on 127.0.0.1:{pg_port} (started by this script" in status.stdout

        # Seen from another folder the same server is someone else's: left alone.
        other = {**env, "LENDML_PG_DIR": f"{pg_dir}-other"}
        foreign = services("start", "postgres", env=other)
        assert foreign.returncode == 0, foreign.stderr
        assert "not started by this script already answers" in foreign.stdout
        assert "nothing to stop" in services("stop", "postgres", env=other).stdout
        assert not Path(f"{pg_dir}-other").exists()
        assert services("status", "postgres", env=env).returncode == 0

        stopped = services("stop", env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert f"redis on port {redis_port} stopped" in stopped.stdout
        assert f"postgresql on port {pg_port} stopped" in stopped.stdout
        assert not pg_dir.exists()
        after = services("status", env=env)
        assert after.returncode == 1
        assert f"redis is not running on 127.0.0.1:{redis_port}" in after.stdout
        assert f"postgresql is not running on 127.0.0.1:{pg_port}" in after.stdout
        assert "nothing to stop" in services("stop", "postgres", env=env).stdout
    finally:
        services("stop", env=env)
