"""Materialization: offline feature tables and the online store.

``materialize(start, end)`` computes each feature view on a grid of as-of times
(``every``, default one day) for every entity active in the look-back, and

* writes offline Parquet partitions ``<offline>/<view>/date=YYYY-MM-DD/part-0.parquet``,
  each written to a temporary name and renamed, so a re-run of a range replaces the
  same partitions (no duplicates) and a killed run leaves no half-written file;
* upserts the values as of ``end`` into the online store in one transaction per view;
* records the view's materialized range last, so a killed run is simply re-run.

The grid is processed in chunks of ``chunk`` (default 7 days) so memory stays bounded by
the chunk, not the range.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import ibis
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from lendml.core.timeutil import duration_us, parse_duration, to_utc_timestamp
from lendml.engines.base import OfflineEngine
from lendml.errors import ConfigError
from lendml.features.definitions import FeatureService, FeatureView
from lendml.features.online import online_key
from lendml.features.training_set import build_training_set
from lendml.stores.base import OnlineRecord, OnlineStore


@dataclass
class MaterializeReport:
    """What one materialization wrote."""

    views: dict[str, dict[str, int]] = field(default_factory=dict)

    def total_offline_rows(self) -> int:
        return sum(v["offline_rows"] for v in self.views.values())


def lookback(view: FeatureView) -> timedelta | None:
    """How far back an event can still affect the view's features (None: unbounded)."""
    spans = [a.window_td + a.offset_td for a in view.aggregations]
    if view.features:
        if view.ttl_td is None:
            return None
        spans.append(view.ttl_td)
    return max(spans)


def active_entities(
    engine: OfflineEngine, view: FeatureView, src: ibis.Table, start_us: int, end_us: int
) -> pa.Table:
    """Entity keys with an event that can affect features in (start, end].

    One column per key column of the view's entity, one row per distinct key, sorted;
    rows with a null in any key column belong to no entity and are left out.
    """
    keys = list(view.entity.keys)
    span = lookback(view)
    ts = engine.epoch_us(src[view.source.timestamp])
    cond = ts <= end_us
    if span is not None:
        cond = cond & (ts > start_us - duration_us(span))
    for k in keys:
        cond = cond & src[k].notnull()
    found = src.filter(cond).select(*keys).distinct()
    return engine.to_arrow(found.order_by(keys)).combine_chunks()


def _grid(start: pd.Timestamp, end: pd.Timestamp, every: timedelta) -> list[pd.Timestamp]:
    times, t = [], start + every
    while t <= end:
        times.append(t)
        t += every
    if not times or times[-1] != end:
        times.append(end)
    return times


def _write_partition(root: Path, folder: Path, table: pa.Table) -> None:
    """Replace one partition folder atomically.

    The new file is staged under ``root/.staging`` (outside every view folder, so no
    reader globs it) and renamed into place; the old folder is moved aside first and
    removed after, so a reader sees the old or the new partition, never a partial one.
    """
    staging = root / ".staging" / f"{os.getpid()}-{folder.parent.name}-{folder.name}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    pq.write_table(table, staging / "part-0.parquet")
    folder.parent.mkdir(parents=True, exist_ok=True)
    old = root / ".staging" / f"{os.getpid()}-{folder.parent.name}-{folder.name}.old"
    if folder.exists():
        os.replace(folder, old)
    os.replace(staging, folder)
    if old.exists():
        shutil.rmtree(old)


def materialize(
    engine: OfflineEngine,
    views: Sequence[FeatureView],
    *,
    start: object,
    end: object,
    resolve_path: Callable[[str], str],
    offline_root: Path,
    online: OnlineStore | None,
    state_path: Path,
    every: str | timedelta = "1d",
    chunk: str | timedelta = "7d",
    progress: Callable[[str, int, int], None] | None = None,
) -> MaterializeReport:
    """Materialize ``views`` over ``(start, end]``; see the module docstring."""
    t0 = to_utc_timestamp(start, what="--start")
    t1 = to_utc_timestamp(end, what="--end")
    if t1 <= t0:
        raise ConfigError(f"--end {t1.isoformat()} must be after --start {t0.isoformat()}.")
    step = parse_duration(every, what="every")
    chunk_td = parse_duration(chunk, what="chunk")
    if step <= timedelta(0) or chunk_td < step:
        raise ConfigError(f"every={every!r} must be > 0 and chunk={chunk!r} at least as long.")
    grid = _grid(t0, t1, step)
    report = MaterializeReport()
    for view in views:
        src = engine.read_files(view.source.format, resolve_path(view.source.path))
        keys = active_entities(
            engine,
            view,
            src,
            duration_us(t0 - pd.Timestamp(0, tz="UTC")),
            duration_us(t1 - pd.Timestamp(0, tz="UTC")),
        )
        key_cols = list(view.entity.keys)
        service = FeatureService(f"__materialize_{view.name}", [view])
        stats = {"entities": keys.num_rows, "offline_rows": 0, "online_rows": 0, "partitions": 0}
        chunks: list[list[pd.Timestamp]] = []
        for t in grid:
            if not chunks or t - chunks[-1][0] >= chunk_td:
                chunks.append([t])
            else:
                chunks[-1].append(t)
        for i, times in enumerate(chunks):
            if progress:
                progress(view.name, i, len(chunks))
            n_keys = keys.num_rows
            if not n_keys:
                break
            spine = pa.table(
                {
                    **{
                        k: pa.concat_arrays([keys[k].combine_chunks()] * len(times))
                        for k in key_cols
                    },
                    "as_of": pa.array(
                        [t for t in times for _ in range(n_keys)], pa.timestamp("us", tz="UTC")
                    ),
                }
            )
            table = build_training_set(engine, service, spine, resolve_path=resolve_path).table
            dates = pa.array([t.strftime("%Y-%m-%d") for t in times for _ in range(n_keys)])
            for day in sorted(set(dates.to_pylist())):
                part = table.filter(pa.compute.equal(dates, day))
                _write_partition(offline_root, offline_root / view.name / f"date={day}", part)
                stats["offline_rows"] += part.num_rows
                stats["partitions"] += 1
            if times[-1] == t1 and online is not None:
                latest = table.slice(table.num_rows - n_keys)
                asof_us = duration_us(t1 - pd.Timestamp(0, tz="UTC"))
                cols = list(view.feature_names)
                data = latest.select([*key_cols, *cols]).to_pylist()
                records = [
                    OnlineRecord(online_key(view.entity, row), {c: row[c] for c in cols}, asof_us)
                    for row in data
                ]
                stats["online_rows"] = online.write_batch(view.name, records)
        if progress:
            progress(view.name, len(chunks), len(chunks))
        _record_state(state_path, view, t0, t1)
        report.views[view.name] = stats
    return report


def _record_state(path: Path, view: FeatureView, t0: pd.Timestamp, t1: pd.Timestamp) -> None:
    state = json.loads(path.read_text()) if path.exists() else {}
    entry = state.get(view.name, {})
    if entry.get("version") != view.version:
        entry = {"version": view.version, "ranges": []}
    entry["ranges"].append([t0.isoformat(), t1.isoformat()])
    entry["latest_end"] = max([t1.isoformat(), *(r[1] for r in entry["ranges"])])
    state[view.name] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    os.replace(tmp, path)


def read_state(path: Path) -> dict:
    """The materialized ranges per view (empty before the first run)."""
    return json.loads(path.read_text()) if path.exists() else {}
