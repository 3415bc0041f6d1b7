"""The offline-engine protocol.

Feature plans are Ibis expressions; an engine runs them. The few operations that engines
lower differently (the as-of lookup, epoch microseconds, a distinct count over a window)
are methods here, so the feature layer states each plan once.
"""

from __future__ import annotations

import glob
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ibis
import pyarrow as pa

from lendml.errors import ConfigError, DataValidationError


@dataclass(frozen=True)
class EngineCapabilities:
    """What an engine can do natively (the plan picks a lowering from these)."""

    asof_join: bool
    window_count_distinct: bool


class OfflineEngine(ABC):
    """Runs Ibis plans on one backend. Subclasses implement every abstract method."""

    name: str
    capabilities: EngineCapabilities

    @property
    @abstractmethod
    def con(self) -> Any:
        """The Ibis backend connection."""

    @abstractmethod
    def read_files(self, fmt: str, path: str) -> ibis.Table:
        """A table over a Parquet/CSV file, folder (Hive partitions) or glob."""

    @abstractmethod
    def from_arrow(self, table: pa.Table) -> ibis.Table:
        """Register an in-memory Arrow table and return it as an Ibis table."""

    @abstractmethod
    def to_arrow(self, expr: ibis.Table) -> pa.Table:
        """Execute a plan and return its rows as Arrow."""

    @abstractmethod
    def epoch_us(self, ts: ibis.Value) -> ibis.Value:
        """Microseconds since 1970-01-01 UTC of a timestamp column, as int64."""

    @abstractmethod
    def close(self) -> None:
        """Release the engine's resources."""

    # --------------------------------------------------------------- shared lowerings

    def window_count_distinct(self, value: ibis.Value, window: Any) -> ibis.Value:
        """Distinct non-null values in a window frame."""
        return value.nunique().over(window)

    def asof_lookup(
        self,
        points: ibis.Table,
        events: ibis.Table,
        *,
        value_columns: Sequence[str],
        key_columns: Sequence[str] = ("__k",),
    ) -> ibis.Table:
        """For each point, the latest event with the same key at or before its time.

        ``points`` has ``__row``, the ``key_columns`` (default one, ``__k``) and ``__ts``;
        ``events`` has the ``key_columns``, ``__ts`` and ``value_columns``. Events match a
        point when every key column is equal. Returns ``__row``, ``__ets`` (the matched
        event time or null) and the value columns (null when nothing matched).

        This default is union + forward fill over a window, which every engine runs;
        engines with a native as-of join override it.
        """
        keys = list(key_columns)
        nulls = {c: ibis.null().cast(events[c].type()) for c in value_columns}
        left = points.select(
            "__row", *keys, "__ts", __is_point=ibis.literal(1), __ets=ibis.null("int64"), **nulls
        )
        right = events.select(
            __row=ibis.null("int64"),
            **{k: events[k] for k in keys},
            __ts=events["__ts"],
            __is_point=ibis.literal(0),
            __ets=events["__ts"],
            **{c: events[c] for c in value_columns},
        )
        u = left.union(right)
        group = [u[k] for k in keys]
        # Events sort before points at the same time so an event stamped exactly at the
        # point's time is visible to it (the point time is already shifted for "strict").
        seq_w = ibis.window(group_by=group, order_by=[u["__ts"], u["__is_point"]])
        u = u.mutate(__seq=ibis.row_number().over(seq_w))
        u = u.mutate(__eseq=ibis.ifelse(u["__is_point"] == 0, u["__seq"], ibis.null("int64")))
        group = [u[k] for k in keys]
        ffill = ibis.window(group_by=group, order_by=[u["__ts"], u["__is_point"]], rows=(None, 0))
        filled = u.mutate(
            __ets=u["__ets"].max().over(ffill),
            **{c: u[c].argmax(u["__eseq"]).over(ffill) for c in value_columns},
        )
        return filled.filter(filled["__is_point"] == 1).select("__row", "__ets", *value_columns)


def resolve_files(path: str, fmt: str) -> tuple[str, bool]:
    """Check a source path exists; return (path or glob for the engine, is_folder)."""
    if os.path.isdir(path):
        pattern = os.path.join(path, "**", f"*.{fmt}*")
        if not glob.glob(pattern, recursive=True):
            raise DataValidationError(
                f"Source folder {path!r} holds no .{fmt} files: check the path in the "
                "source definition (relative paths resolve against the project folder).",
                path=path,
            )
        return path, True
    if any(ch in path for ch in "*?["):
        if not glob.glob(path, recursive=True):
            raise DataValidationError(
                f"Source glob {path!r} matches no files: check the source definition.",
                path=path,
            )
        return path, False
    if not os.path.exists(path):
        raise DataValidationError(
            f"Source file {path!r} does not exist: check the source definition (relative "
            "paths resolve against the project folder).",
            path=path,
        )
    return path, False


def create_engine(kind: str = "duckdb", **options: Any) -> OfflineEngine:
    """Create an engine by name: ``duckdb`` (default) or ``spark``."""
    if kind == "duckdb":
        from lendml.engines.duckdb import DuckDBEngine

        return DuckDBEngine(**options)
    if kind == "spark":
        from lendml.engines.spark import SparkEngine

        return SparkEngine(**options)
    raise ConfigError(f"Unknown engine type {kind!r}: expected 'duckdb' or 'spark'.")
