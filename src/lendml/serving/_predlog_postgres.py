"""The production prediction-log store: one PostgreSQL table (psycopg 3).

The table is created if missing, the first time the store reaches the server. Entity keys,
features and reasons are ``jsonb``; ``record_key`` (a hash of request id, role, model,
version and entity keys) is the primary key, and rows are inserted with
``ON CONFLICT DO NOTHING``, so a replayed batch never adds a row twice. A batch is copied
straight into the table in one transaction (all or nothing); if one of its keys is already
there (a replay), the copy is undone and the batch goes through a temporary staging table
and ``INSERT ... ON CONFLICT DO NOTHING`` instead.

The writer thread keeps one connection and reconnects after a failure; reads, erasure and
pruning open a short-lived connection of their own.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa

from lendml.errors import StoreError
from lendml.serving._predlog_base import (
    ADDED_COLUMNS,
    COLUMNS,
    SCHEMA,
    LogStore,
    concat,
    conform,
    empty_table,
    key_text,
)

_DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    id bigint GENERATED ALWAYS AS IDENTITY,
    record_key text PRIMARY KEY,
    request_id text NOT NULL,
    time timestamptz NOT NULL,
    model text NOT NULL,
    version bigint NOT NULL,
    role text NOT NULL,
    decision text NOT NULL,
    score double precision,
    probability double precision,
    reasons jsonb NOT NULL,
    entity jsonb NOT NULL,
    features jsonb NOT NULL,
    policy_decision text,
    explore boolean
)
"""
# A table made before the approval holdout existed gets its columns (null in old rows).
_MIGRATE = (
    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS policy_decision text, "
    "ADD COLUMN IF NOT EXISTS explore boolean"
)
_STAGE = "lendml_prediction_log_stage"
_JSON = frozenset(("reasons", "entity", "features"))


def redact(url: str) -> str:
    """``url`` with its password masked, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unparsable URL)"
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresLogStore(LogStore):
    """Prediction-log records in the PostgreSQL table ``table`` (see the module docstring).

    Parameters
    ----------
    url
        A libpq URL (``postgresql://user:password@host:5432/db``); shown only redacted.
    table
        The table name, optionally ``schema.table`` (validated by the settings).
    connect_timeout, statement_timeout
        Seconds before a connection attempt or a statement gives up, so a hung server
        turns into a failure (and a spooled batch) instead of a stuck writer.
    """

    def __init__(
        self,
        url: str,
        table: str = "prediction_log",
        *,
        connect_timeout: int = 5,
        statement_timeout: int = 60,
    ) -> None:
        import psycopg  # noqa: F401 - fail here, with the extra's name, if it is missing

        self._url = url
        self.table = table
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.description = f"PostgreSQL table {table} at {redact(url)}"
        self._conn: Any = None
        self._table_ready = False
        self._lock = threading.Lock()

    # -- connections
    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(
            self._url,
            connect_timeout=self.connect_timeout,
            options=f"-c statement_timeout={self.statement_timeout * 1000}",
            application_name="lendml-prediction-log",
        )

    def _ident(self) -> Any:
        from psycopg import sql

        return sql.Identifier(*self.table.split("."))

    def _ensure_table(self, conn: Any) -> None:
        """Create the table once per store: after that a missing table is a failure (it
        was renamed or dropped), not something to paper over with an empty new one."""
        if self._table_ready:
            return
        from psycopg import sql

        table = self._ident()
        index = sql.Identifier(f"{self.table.split('.')[-1]}_time_idx")
        with conn.transaction():
            conn.execute(sql.SQL(_DDL).format(table=table))
            conn.execute(sql.SQL(_MIGRATE).format(table=table))
            conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (time)").format(index, table))
        self._table_ready = True

    def _short(self, op: str, exc: Exception) -> StoreError:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return StoreError(
            f"Could not {op} the prediction log ({self.description}): {first}. Check that "
            f"the server is up and the URL's environment variable is right.",
            table=self.table,
        )

    # -- writing
    def write_batch(self, table: pa.Table, *, batch_id: str) -> int:
        del batch_id  # the primary key makes replays idempotent, whatever the batch
        table = conform(table)
        if table.num_rows == 0:
            return 0
        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                self._ensure_table(self._conn)
                return self._insert(self._conn, table)
            except BaseException:
                self._drop_connection()
                raise

    def _insert(self, conn: Any, table: pa.Table) -> int:
        """Insert the rows, all or nothing. The usual case (no row is in the table yet)
        copies straight into the table; a batch that meets an existing key (a replay) goes
        through a staging table and ``INSERT ... ON CONFLICT DO NOTHING``."""
        import psycopg
        from psycopg import sql

        names = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
        rows = list(zip(*(table[c].to_pylist() for c in COLUMNS), strict=True))
        with conn.transaction(), conn.cursor() as cur:
            try:
                with conn.transaction():  # a savepoint: a conflict undoes only the copy
                    self._copy(cur, self._ident(), names, rows)
                return len(rows)
            except psycopg.errors.UniqueViolation:
                pass
            stage = sql.Identifier(_STAGE)
            cur.execute(
                sql.SQL(
                    "CREATE TEMP TABLE IF NOT EXISTS {stage} (record_key text, request_id text, "
                    "time timestamptz, model text, version bigint, role text, decision text, "
                    "score double precision, probability double precision, reasons jsonb, "
                    "entity jsonb, features jsonb, policy_decision text, explore boolean) "
                    "ON COMMIT DELETE ROWS"
                ).format(stage=stage)
            )
            self._copy(cur, stage, names, rows)
            cur.execute(
                sql.SQL(
                    "INSERT INTO {table} ({names}) SELECT {names} FROM {stage} "
                    "ON CONFLICT (record_key) DO NOTHING"
                ).format(table=self._ident(), names=names, stage=stage)
            )
            return max(cur.rowcount, 0)

    @staticmethod
    def _copy(cur: Any, target: Any, names: Any, rows: list[tuple[Any, ...]]) -> None:
        from psycopg import sql

        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(target, names)) as copy:
            for row in rows:
                copy.write_row(row)

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # A broken connection may fail to close; it is dropped either way.
            with contextlib.suppress(Exception):
                conn.close()

    # -- reading and deleting (own connections)
    def _run(self, op: str, work: Any) -> Any:
        import psycopg

        try:
            with self._connect() as conn:
                return work(conn)
        except psycopg.errors.UndefinedTable:
            return None
        except psycopg.Error as exc:
            raise self._short(op, exc) from exc

    def read(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        model: str | None = None,
        last: int | None = None,
    ) -> pa.Table:
        from psycopg import sql

        where, params = [], []
        if start is not None:
            where.append(sql.SQL("time >= %s"))
            params.append(start)
        if end is not None:
            where.append(sql.SQL("time < %s"))
            params.append(end)
        if model is not None:
            where.append(sql.SQL("model = %s"))
            params.append(model)

        def query(columns: list[str]) -> Any:
            select = sql.SQL(", ").join(
                sql.SQL("{}::text").format(sql.Identifier(c)) if c in _JSON else sql.Identifier(c)
                for c in columns
            )
            q = sql.SQL("SELECT {}, id FROM {}").format(select, self._ident())
            if where:
                q += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
            if last is None:
                return q + sql.SQL(" ORDER BY time, id")
            # the newest `last`, then back to oldest first
            q += sql.SQL(" ORDER BY time DESC, id DESC LIMIT {}").format(sql.Literal(last))
            return sql.SQL("SELECT * FROM ({}) AS newest ORDER BY time, id").format(q)

        def work(conn: Any) -> pa.Table:
            import psycopg

            columns = list(COLUMNS)
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute(query(columns), params)
                    rows = cur.fetchall()
            except psycopg.errors.UndefinedColumn:
                # a table no writer has migrated yet (made before the approval holdout)
                columns = [c for c in COLUMNS if c not in ADDED_COLUMNS]
                with conn.cursor() as cur:
                    cur.execute(query(columns), params)
                    rows = cur.fetchall()
            if not rows:
                return empty_table()
            cols = list(zip(*rows, strict=True))[: len(columns)]  # without id
            return concat(
                [
                    pa.table(
                        [
                            pa.array(c, type=SCHEMA.field(name).type)
                            for c, name in zip(cols, columns, strict=True)
                        ],
                        names=columns,
                    )
                ]
            )

        result = self._run("read", work)
        return empty_table() if result is None else result

    def erase(self, key: str, value: Any) -> int:
        from psycopg import sql

        query = sql.SQL("DELETE FROM {} WHERE entity ->> %s = %s").format(self._ident())

        def work(conn: Any) -> int:
            with conn.transaction():
                return max(conn.execute(query, (key, key_text(value))).rowcount, 0)

        return self._run("erase records from", work) or 0

    def prune(self, before: datetime) -> int:
        from psycopg import sql

        query = sql.SQL("DELETE FROM {} WHERE time < %s").format(self._ident())

        def work(conn: Any) -> int:
            with conn.transaction():
                return max(conn.execute(query, (before,)).rowcount, 0)

        return self._run("prune", work) or 0

    def close(self) -> None:
        with self._lock:
            self._drop_connection()
