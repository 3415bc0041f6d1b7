"""Online feature reads: what a training set would give at the materialized as-of time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from lendml.core.timeutil import to_utc_timestamp, utc_now
from lendml.errors import DataValidationError
from lendml.features import expr as fexpr
from lendml.features.definitions import ADDITIVE, FeatureService
from lendml.stores.base import OnlineStore


def online_features(
    store: OnlineStore,
    service: FeatureService,
    keys: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    *,
    as_of: datetime | str | None = None,
    request: Sequence[Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Feature rows for entities, read from the online store.

    ``keys`` is either ``{"CUSTOMER_ID": [1, 2]}`` or ``[{"CUSTOMER_ID": 1}, ...]``.
    Entities the store has never seen get what a training set gives with no history:
    0 for count/sum/count_distinct, null otherwise. Derived features are computed here
    with the same semantics as offline, using ``as_of`` (default: now) and any
    ``request`` fields.
    """
    rows = _rows(keys)
    n = len(rows)
    if request is not None and len(request) != n:
        raise DataValidationError(f"request has {len(request)} rows but keys has {n}.")
    when = utc_now() if as_of is None else to_utc_timestamp(as_of, what="as_of").to_pydatetime()
    out: list[dict[str, Any]] = [dict(r) for r in rows]
    for view in service.feature_views:
        key = view.entity.key
        missing = [i for i, r in enumerate(rows) if key not in r]
        if missing:
            raise DataValidationError(
                f"Feature view {view.name!r} needs entity key {key!r}, missing in row "
                f"{missing[0]} of the request.",
                feature_view=view.name,
            )
        records = store.read_many(view.name, [r[key] for r in rows])
        defaults = {a.name: (0 if a.function in ADDITIVE else None) for a in view.aggregations}
        defaults.update({f.name: None for f in view.features})
        for i, rec in enumerate(records):
            values = rec.values if rec is not None else {}
            for name in view.feature_names:
                out[i][name] = values.get(name, defaults[name])
    for dview in service.derived_views:
        for i, row in enumerate(out):
            ctx = {**row, **(request[i] if request is not None else {}), "as_of": when}
            for d in dview.features:
                ctx[d.name] = row[d.name] = fexpr.evaluate(d.expr, ctx)
    return pd.DataFrame(out)


def _rows(keys: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(keys, Mapping):
        lengths = {len(v) for v in keys.values()}
        if len(lengths) > 1:
            raise DataValidationError(f"Key columns have different lengths: {sorted(lengths)}.")
        n = lengths.pop() if lengths else 0
        return [{k: v[i] for k, v in keys.items()} for i in range(n)]
    return [dict(r) for r in keys]
