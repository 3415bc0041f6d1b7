"""Helpers for the prediction-log tests: records, a store that can be held shut, condition
waits, and log environments over Parquet or a real PostgreSQL that a test can break and
repair.

PostgreSQL is the server at ``LENDML_TEST_POSTGRES_URL`` (default
``postgresql://lendml:lendml@127.0.0.1:5432/lendml_test``; ``scripts/services.sh`` starts
one). Each environment gets a database of its own, dropped afterwards. Without a server the
PostgreSQL cases are skipped locally and fail on CI (``CI=true``).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pandas as pd
import pyarrow as pa
import pytest

from lendml.core.config import ParquetLogSettings, PostgresLogSettings
from lendml.serving.prediction_log import (
    LogStore,
    PredictionLog,
    create_log_store,
    open_prediction_log,
    read_prediction_log,
)
from lendml.serving.records import PredictionRecord
from tests.conftest import ON_CI

POSTGRES_URL = os.environ.get(
    "LENDML_TEST_POSTGRES_URL", "postgresql://lendml:lendml@127.0.0.1:5432/lendml_test"
)
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
WAIT = 60.0  # seconds a condition may take on a loaded machine; never a timing assertion


def record(i: int, **changes: Any) -> PredictionRecord:
    """The ``i``-th test record: one per second from T0, five customers, two models."""
    base = {
        "request_id": f"req-{i:06d}",
        "time": T0 + timedelta(seconds=i),
        "model": "credit_pd" if i % 3 else "fraud",
        "version": 1 + i % 2,
        "entity": {"customer_id": i % 5},
        "features": {"dti": i / 1000, "grade": "ABCD"[i % 4], "n_loans": i % 7},
        "score": 600.0 + i,
        "probability": (i % 100) / 100,
        "decision": "decline" if i % 4 == 0 else "approve",
        "reasons": [{"code": "R01", "feature": "dti"}] if i % 4 == 0 else [],
        "role": "champion",
    }
    base.update(changes)
    return PredictionRecord(**base)


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll ``condition`` until it is truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def submit_from_threads(plog: PredictionLog, n: int, threads: int = 4, offset: int = 0) -> None:
    """Submit records ``offset .. offset+n-1`` from ``threads`` threads at once."""
    start = threading.Barrier(threads)

    def work(k: int) -> None:
        start.wait()
        for i in range(offset + k, offset + n, threads):
            plog.submit(record(i))

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


class GatedStore(LogStore):
    """A store that passes writes to ``inner`` only while its gate is open; while shut,
    writes wait (``hang=True``: a hung server) or fail at once (a store that is down)."""

    def __init__(self, inner: LogStore, *, hang: bool = False) -> None:
        self.inner = inner
        self.hang = hang
        self.description = f"gated {inner.description}"
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()

    def write_batch(self, table: pa.Table, *, batch_id: str) -> int:
        if not self.gate.is_set():
            if not self.hang:
                raise ConnectionError("the gate is shut")
            self.waiting.set()
            self.gate.wait()
        return self.inner.write_batch(table, batch_id=batch_id)

    def read(self, start=None, end=None, *, model=None, last=None) -> pa.Table:
        return self.inner.read(start, end, model=model, last=last)

    def erase(self, key: str, value: Any) -> int:
        return self.inner.erase(key, value)

    def prune(self, before: datetime) -> int:
        return self.inner.prune(before)

    def close(self) -> None:
        self.inner.close()


# ---------------------------------------------------------------------------- PostgreSQL


def on_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def postgres_or_skip() -> str:
    """The test server's URL; skipped locally without a server, a failure on CI."""
    import psycopg

    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.Error as exc:
        msg = f"no PostgreSQL for the prediction-log tests ({type(exc).__name__}); start one with scripts/services.sh"
        if ON_CI:
            pytest.fail(f"CI must have a PostgreSQL server: {msg}")
        pytest.skip(msg)
    return POSTGRES_URL


def sql(url: str, statement: str, params: Any = None) -> list[tuple]:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


# ---------------------------------------------------------------------------- environments


class LogEnv:
    """A project folder with a prediction log of one kind that a test can break and repair.

    ``break_store`` makes every write fail the way an outage does: for Parquet the log's
    folder is moved away and a file put in its place; for PostgreSQL the table is renamed
    and a table of the same name with other columns takes its place.
    """

    def __init__(self, kind: str, root: Path, url: str | None, monkeypatch: Any) -> None:
        self.kind = kind
        self.root = root
        self.url = url
        self.url_env = f"LENDML_TEST_PREDLOG_{uuid.uuid4().hex[:8].upper()}"
        if url is not None:
            monkeypatch.setenv(self.url_env, url)
        self.logs: list[PredictionLog] = []
        self.broken = False

    def settings(self, **overrides: Any) -> ParquetLogSettings | PostgresLogSettings:
        common = {
            "retry_initial_seconds": 0.05,
            "retry_max_seconds": 0.2,
            "spool": "data/spool",
        }
        if self.kind == "parquet":  # batch_* overrides name Parquet's rotate_*
            for generic, own in (
                ("batch_rows", "rotate_rows"),
                ("batch_seconds", "rotate_seconds"),
            ):
                if generic in overrides:
                    overrides[own] = overrides.pop(generic)
            fields = {"rotate_rows": 200, "rotate_seconds": 0.2, **common}
            return ParquetLogSettings(**{**fields, **overrides})
        fields = {
            "type": "postgres",
            "url_env": self.url_env,
            "table": "prediction_log",
            "batch_rows": 200,
            "batch_seconds": 0.2,
            "connect_timeout_seconds": 2,
            **common,
        }
        return PostgresLogSettings(**{**fields, **overrides})

    def yaml(self, **overrides: Any) -> str:
        """``lendml.yaml`` for this environment (for CLI tests)."""
        import yaml

        config = {
            "version": 1,
            "name": "predlog_test",
            "prediction_log": self.settings(**overrides).model_dump(),
        }
        (self.root / "lendml.yaml").write_text(yaml.safe_dump(config))
        return str(self.root)

    def open(self, *, store: LogStore | None = None, **overrides: Any) -> PredictionLog:
        plog = open_prediction_log(self.settings(**overrides), self.root, store=store)
        self.logs.append(plog)
        return plog

    def store(self, **overrides: Any) -> LogStore:
        return create_log_store(self.settings(**overrides), self.root)

    def read(self, **kwargs: Any) -> pd.DataFrame:
        return read_prediction_log(self.settings(), self.root, **kwargs)

    def spool_dir(self) -> Path:
        return self.root / "data" / "spool"

    # -- outages
    def break_store(self) -> None:
        if self.kind == "parquet":
            path = self.root / "data" / "prediction_log"
            if path.exists():
                path.rename(path.with_name("prediction_log.away"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("not a folder")
        else:
            assert self.url is not None
            sql(
                self.url,
                "DO $$ BEGIN IF to_regclass('prediction_log') IS NOT NULL THEN "
                "ALTER TABLE prediction_log RENAME TO prediction_log_away; END IF; END $$",
            )
            sql(self.url, "CREATE TABLE prediction_log (decoy int)")
        self.broken = True

    def repair_store(self) -> None:
        if self.kind == "parquet":
            path = self.root / "data" / "prediction_log"
            path.unlink()
            away = path.with_name("prediction_log.away")
            if away.exists():
                away.rename(path)
        else:
            assert self.url is not None
            sql(self.url, "DROP TABLE prediction_log")
            sql(
                self.url,
                "DO $$ BEGIN IF to_regclass('prediction_log_away') IS NOT NULL THEN "
                "ALTER TABLE prediction_log_away RENAME TO prediction_log; END IF; END $$",
            )
        self.broken = False

    def close(self) -> None:
        for plog in self.logs:
            plog.close(timeout=30)


def postgres_database() -> Iterator[str]:
    """A fresh database on the test server (its URL), dropped afterwards."""
    server = postgres_or_skip()
    name = f"lendml_predlog_{uuid.uuid4().hex[:12]}"
    sql(server, f'CREATE DATABASE "{name}"')
    try:
        yield on_database(server, name)
    finally:
        drop_database(server, name)


def drop_database(server: str, name: str, attempts: int = 40) -> None:
    """Drop ``name``. FORCE ends our own leftover connections, but not an autovacuum
    worker that heavy inserts woke there (it belongs to the superuser): wait it out."""
    import psycopg

    for attempt in range(attempts):
        try:
            sql(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
            if attempt == attempts - 1:
                raise
            time.sleep(0.25)


def make_env(kind: str, tmp_path: Path, monkeypatch: Any) -> Iterator[LogEnv]:
    """A :class:`LogEnv` of ``kind``; everything it opened is closed afterwards."""
    root = tmp_path / "project"
    root.mkdir()
    if kind == "parquet":
        env = LogEnv(kind, root, None, monkeypatch)
        yield env
        env.close()
        return
    for url in postgres_database():
        env = LogEnv(kind, root, url, monkeypatch)
        try:
            yield env
        finally:
            env.close()


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)
