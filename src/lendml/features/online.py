"""Online feature reads: what a training set would give at the materialized as-of time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from lendml.core.timeutil import to_utc_timestamp, utc_now
from lendml.errors import DataValidationError
from lendml.features import expr as fexpr
from lendml.features.definitions import ADDITIVE, Entity, FeatureService
from lendml.stores.base import OnlineStore, clean_value


def online_key(entity: Entity, row: Mapping[str, Any]) -> Any:
    """The online-store key of the entity a row names, or None if a key part is missing.

    A single-column key is its value; a key of several columns is the tuple of their
    values in the entity's order (stored as a JSON list). ``None`` when any key value is
    null or NaN: such a row belongs to no entity and gets the no-history values.

    Parameters
    ----------
    entity
        The entity whose key columns to read.
    row
        A mapping that holds every key column of ``entity``.

    Examples
    --------
    >>> online_key(Entity("customer", key="cid"), {"cid": 7})
    7
    >>> online_key(Entity("account", key=("bank", "no")), {"no": 12, "bank": "b1"})
    ('b1', 12)
    >>> online_key(Entity("account", key=("bank", "no")), {"no": None, "bank": "b1"}) is None
    True
    """
    cleaned = []
    for k in entity.keys:
        v = row[k]
        if type(v) is not int and type(v) is not str:  # plain keys skip the checks
            if v is None or (pd.api.types.is_scalar(v) and pd.isna(v)):
                return None
            v = clean_value(v)
        cleaned.append(v)
    return cleaned[0] if len(cleaned) == 1 else tuple(cleaned)


def online_features(
    store: OnlineStore,
    service: FeatureService,
    keys: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    *,
    as_of: datetime | str | None = None,
    request: Sequence[Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """Feature rows for entities, read from the online store.

    ``keys`` is either ``{"CUSTOMER_ID": [1, 2]}`` or ``[{"CUSTOMER_ID": 1}, ...]``;
    an entity with several key columns needs each of them
    (``{"bank_id": ["b1", "b2"], "account_no": [7, 7]}``). Entities the store has never
    seen, and rows with a null in any key column, get what a training set gives with no
    history: 0 for count/sum/count_distinct, null otherwise. Derived features are
    computed here with the same semantics as offline, using ``as_of`` (default: now) and
    any ``request`` fields.
    """
    rows = _rows(keys)
    n = len(rows)
    if request is not None and len(request) != n:
        raise DataValidationError(f"request has {len(request)} rows but keys has {n}.")
    when = utc_now() if as_of is None else to_utc_timestamp(as_of, what="as_of").to_pydatetime()
    out: list[dict[str, Any]] = [dict(r) for r in rows]
    for view in service.feature_views:
        entity = view.entity
        for i, r in enumerate(rows):
            absent = [k for k in entity.keys if k not in r]
            if absent:
                raise DataValidationError(
                    f"Feature view {view.name!r} needs entity {entity.name!r} key column(s) "
                    f"{absent}, missing in row {i} of the request (its key is "
                    f"{list(entity.keys)}). Give every key column for every row.",
                    feature_view=view.name,
                )
        lookup = [online_key(entity, r) for r in rows]
        asked = [i for i, k in enumerate(lookup) if k is not None]
        found = store.read_many(view.name, [lookup[i] for i in asked])
        records: list[Any] = [None] * n
        for i, rec in zip(asked, found, strict=True):
            records[i] = rec
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
