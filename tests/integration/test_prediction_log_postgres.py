"""The PostgreSQL prediction log against a real server: what only PostgreSQL has.

The store contract shared with Parquet (round trip, outage under load, crash replay,
erasure, retention, CLI) runs over both stores in
``tests/serving/test_prediction_log_contract.py``. Here: the table's shape, idempotent
inserts, the server going away (connections killed under load; the port closed and opened
again through a proxy), schema-qualified tables and the URL kept out of messages.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from lendml.core.config import PostgresLogSettings
from lendml.errors import ConfigError, StoreError
from lendml.serving._predlog_base import encode, rows_to_table
from lendml.serving.prediction_log import (
    PostgresLogStore,
    open_prediction_log,
    read_prediction_log,
)
from tests.serving.prediction_log_support import (
    postgres_database,
    record,
    sql,
    submit_from_threads,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def database() -> Iterator[str]:
    yield from postgres_database()


def settings(url_env: str, **overrides) -> PostgresLogSettings:
    fields = {
        "type": "postgres",
        "url_env": url_env,
        "batch_rows": 100,
        "batch_seconds": 0.1,
        "retry_initial_seconds": 0.05,
        "retry_max_seconds": 0.3,
        "connect_timeout_seconds": 2,
        "spool": "spool",
    }
    return PostgresLogSettings(**{**fields, **overrides})


def ids(frame) -> list[str]:
    return sorted(frame["request_id"])


def test_the_table_is_made_with_jsonb_columns_and_a_primary_key(database, tmp_path, monkeypatch):
    monkeypatch.setenv("PREDLOG_URL", database)
    with open_prediction_log(settings("PREDLOG_URL"), tmp_path) as plog:
        plog.submit(record(1))
    types = dict(
        sql(
            database,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'prediction_log'",
        )
    )
    assert types["entity"] == types["features"] == types["reasons"] == "jsonb"
    assert types["time"] == "timestamp with time zone"
    assert sql(
        database,
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'prediction_log'::regclass "
        "AND i.indisprimary",
    ) == [("record_key",)]
    assert sql(database, "SELECT entity ->> 'customer_id' FROM prediction_log") == [("1",)]


def test_a_batch_written_twice_is_kept_once(database):
    store = PostgresLogStore(database, "prediction_log")
    table = rows_to_table([encode(record(i)) for i in range(50)])
    assert store.write_batch(table, batch_id="b1") == 50
    assert store.write_batch(table, batch_id="b2") == 0  # another id: the rows still match
    assert store.read().num_rows == 50
    # half old, half new: only the new half is added, in the same transaction
    mixed = rows_to_table([encode(record(i)) for i in range(25, 75)])
    assert store.write_batch(mixed, batch_id="b3") == 25
    assert sorted(store.read()["request_id"].to_pylist()) == [f"req-{i:06d}" for i in range(75)]
    store.close()


# The table as lendml made it before the approval holdout (format 1).
_FORMAT_1 = """
CREATE TABLE prediction_log (
    id bigint GENERATED ALWAYS AS IDENTITY, record_key text PRIMARY KEY,
    request_id text NOT NULL, time timestamptz NOT NULL, model text NOT NULL,
    version bigint NOT NULL, role text NOT NULL, decision text NOT NULL,
    score double precision, probability double precision, reasons jsonb NOT NULL,
    entity jsonb NOT NULL, features jsonb NOT NULL
)
"""


def test_a_table_made_before_the_holdout_columns_is_read_and_then_migrated(database):
    sql(database, _FORMAT_1)
    sql(
        database,
        "INSERT INTO prediction_log (record_key, request_id, time, model, version, role, "
        "decision, reasons, entity, features) VALUES ('k0', 'old', '2026-11-01T00:00:00Z', "
        "'credit_pd', 1, 'champion', 'decline', '[]', '{}', '{}')",
    )
    store = PostgresLogStore(database, "prediction_log")
    before = store.read()  # a reader never alters the table
    assert before["policy_decision"].to_pylist() == [None]
    assert before["explore"].to_pylist() == [None]
    new = record(1, policy_decision="decline", explore=True)
    assert store.write_batch(rows_to_table([encode(new)]), batch_id="b1") == 1  # migrates
    got = store.read()
    assert got["request_id"].to_pylist() == ["old", "req-000001"]
    assert got["policy_decision"].to_pylist() == [None, "decline"]
    assert got["explore"].to_pylist() == [None, True]
    store.close()


def test_killed_connections_under_load_lose_nothing(database, tmp_path, monkeypatch):
    monkeypatch.setenv("PREDLOG_URL", database)
    plog = open_prediction_log(settings("PREDLOG_URL"), tmp_path)
    stop = threading.Event()
    killed = []

    def killer() -> None:
        while not stop.is_set():
            rows = sql(
                database,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'lendml-prediction-log' AND pid <> pg_backend_pid() "
                "AND datname = current_database()",  # never another test's connections
            )
            killed.extend(r for r in rows if r[0])
            stop.wait(0.05)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        submit_from_threads(plog, 3000, threads=4)
        assert plog.flush(timeout=120)
        wait_for(lambda: killed, "a writer connection to be killed")
    finally:
        stop.set()
        thread.join()
    assert plog.flush(timeout=120, drain_spool=True)
    assert ids(plog.read()) == [f"req-{i:06d}" for i in range(3000)]
    assert plog.stats().lost == 0
    plog.close()


class Proxy:
    """A TCP proxy to the server that can be taken down (port closed, connections cut)
    and brought back on the same port: a PostgreSQL outage as clients see it."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            with contextlib.suppress(OSError):  # wakes the accept() blocked in its thread
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


def test_the_server_going_away_and_coming_back(database, tmp_path, monkeypatch):
    parts = urlsplit(database)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.up()
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"
    monkeypatch.setenv("PREDLOG_URL", urlunsplit(parts._replace(netloc=netloc)))
    plog = open_prediction_log(settings("PREDLOG_URL", queue_size=200, spill_rows=100), tmp_path)
    try:
        submit_from_threads(plog, 1000, threads=4)
        assert plog.flush(timeout=60)
        proxy.down()  # the port refuses connections; open ones are cut
        submit_from_threads(plog, 2000, threads=4, offset=1000)
        assert plog.flush(timeout=60)
        stats = plog.stats()
        assert stats.store_failures >= 1 and stats.spool_files >= 1
        assert not plog.flush(timeout=0.5, drain_spool=True)  # still down
        proxy.up()
        assert plog.flush(timeout=120, drain_spool=True)
        assert ids(plog.read()) == [f"req-{i:06d}" for i in range(3000)]
    finally:
        plog.close(timeout=30)
        proxy.down()


def test_a_schema_qualified_table(database, tmp_path, monkeypatch):
    sql(database, "CREATE SCHEMA audit")
    monkeypatch.setenv("PREDLOG_URL", database)
    s = settings("PREDLOG_URL", table="audit.decisions")
    with open_prediction_log(s, tmp_path) as plog:
        for i in range(10):
            plog.submit(record(i))
    assert sql(database, "SELECT count(*) FROM audit.decisions") == [(10,)]
    assert len(read_prediction_log(s, tmp_path)) == 10


def test_table_names_that_are_not_identifiers_are_refused():
    from pydantic import ValidationError

    for bad in ("log; DROP TABLE x", "a.b.c", "1abc", 'x"y'):
        with pytest.raises(ValidationError):
            PostgresLogSettings(type="postgres", table=bad)


def test_the_url_comes_from_the_environment_and_its_password_stays_out_of_messages(
    database, tmp_path, monkeypatch
):
    s = settings("PREDLOG_URL_UNSET")
    monkeypatch.delenv("PREDLOG_URL_UNSET", raising=False)
    with pytest.raises(ConfigError, match=r"\$PREDLOG_URL_UNSET"):
        read_prediction_log(s, tmp_path)

    parts = urlsplit(database)
    wrong = urlunsplit(
        parts._replace(netloc=f"{parts.username}:s3cret-pw@{parts.hostname}:{parts.port}")
    )
    monkeypatch.setenv("PREDLOG_URL", wrong)
    with pytest.raises(StoreError) as info:
        read_prediction_log(settings("PREDLOG_URL"), tmp_path)
    assert "s3cret-pw" not in str(info.value)
    assert ":***@" in str(info.value)


def test_reading_before_anything_was_written_is_empty(database, tmp_path, monkeypatch):
    monkeypatch.setenv("PREDLOG_URL", database)
    assert read_prediction_log(settings("PREDLOG_URL"), tmp_path).empty
    assert sql(database, "SELECT to_regclass('prediction_log')") == [(None,)]
    assert Path(tmp_path / "spool").exists() is False


def test_erase_with_the_server_down_changes_nothing(database, tmp_path, monkeypatch):
    parts = urlsplit(database)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.up()
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"
    monkeypatch.setenv("PREDLOG_URL", urlunsplit(parts._replace(netloc=netloc)))
    s = settings("PREDLOG_URL")
    try:
        with open_prediction_log(s, tmp_path) as plog:
            for i in range(20):
                plog.submit(record(i))
            assert plog.flush(timeout=60)
            proxy.down()
            for i in range(20, 30):
                plog.submit(record(i))
            assert plog.flush(timeout=60)
            with pytest.raises(StoreError, match="Could not erase"):
                plog.erase("customer_id", 1)
            assert plog.spool.records() == 10  # the spool's records of customer 1 are kept
            proxy.up()
            report = plog.erase("customer_id", 1)
            assert (report.store, report.spool) == (4, 2)
            assert plog.flush(timeout=120, drain_spool=True)
        assert len(read_prediction_log(s, tmp_path)) == 24
    finally:
        proxy.down()
