"""Checks run at ``apply``: definitions against their sources' schemas.

A bad definition is refused with a message naming the definition, the bad value and the
fix: unknown columns, aggregations over non-numeric columns, filters that mix types,
derived features that read names the service lacks, and post-outcome columns.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads

from lendml.core.timeutil import to_utc_timestamp
from lendml.errors import ConfigError, DataValidationError, DefinitionError
from lendml.features.definitions import (
    DerivedView,
    Entity,
    FeatureService,
    FeatureView,
    Source,
)
from lendml.features.plan import arrow_kind
from lendml.features.training_set import check_leakage

NUMERIC_ONLY = frozenset({"sum", "mean", "min", "max", "std"})


def source_schema(source: Source, resolve_path: Callable[[str], str]) -> pa.Schema:
    """The Arrow schema of a source, read from file metadata (no full scan)."""
    path = resolve_path(source.path)
    p = Path(path)
    try:
        if any(ch in path for ch in "*?["):
            files = sorted(glob.glob(path, recursive=True))
            if not files:
                raise FileNotFoundError(path)
            ds = pads.dataset(files, format=source.format)
        elif p.is_dir():
            ds = pads.dataset(p, format=source.format, partitioning="hive")
        elif p.exists():
            ds = pads.dataset(p, format=source.format)
        else:
            raise FileNotFoundError(path)
        return ds.schema
    except FileNotFoundError as exc:
        raise DataValidationError(
            f"Source {source.name or source.path!r}: {path!r} does not exist or matches no "
            "files. Check the path (relative paths resolve against the project folder).",
            source=source.path,
        ) from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataValidationError(
            f"Source {source.name or source.path!r}: cannot read {path!r} as "
            f"{source.format}: {exc}",
            source=source.path,
        ) from exc


def _missing(view: str, what: str, column: str, schema: pa.Schema) -> DefinitionError:
    return DefinitionError(
        f"FeatureView {view!r}: {what} {column!r} is not a column of its source. "
        f"Existing columns: {', '.join(schema.names)}.",
        feature_view=view,
    )


def feature_kinds(view: FeatureView, schema: pa.Schema) -> dict[str, str]:
    """Expression kind of each feature a view produces."""
    kinds = {}
    for a in view.aggregations:
        if a.function in ("last", "min", "max") and a.column != "*":
            kinds[a.name] = arrow_kind(schema.field(a.column).type)
        else:
            kinds[a.name] = "num"
    for f in view.features:
        kinds[f.name] = arrow_kind(schema.field(f.column).type)
    return kinds


def validate_view(view: FeatureView, schema: pa.Schema) -> None:
    """Refuse a feature view whose definitions do not fit its source schema."""
    src_kinds = {f.name: arrow_kind(f.type) for f in schema}
    ts = view.source.timestamp
    if ts not in schema.names:
        raise _missing(view.name, "timestamp column", ts, schema)
    if src_kinds[ts] != "time":
        raise DefinitionError(
            f"FeatureView {view.name!r}: timestamp column {ts!r} has type "
            f"{schema.field(ts).type}, expected a timestamp. Convert it in the source data.",
            feature_view=view.name,
        )
    entity = view.entity
    absent = [k for k in entity.keys if k not in schema.names]
    if absent and not entity.is_composite:
        raise _missing(view.name, f"entity {entity.name!r} key", entity.key, schema)
    if absent:
        raise DefinitionError(
            f"FeatureView {view.name!r}: entity {entity.name!r} has key {list(entity.keys)}, "
            f"but its source lacks {absent}. Existing columns: {', '.join(schema.names)}. "
            "Give the entity the source's key column names, or add the missing columns to "
            "the source data.",
            feature_view=view.name,
        )
    for a in view.aggregations:
        if a.column != "*" and a.column not in schema.names:
            raise _missing(view.name, f"aggregation {a.name!r} column", a.column, schema)
        if a.function in NUMERIC_ONLY and src_kinds[a.column] != "num":
            raise DefinitionError(
                f"FeatureView {view.name!r}: aggregation {a.name!r} applies {a.function!r} to "
                f"{a.column!r} of type {schema.field(a.column).type}, which is not numeric. "
                "Use count, count_distinct or last, or aggregate a numeric column.",
                feature_view=view.name,
            )
        if a.where_expr is not None:
            kind = a.where_expr.kind(
                src_kinds, where=f"FeatureView {view.name!r} aggregation {a.name!r} where"
            )
            if kind not in ("bool", "null"):
                raise DefinitionError(
                    f"FeatureView {view.name!r}: aggregation {a.name!r} where={a.where!r} is "
                    "not a condition (true/false); write e.g. 'TX_AMOUNT > 100'.",
                    feature_view=view.name,
                )
    for f in view.features:
        if f.column not in schema.names:
            raise _missing(view.name, f"feature {f.name!r} column", f.column, schema)
    if view.features and view.ttl_td is None:
        # Row features without a TTL are allowed; values never expire. Nothing to check.
        pass


def validate_source_rules(source: Source, schema: pa.Schema) -> None:
    """Refuse column rules that cannot apply to the source's columns.

    The rules themselves are checked on the data by :mod:`lendml.features.data_checks`;
    this only checks that each names an existing column and that its bounds and allowed
    values are of the column's kind (a number bound on a string column can never pass).
    """
    where = f"Source {source.name or source.path!r}"
    for name in (*(c.name for c in source.columns), *source.unique_key):
        if name not in schema.names:
            raise DefinitionError(
                f"{where} declares rules for column {name!r}, which its data lacks. "
                f"Existing columns: {', '.join(schema.names)}.",
                source=source.path,
            )
    for col in source.columns:
        if col.dtype is not None:
            continue  # the Column checked its bounds against dtype; the data check checks dtype
        actual = arrow_kind(schema.field(col.name).type)
        for rule, kind in col.rule_kinds.items():
            fits = kind == actual or (kind == "str" and actual == "time" and rule == "isin")
            if not fits:
                value = getattr(col, rule)
                raise DefinitionError(
                    f"{where}: Column {col.name!r} {rule}={value!r} cannot apply to a column "
                    f"of type {schema.field(col.name).type}; give {rule} values of the "
                    "column's kind, or set dtype= to state the type you expect.",
                    source=source.path,
                )
        if col.rule_kinds.get("isin") == "str" and actual == "time":
            for value in col.isin or ():
                try:
                    to_utc_timestamp(value, what=f"{where} Column {col.name!r} isin value")
                except ConfigError as exc:
                    raise DefinitionError(exc.message, source=source.path) from exc


def validate_service(service: FeatureService, kinds_by_view: dict[str, dict[str, str]]) -> None:
    """Refuse a service whose derived features read names it does not provide."""
    check_leakage(service)
    available: dict[str, str] = {"as_of": "time"}
    for view in service.feature_views:
        available.update(kinds_by_view[view.name])
    for dview in service.derived_views:
        for name, kind in dview.request_fields.items():
            available[name] = {
                "number": "num",
                "string": "str",
                "bool": "bool",
                "timestamp": "time",
            }[kind]
        for d in dview.features:
            kind = d.expr.kind(
                available, where=f"FeatureService {service.name!r}, derived feature {d.name!r}"
            )
            available[d.name] = kind


def validate_definitions(
    entities: Iterable[Entity],
    views: Iterable[FeatureView],
    derived: Iterable[DerivedView],
    services: Iterable[FeatureService],
    resolve_path: Callable[[str], str],
) -> dict[str, pa.Schema]:
    """Validate everything; return each feature view's source schema."""
    names: dict[str, str] = {}
    for kind, objs in (
        ("entity", entities),
        ("feature view", views),
        ("derived view", derived),
        ("feature service", services),
    ):
        for o in objs:
            key = f"{kind}:{o.name}"
            if key in names:
                raise DefinitionError(
                    f"Two {kind}s are named {o.name!r}; names must be unique within a project."
                )
            names[key] = o.name
    schemas: dict[str, pa.Schema] = {}
    kinds: dict[str, dict[str, str]] = {}
    for view in views:
        schema = source_schema(view.source, resolve_path)
        validate_source_rules(view.source, schema)
        validate_view(view, schema)
        schemas[view.name] = schema
        kinds[view.name] = feature_kinds(view, schema)
    for service in services:
        for view in service.feature_views:
            if view.name not in kinds:
                schema = source_schema(view.source, resolve_path)
                validate_view(view, schema)
                kinds[view.name] = feature_kinds(view, schema)
        validate_service(service, kinds)
    return schemas
