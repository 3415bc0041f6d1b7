"""Spark engine: the same plans on PySpark (local mode here, a cluster at scale)."""

from __future__ import annotations

import itertools
import os
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import pyarrow as pa

from lendml.engines.base import EngineCapabilities, OfflineEngine, resolve_files


@ibis.udf.scalar.builtin(name="unix_micros")
def _unix_micros(ts) -> dt.int64:  # type: ignore[no-untyped-def,empty-body]
    """Spark's unix_micros(timestamp)."""


@ibis.udf.agg.builtin(name="collect_set")
def _collect_set(value) -> dt.Array(dt.float64):  # type: ignore[no-untyped-def,empty-body,valid-type]
    """Spark's collect_set(x): distinct non-null values (allowed over a window frame)."""


@ibis.udf.scalar.builtin(name="size")
def _size(arr) -> dt.int64:  # type: ignore[no-untyped-def,empty-body]
    """Spark's size(array)."""


class SparkEngine(OfflineEngine):
    """Ibis on a PySpark session.

    Ibis' PySpark backend has no as-of join and Spark has no distinct count over a
    window frame, so this engine uses the shared union + forward-fill lookup and a
    ``size(collect_set(...))`` distinct count; the conformance suite proves both equal
    DuckDB's results.
    """

    name = "spark"
    capabilities = EngineCapabilities(asof_join=False, window_count_distinct=False)
    _ids = itertools.count()

    def __init__(self, *, master: str = "local[2]", conf: dict[str, str] | None = None) -> None:
        from pyspark.sql import SparkSession

        builder = (
            SparkSession.builder.master(master)
            .appName("lendml")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.shuffle.partitions", "4")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        )
        for k, v in (conf or {}).items():
            builder = builder.config(k, v)
        self.session = builder.getOrCreate()
        self.session.sparkContext.setLogLevel("ERROR")
        self._con = ibis.pyspark.connect(self.session)

    @property
    def con(self) -> Any:
        return self._con

    def read_files(self, fmt: str, path: str) -> ibis.Table:
        resolved, _ = resolve_files(path, fmt)
        if fmt == "parquet":
            return self._con.read_parquet(resolved)
        return self._con.read_csv(resolved, header=True, inferSchema=True)

    def from_arrow(self, table: pa.Table) -> ibis.Table:
        name = f"lendml_mem_{os.getpid()}_{next(self._ids)}"
        self.session.createDataFrame(table).createOrReplaceTempView(name)
        return self._con.table(name)

    def to_arrow(self, expr: ibis.Table) -> pa.Table:
        return self._con.to_pyarrow(expr)

    def epoch_us(self, ts: ibis.Value) -> ibis.Value:
        # Parquet without a zone reads as TIMESTAMP_NTZ; lendml's rule is naive = UTC and
        # the session zone is UTC, so the cast keeps the wall time.
        return _unix_micros(ts.cast(dt.Timestamp(timezone="UTC")))

    def window_count_distinct(self, value: ibis.Value, window: Any) -> ibis.Value:
        # Spark refuses DISTINCT in window functions; collect_set over the frame is allowed.
        return _size(_collect_set(value).over(window))

    def close(self) -> None:
        # The SparkSession is process-wide and slow to start; leave it to the process.
        pass
