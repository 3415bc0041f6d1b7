"""Point-in-time-correct training sets: spine ⨝ features as known at each as-of time."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lendml.core.timeutil import to_utc_timestamp, utc_arrow_column, utc_series
from lendml.engines.base import OfflineEngine
from lendml.errors import ConfigError, DataValidationError, LeakageError
from lendml.features.definitions import FeatureService
from lendml.features.plan import ASOF_US, ROW, SpineInfo, build_plan

SpineLike = pd.DataFrame | pa.Table | str | os.PathLike


@dataclass(frozen=True)
class Label:
    """A label column with its own observation time (label maturity).

    A label is usable only once observed: with a ``cutoff``, labels whose
    ``observed_at`` is after it are set to null (or their rows dropped).
    """

    column: str
    observed_at: str
    cutoff: Any = None
    drop_immature: bool = True


@dataclass
class TrainingSet:
    """The result of :func:`build_training_set`: rows plus what made them."""

    table: pa.Table
    service: str
    service_version: str
    spine_fingerprint: str
    immature_labels: int = 0
    stats: dict[str, Any] = field(default_factory=dict)

    def to_arrow(self) -> pa.Table:
        return self.table

    def to_pandas(self) -> pd.DataFrame:
        return self.table.to_pandas()

    def to_parquet(self, path: str | os.PathLike) -> Path:
        """Write atomically (temporary name, then rename)."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        pq.write_table(self.table, tmp)
        os.replace(tmp, out)
        return out

    def __len__(self) -> int:
        return self.table.num_rows


def read_spine(spine: SpineLike, *, as_of: str = "as_of") -> pa.Table:
    """Read a spine from pandas, Arrow, or a Parquet/CSV path."""
    if isinstance(spine, pa.Table):
        return spine
    if isinstance(spine, pd.DataFrame):
        df = spine
        if as_of in df.columns and not pd.api.types.is_datetime64_any_dtype(df[as_of].dtype):
            df = df.assign(**{as_of: utc_series(df[as_of], column=as_of)})
        return pa.Table.from_pandas(df, preserve_index=False)
    path = Path(spine)
    if not path.exists():
        raise ConfigError(f"Spine file {str(path)!r} does not exist.", path=str(path))
    if path.suffix == ".parquet" or path.is_dir():
        return pq.read_table(path)
    if path.name.endswith((".csv", ".csv.gz")):
        import pyarrow.csv as pacsv

        return pacsv.read_csv(path)
    raise ConfigError(
        f"Spine {str(path)!r}: unsupported file type; give .parquet, .csv or .csv.gz.",
        path=str(path),
    )


def prepare_spine(table: pa.Table, service: FeatureService, as_of: str) -> pa.Table:
    """Validate a spine and add ``__row`` and ``__asof_us``; as-of becomes UTC µs."""
    names = table.column_names
    if as_of not in names:
        raise DataValidationError(
            f"Spine has no as-of column {as_of!r}. Columns: {', '.join(names)}. Name it "
            "'as_of' or pass as_of='<column>'.",
            column=as_of,
        )
    needed = {k: v.entity for v in service.feature_views for k in v.entity.keys}
    missing = [k for k in needed if k not in names]
    if missing:
        entities = {needed[k].name: needed[k].keys for k in missing}
        which = "; ".join(f"entity {n!r} has key {list(keys)}" for n, keys in entities.items())
        raise DataValidationError(
            f"Spine lacks the entity key column(s) {missing} that feature service "
            f"{service.name!r} needs ({which}). Columns: {', '.join(names)}. Add every key "
            "column to the spine.",
            service=service.name,
        )
    clash = [c for c in names if c in service.feature_names]
    if clash:
        raise DataValidationError(
            f"Spine columns {clash} have the same names as features of {service.name!r}; "
            "rename or drop them from the spine.",
            service=service.name,
        )
    col = table[as_of]
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        col = pa.array(utc_series(col.to_pandas(), column=as_of))
    elif pa.types.is_date(col.type):
        col = col.cast(pa.timestamp("us"))
    col = utc_arrow_column(col, column=as_of)
    if col.null_count:
        raise DataValidationError(
            f"Spine column {as_of!r} has {col.null_count} null as-of times; every training "
            "row needs one.",
            column=as_of,
        )
    table = table.set_column(names.index(as_of), as_of, col)
    asof_us = col.cast(pa.int64())
    table = table.append_column(ROW, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    return table.append_column(ASOF_US, asof_us)


def check_leakage(service: FeatureService) -> None:
    """Refuse features that read a column known only after the outcome."""
    for view in service.feature_views:
        bad = set(view.source.post_outcome)
        for a in view.aggregations:
            used = ({a.column} if a.column != "*" else set()) | (
                set(a.where_expr.columns) if a.where_expr else set()
            )
            if used & bad:
                raise LeakageError(
                    f"Feature {a.name!r} of view {view.name!r} reads {sorted(used & bad)}, "
                    "declared post_outcome (known only after the outcome). Remove it from "
                    "the feature definition.",
                    feature_view=view.name,
                )
        for f in view.features:
            if f.column in bad:
                raise LeakageError(
                    f"Feature {f.name!r} of view {view.name!r} reads {f.column!r}, declared "
                    "post_outcome (known only after the outcome). Remove it from the feature "
                    "definition.",
                    feature_view=view.name,
                )


def fingerprint(table: pa.Table) -> str:
    """sha256 over the spine's Arrow IPC bytes (stable for equal content and schema)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(memoryview(sink.getvalue())).hexdigest()[:16]  # no copy


def apply_label_maturity(table: pa.Table, label: Label) -> tuple[pa.Table, int]:
    """Null (or drop) labels not yet observed at the cutoff; return the count affected."""
    for c in (label.column, label.observed_at):
        if c not in table.column_names:
            raise DataValidationError(f"Spine has no label column {c!r}.", column=c)
    if label.cutoff is None:
        return table, 0
    cutoff = to_utc_timestamp(label.cutoff, what="label cutoff")
    obs = utc_arrow_column(table[label.observed_at], column=label.observed_at).to_pandas()
    immature = (obs.isna() | (obs > cutoff)).to_numpy()
    n = int(immature.sum())
    if label.drop_immature:
        return table.filter(pa.array(~immature)), n
    col = table[label.column].to_pandas().mask(immature)
    idx = table.column_names.index(label.column)
    return table.set_column(idx, label.column, pa.array(col, type=table[label.column].type)), n


def build_training_set(
    engine: OfflineEngine,
    service: FeatureService,
    spine: SpineLike,
    *,
    resolve_path: Callable[[str], str],
    as_of: str = "as_of",
    label: Label | None = None,
) -> TrainingSet:
    """Spine rows with every feature of ``service`` computed as known at each as-of time."""
    check_leakage(service)
    raw = read_spine(spine, as_of=as_of)
    immature = 0
    if label is not None:
        raw, immature = apply_label_maturity(raw, label)
    prepared = prepare_spine(raw, service, as_of)
    spine_t = engine.from_arrow(prepared)
    info = SpineInfo(as_of=as_of, columns=tuple(raw.column_names))
    plan = build_plan(engine, service, spine_t, info, resolve_path)
    out = engine.to_arrow(plan)
    out = _normalise(out, as_of)
    return TrainingSet(
        table=out,
        service=service.name,
        service_version=service.version,
        spine_fingerprint=fingerprint(raw),
        immature_labels=immature,
        stats={"rows": out.num_rows},
    )


def _normalise(table: pa.Table, as_of: str) -> pa.Table:
    """Engines return timestamps in their own flavour; lendml returns UTC µs."""
    cols = []
    for name in table.column_names:
        c = table[name]
        if pa.types.is_timestamp(c.type):
            c = utc_arrow_column(c, column=name)
        cols.append(c)
    return pa.table(cols, names=table.column_names)
