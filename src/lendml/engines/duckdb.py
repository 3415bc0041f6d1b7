"""DuckDB engine: the embedded default (zero setup, all cores of one machine)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import pyarrow as pa

from lendml.engines.base import EngineCapabilities, OfflineEngine, resolve_files


@ibis.udf.scalar.builtin(name="epoch_us")
def _epoch_us(ts) -> dt.int64:  # type: ignore[empty-body]
    """DuckDB's epoch_us(timestamp)."""


class DuckDBEngine(OfflineEngine):
    """Ibis on an in-process DuckDB database.

    Parameters
    ----------
    database
        A DuckDB file, or ``":memory:"`` (default).
    threads
        Worker threads (default: all cores).
    memory_limit
        DuckDB's memory limit, e.g. ``"8GB"``; spills to disk beyond it.
    """

    name = "duckdb"
    capabilities = EngineCapabilities(asof_join=True, window_count_distinct=True)
    _ids = itertools.count()

    def __init__(
        self,
        *,
        database: str = ":memory:",
        threads: int | None = None,
        memory_limit: str | None = None,
    ) -> None:
        config: dict[str, Any] = {}
        if threads:
            config["threads"] = threads
        if memory_limit:
            config["memory_limit"] = memory_limit
        self._con = ibis.duckdb.connect(database, **config)

    @property
    def con(self) -> Any:
        return self._con

    def read_files(self, fmt: str, path: str) -> ibis.Table:
        resolved, is_dir = resolve_files(path, fmt)
        if fmt == "parquet":
            target = os.path.join(resolved, "**", "*.parquet") if is_dir else resolved
            return self._con.read_parquet(target, hive_partitioning=is_dir)
        target = os.path.join(resolved, "**", "*.csv*") if is_dir else resolved
        return self._con.read_csv(target)

    def from_arrow(self, table: pa.Table) -> ibis.Table:
        name = f"__lendml_mem_{os.getpid()}_{next(self._ids)}"
        self._con.con.register(name, table)
        return self._con.table(name)

    def to_arrow(self, expr: ibis.Table) -> pa.Table:
        return self._con.to_pyarrow(expr)

    def epoch_us(self, ts: ibis.Value) -> ibis.Value:
        return _epoch_us(ts)

    def asof_lookup(
        self,
        points: ibis.Table,
        events: ibis.Table,
        *,
        value_columns: Sequence[str],
        key_columns: Sequence[str] = ("__k",),
    ) -> ibis.Table:
        # DuckDB's native ASOF JOIN: the fastest as-of lookup measured here.
        renamed = {f"__e{k}": events[k] for k in key_columns}
        ev = events.select(**renamed, __ets=events["__ts"], **{c: events[c] for c in value_columns})
        joined = points.asof_join(
            ev,
            on=points["__ts"] >= ev["__ets"],
            predicates=[points[k] == ev[f"__e{k}"] for k in key_columns],
        )
        return joined.select("__row", "__ets", *value_columns)

    def close(self) -> None:
        self._con.disconnect()
