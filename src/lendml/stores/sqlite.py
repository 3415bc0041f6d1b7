"""SQLite online store: the embedded default (one file, zero setup)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lendml.errors import StoreError
from lendml.stores.base import (
    OnlineRecord,
    OnlineStore,
    decode_values,
    encode_key,
    encode_values,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    view TEXT NOT NULL,
    entity_key TEXT NOT NULL,
    as_of_us INTEGER NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (view, entity_key)
) WITHOUT ROWID
"""
_UPSERT = """
INSERT INTO features (view, entity_key, as_of_us, payload) VALUES (?, ?, ?, ?)
ON CONFLICT (view, entity_key) DO UPDATE
SET as_of_us = excluded.as_of_us, payload = excluded.payload
WHERE excluded.as_of_us >= features.as_of_us
"""


class SQLiteOnlineStore(OnlineStore):
    """Features in one SQLite table, WAL mode, one transaction per batch.

    Parameters
    ----------
    path
        The database file (created if missing).
    """

    def __init__(self, *, path: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as con:
            con.execute(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            try:
                con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error as exc:
                raise StoreError(
                    f"Cannot open the SQLite online store {str(self.path)!r}: {exc}",
                    path=str(self.path),
                ) from exc
            self._local.con = con
        return con

    def write_batch(self, view: str, records: Sequence[OnlineRecord]) -> int:
        rows = [
            (
                view,
                encode_key(r.key),
                int(r.as_of_us),
                encode_values(r.values, view=view, key=r.key),
            )
            for r in records
        ]
        con = self._conn()
        try:
            con.execute("BEGIN IMMEDIATE")
            before = con.total_changes
            con.executemany(_UPSERT, rows)
            written = con.total_changes - before
            con.execute("COMMIT")
        except BaseException as exc:
            if con.in_transaction:
                con.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(
                    f"Writing {len(rows)} rows of view {view!r} to {str(self.path)!r} failed "
                    f"and was rolled back: {exc}",
                    feature_view=view,
                ) from exc
            raise
        return written

    def read_many(self, view: str, keys: Sequence[Any]) -> list[OnlineRecord | None]:
        if not keys:
            return []
        encoded = [encode_key(k) for k in keys]
        con = self._conn()
        found: dict[str, tuple[int, str]] = {}
        # SQLite caps bound parameters; 900 per statement stays under every build's limit.
        for i in range(0, len(encoded), 900):
            part = encoded[i : i + 900]
            marks = ",".join("?" * len(part))
            cur = con.execute(
                "SELECT entity_key, as_of_us, payload FROM features "
                f"WHERE view = ? AND entity_key IN ({marks})",
                [view, *part],
            )
            for ek, asof, payload in cur:
                found[ek] = (asof, payload)
        out: list[OnlineRecord | None] = []
        for k, ek in zip(keys, encoded, strict=True):
            hit = found.get(ek)
            out.append(None if hit is None else OnlineRecord(k, decode_values(hit[1]), hit[0]))
        return out

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
