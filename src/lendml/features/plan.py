"""Point-in-time plans: a feature service and a spine compiled into one Ibis expression.

The point-in-time rule is stated here once, for every engine:

* An aggregation at as-of time ``t`` reads events with the same entity key whose event
  time ``e`` satisfies ``end - window < e <= end`` (boundary ``"inclusive"``) or
  ``end - window <= e < end`` (boundary ``"strict"``), where ``end = t - offset``.
  Both are half-open windows of exactly ``window`` length (pandas' ``closed="right"``
  and ``closed="left"``). All events sharing a timestamp are treated alike: there is no
  hidden row order.
* A row feature at ``t`` is the value in the latest row with ``e <= t`` (``e < t`` when
  strict), or null if that row is older than the view's ``ttl``.
* "The same entity key" means every key column equal (an entity may have several). A
  source row with a null in any key column belongs to no entity; a spine row with one
  gets the no-history values below.
* With no events in the window: count, sum and count_distinct give 0; the rest null.
* ``last`` is the value of the latest event in the window; among events at that same
  latest time, the largest value.

Times are compared as integer microseconds since the epoch (UTC), which is exact and
engine-neutral. Each view's windows are range frames relative to each row's own time, so
every offset shares one sort of the view's events; spine points that no event shares
(same key, same time) join that sort as rows without values, and the spine reads the
result by (key, time) — no join fan-out, and no union at all when the spine is the
events themselves. The as-of lookup is lowered per engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ibis
import pyarrow as pa

from lendml.core.timeutil import duration_us
from lendml.engines.base import OfflineEngine
from lendml.errors import DefinitionError
from lendml.features import expr as fexpr
from lendml.features.definitions import (
    ADDITIVE,
    Aggregation,
    DerivedView,
    FeatureService,
    FeatureView,
)

ROW = "__row"
ASOF_US = "__asof_us"


def key_columns(view: FeatureView) -> list[str]:
    """The plan's names for a view's key columns: ``__k``, or ``__k0, __k1, ...``."""
    keys = view.entity.keys
    return ["__k"] if len(keys) == 1 else [f"__k{i}" for i in range(len(keys))]


def _keys_present(table: ibis.Table, columns: Sequence[str]) -> ibis.Value:
    """True where no key column is null (a row with a null key part has no entity)."""
    present = table[columns[0]].notnull()
    for c in columns[1:]:
        present = present & table[c].notnull()
    return present


def _select_keys(
    table: ibis.Table, view: FeatureView, key_types: Mapping[str, Any] | None = None
) -> dict[str, ibis.Value]:
    """The view's key columns of ``table`` under the plan's names (cast to the source's)."""
    out = {}
    for name, col in zip(key_columns(view), view.entity.keys, strict=True):
        value = table[col]
        out[name] = value.cast(key_types[col]) if key_types is not None else value
    return out


@dataclass(frozen=True)
class SpineInfo:
    """Where the spine keeps its as-of time and which columns it brings."""

    as_of: str
    columns: tuple[str, ...]


def _view_source(
    engine: OfflineEngine, view: FeatureView, resolve_path: Callable[[str], str]
) -> ibis.Table:
    return engine.read_files(view.source.format, resolve_path(view.source.path))


def _agg_value(agg: Aggregation, ev: ibis.Table, resolve: Callable[[str], Any]) -> ibis.Value:
    """The per-event input of an aggregation (null for filtered-out events)."""
    val = ibis.literal(1) if agg.column == "*" else resolve(agg.column)
    if agg.where_expr is not None:
        pred = fexpr.to_ibis(agg.where_expr, resolve)
        val = ibis.ifelse(pred.fill_null(False), val, ibis.null().cast(val.type()))
    return val


def _frame(view: FeatureView, agg: Aggregation, k: list[ibis.Value], ts: ibis.Value) -> Any:
    """The range frame of one aggregation, relative to each row's own time ``t``.

    With ``end = t - offset`` the window is ``(end - window, end]`` (inclusive) or
    ``[end - window, end)`` (strict); in integer µs both are the closed range
    ``[t - hi, t - lo]`` below. Ties at either edge are all in or all out.
    """
    strict = 1 if view.boundary == "strict" else 0
    lo = duration_us(agg.offset_td) + strict
    hi = lo + duration_us(agg.window_td) - 1
    return ibis.range_window(preceding=(hi, lo), group_by=k, order_by=ts)


def _window_features(
    engine: OfflineEngine,
    spine: ibis.Table,
    view: FeatureView,
    src: ibis.Table,
    key_types: Mapping[str, Any],
) -> ibis.Table:
    """The view's aggregations at every (key, time) a spine row asks for, in one pass.

    Returns one row per distinct (key columns, ``__ts``), the key columns named by
    :func:`key_columns`: every event time of the source, plus the spine's as-of times
    that no event shares. Windows are frames relative to each row's own time, so all
    offsets share one sort; when every spine point coincides with an event (a spine of
    the events themselves) the events are windowed in place.
    """
    kc = key_columns(view)

    def col(name: str) -> ibis.Value:
        return src[name]

    # One input column per distinct (column, filter): aggregations of the same input
    # share it, which keeps the rows the window sorts narrow.
    slots: dict[tuple[str, str | None], str] = {}
    inputs: dict[str, ibis.Value] = {}
    slot_of = []
    for a in view.aggregations:
        name = slots.setdefault((a.column, a.where), f"__v{len(slots)}")
        if name not in inputs:
            inputs[name] = _agg_value(a, src, col)
        slot_of.append(name)
    events = src.select(
        **_select_keys(src, view), __ts=engine.epoch_us(src[view.source.timestamp]), **inputs
    )
    events = events.filter(_keys_present(events, kc))
    points = spine.select(**_select_keys(spine, view, key_types), __ts=spine[ASOF_US])
    points = points.filter(_keys_present(points, kc))
    # Spine points at a (key, time) some event has read that event's frames; only the
    # others join the union, as rows whose null inputs no aggregate counts.
    same = [points[c] == events[c] for c in (*kc, "__ts")]
    extra = points.anti_join(events, same).select(
        *kc, "__ts", **{c: ibis.null().cast(events[c].type()) for c in inputs}
    )
    u = events.union(extra)
    group = [u[c] for c in kc]
    by_time = ibis.window(group_by=group, order_by=u["__ts"])
    # ``last``: latest event wins; ties at the same time go to the largest value.
    seqs = {}
    for a, name in zip(view.aggregations, slot_of, strict=True):
        if a.function == "last" and f"{name}_seq" not in seqs:
            v = u[name]
            order = ibis.window(group_by=group, order_by=[u["__ts"], v])
            seqs[f"{name}_seq"] = ibis.ifelse(
                v.notnull(), ibis.row_number().over(order), ibis.null("int64")
            )
    if seqs:
        u = u.mutate(**seqs)
        group = [u[c] for c in kc]
        by_time = ibis.window(group_by=group, order_by=u["__ts"])
    feats: dict[str, ibis.Value] = {}
    for a, name in zip(view.aggregations, slot_of, strict=True):
        w = _frame(view, a, group, u["__ts"])
        seq = u[f"{name}_seq"] if a.function == "last" else None
        feats[a.name] = _aggregate(engine, a, seq, u[name], w)
    # Rows at the same (key, time) are peers with identical frames: keep the last one.
    nxt = u["__ts"].lead().over(by_time)
    res = u.mutate(__last=nxt.isnull() | (nxt != u["__ts"]), **feats)
    return res.filter(res["__last"]).select(*kc, "__ts", *feats)


def _aggregate(
    engine: OfflineEngine, a: Aggregation, seq: ibis.Value | None, v: ibis.Value, w: Any
) -> ibis.Value:
    f = a.function
    if f == "count":
        return v.count().over(w)
    if f == "sum":
        return ibis.coalesce(v.sum().over(w), ibis.literal(0).cast(v.type()))
    if f == "mean":
        return v.mean().over(w)
    if f == "min":
        return v.min().over(w)
    if f == "max":
        return v.max().over(w)
    if f == "std":
        return v.std(how="sample").over(w)
    if f == "count_distinct":
        return engine.window_count_distinct(v, w)
    if f == "last":
        return v.argmax(seq).over(w)
    raise DefinitionError(f"Aggregation function {f!r} is not supported.")  # pragma: no cover


def build_plan(
    engine: OfflineEngine,
    service: FeatureService,
    spine: ibis.Table,
    info: SpineInfo,
    resolve_path: Callable[[str], str],
) -> ibis.Table:
    """The training-set expression: spine columns + one column per feature, in spine order."""
    result = spine
    # Views over the same source read one table (one file scan registered per source).
    sources: dict[tuple[str, str], ibis.Table] = {}
    for view in service.feature_views:
        where = (view.source.format, resolve_path(view.source.path))
        if where not in sources:
            sources[where] = _view_source(engine, view, resolve_path)
        src = sources[where]
        key_types = {k: src[k].type() for k in view.entity.keys}
        kc = key_columns(view)
        if view.aggregations:
            part = _window_features(engine, spine, view, src, key_types)
            on = [
                *(
                    result[col].cast(key_types[col]) == part[name]
                    for name, col in zip(kc, view.entity.keys, strict=True)
                ),
                result[ASOF_US] == part["__ts"],
            ]
            result = result.left_join(part, on).drop(*kc, "__ts")
        if view.features:
            s2 = spine.select(ROW, ASOF_US, *view.entity.keys)
            part = _row_features(engine, s2, view, src, key_types)
            result = result.left_join(part, result[ROW] == part[ROW]).drop(f"{ROW}_right")
    # Additive aggregations are 0 for spine rows the window plans did not see (null keys).
    fills = {}
    for view in service.feature_views:
        for a in view.aggregations:
            if a.function in ADDITIVE:
                fills[a.name] = ibis.coalesce(
                    result[a.name], ibis.literal(0).cast(result[a.name].type())
                )
    if fills:
        result = result.mutate(**fills)
    for dview in service.derived_views:
        result = _derived(result, dview, info)
    return result.order_by(ROW).drop(ROW, ASOF_US)


def _row_features(
    engine: OfflineEngine,
    spine: ibis.Table,
    view: FeatureView,
    src: ibis.Table,
    key_types: Mapping[str, Any],
) -> ibis.Table:
    kc = key_columns(view)
    strict = 1 if view.boundary == "strict" else 0
    values = {f"__f{i}": src[f.column] for i, f in enumerate(view.features)}
    events = src.select(
        **_select_keys(src, view), __ts=engine.epoch_us(src[view.source.timestamp]), **values
    )
    events = events.filter(_keys_present(events, kc))
    points = spine.select(
        __row=spine[ROW], **_select_keys(spine, view, key_types), __ts=spine[ASOF_US] - strict
    )
    points = points.filter(_keys_present(points, kc))
    found = engine.asof_lookup(points, events, value_columns=list(values), key_columns=kc)
    asof = spine.select(__r2=spine[ROW], __a=spine[ASOF_US])
    found = found.join(asof, found["__row"] == asof["__r2"])
    feats: dict[str, ibis.Value] = {}
    ttl = view.ttl_td
    for i, f in enumerate(view.features):
        v = found[f"__f{i}"]
        if ttl is not None:
            too_old = found["__ets"] < (found["__a"] - duration_us(ttl))
            v = ibis.ifelse(too_old, ibis.null().cast(v.type()), v)
        feats[f.name] = v
    return found.select("__row", **feats)


def _derived(result: ibis.Table, dview: DerivedView, info: SpineInfo) -> ibis.Table:
    asof = result[info.as_of]

    def resolve(name: str) -> ibis.Value:
        if name == "as_of":
            return asof
        return result[name]

    return result.mutate(**{d.name: fexpr.to_ibis(d.expr, resolve) for d in dview.features})


def derived_kinds(service: FeatureService, base: Mapping[str, str]) -> dict[str, str]:
    """Expression kinds of every name a derived view may read (for type checking)."""
    kinds = dict(base)
    kinds["as_of"] = "time"
    return kinds


def arrow_kind(t: pa.DataType) -> str:
    """Expression kind of an Arrow type: num, str, bool or time."""
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "num"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "time"
    return "str"
