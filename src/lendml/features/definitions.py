"""Feature definitions: plain immutable specs that know nothing of an engine.

Engines compile them (see :mod:`lendml.features.plan`). Each spec has ``to_spec()``, a
JSON-ready dict from which the catalog derives a content-hash version.

Examples
--------
>>> from lendml import Entity, Source, FeatureView, Aggregation, FeatureService
>>> customer = Entity("customer", key="CUSTOMER_ID")
>>> tx = Source.parquet("data/transactions.parquet", timestamp="TX_DATETIME")
>>> spend = FeatureView(
...     "spend", entity=customer, source=tx,
...     aggregations=[Aggregation("TX_AMOUNT", "count", window="1d", name="nb_tx_1d")],
... )
>>> FeatureService("fraud_v1", [spend]).feature_names
('nb_tx_1d',)
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from lendml.core.timeutil import format_duration, parse_duration, to_utc_timestamp
from lendml.errors import ConfigError, DefinitionError
from lendml.features import expr

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
AGG_FUNCTIONS = ("count", "sum", "mean", "min", "max", "std", "last", "count_distinct")
#: Functions whose value over an empty window is 0 rather than null.
ADDITIVE = frozenset({"count", "sum", "count_distinct"})
Boundary = Literal["inclusive", "strict"]


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise DefinitionError(
            f"{what} name {name!r} is not a valid identifier: use letters, digits and "
            "underscores, not starting with a digit (e.g. 'avg_amount_7d')."
        )
    return name


def _names(value: str | Iterable[str]) -> tuple[str, ...]:
    """Column names as a tuple; one name given as a string is one name, not its letters."""
    return (value,) if isinstance(value, str) else tuple(value)


def spec_hash(spec: dict[str, Any]) -> str:
    """Content-hash version of a spec: 12 hex digits of sha256 over canonical JSON."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Entity:
    """What a feature describes and a prediction is about (``borrower``, ``customer``).

    Parameters
    ----------
    name
        The entity's name.
    key
        The key column: one name, or a tuple (or list) of names for an entity identified
        by several columns together (an account is a bank and an account number). A
        tuple of one name is the same entity as that name given alone.
    description
        Free text.

    Examples
    --------
    >>> Entity("customer", key="CUSTOMER_ID").keys
    ('CUSTOMER_ID',)
    >>> account = Entity("account", key=("bank_id", "account_no"))
    >>> account.keys, account.to_spec()["key"]
    (('bank_id', 'account_no'), ['bank_id', 'account_no'])
    """

    name: str
    key: str | tuple[str, ...]
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name, "Entity")
        if isinstance(self.key, str):
            _check_name(self.key, f"Entity {self.name!r} key")
            return
        example = "e.g. key='customer_id' or key=('bank_id', 'account_no')"
        if not isinstance(self.key, list | tuple):
            raise DefinitionError(
                f"Entity {self.name!r}: key={self.key!r} must be a column name or a tuple of "
                f"column names, {example}."
            )
        keys = tuple(self.key)
        if not keys:
            raise DefinitionError(
                f"Entity {self.name!r}: key=() names no column; give at least one, {example}."
            )
        for k in keys:
            if not isinstance(k, str):
                raise DefinitionError(
                    f"Entity {self.name!r}: key column {k!r} in key={keys!r} is a "
                    f"{type(k).__name__}, not a column name; give names as strings, {example}."
                )
            _check_name(k, f"Entity {self.name!r} key")
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise DefinitionError(
                f"Entity {self.name!r}: key={keys!r} names {dupes} more than once; list each "
                "key column once."
            )
        # One column in a tuple is that column: same spec, same version, same online key.
        object.__setattr__(self, "key", keys[0] if len(keys) == 1 else keys)

    @property
    def keys(self) -> tuple[str, ...]:
        """The key columns, in order (one for a single-column key)."""
        return (self.key,) if isinstance(self.key, str) else self.key

    @property
    def is_composite(self) -> bool:
        """Whether several columns together identify the entity."""
        return not isinstance(self.key, str)

    def to_spec(self) -> dict[str, Any]:
        key = self.key if isinstance(self.key, str) else list(self.key)
        return {"name": self.name, "key": key, "description": self.description}


_DTYPES = ("int", "float", "number", "string", "bool", "timestamp")
_NUMERIC_DTYPES = frozenset({"int", "float", "number"})


def _literal_kind(value: Any, what: str) -> str:
    """``num``, ``str``, ``bool`` or ``time`` for a rule literal; refuse anything else."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isnan(value):
            raise DefinitionError(
                f"{what} is NaN; NaN is a missing value (checked by nullable=False), not a bound."
            )
        return "num"
    if isinstance(value, datetime):
        return "time"
    if isinstance(value, str):
        return "str"
    raise DefinitionError(
        f"{what} {value!r} has type {type(value).__name__}; use a number, a string, a bool or "
        "a datetime."
    )


def _as_time(value: Any, what: str) -> str:
    """A bound for a timestamp column as ISO-8601 UTC text (naive means UTC)."""
    try:
        return to_utc_timestamp(value, what=what).isoformat()
    except ConfigError as exc:
        raise DefinitionError(exc.message) from exc


@dataclass(frozen=True)
class Column:
    """Validation rules for one source column, checked on the data at apply and materialize.

    Parameters
    ----------
    name
        The column of the source.
    dtype
        ``int``, ``float``, ``number`` (int or float), ``string``, ``bool`` or
        ``timestamp`` (any width or time zone of that family).
    nullable
        ``False`` refuses missing values: null, and NaN in float columns.
    min, max
        Inclusive bounds: numbers, or for a timestamp column an ISO-8601 time or datetime
        (naive means UTC).
    isin
        The allowed values (numbers, strings or bools, all of one kind).
    unique
        No value appears twice.

    Missing values (null, and NaN in float columns) are checked by ``nullable`` only:
    ``min``, ``max``, ``isin`` and ``unique`` ignore them.

    Examples
    --------
    >>> Column("amount", dtype="float", nullable=False, min=0).to_spec()["min"]
    0
    >>> Column("opened_at", dtype="timestamp", min="2020-01-01").to_spec()["min"]
    '2020-01-01T00:00:00+00:00'
    """

    name: str
    dtype: str | None = None
    nullable: bool = True
    min: float | str | datetime | None = None
    max: float | str | datetime | None = None
    isin: tuple[Any, ...] | None = None
    unique: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise DefinitionError(f"Column name {self.name!r} must be a non-empty string.")
        where = f"Column {self.name!r}"
        if self.dtype is not None and self.dtype not in _DTYPES:
            raise DefinitionError(
                f"{where}: dtype {self.dtype!r} is not one of {', '.join(_DTYPES)}."
            )
        for flag in ("nullable", "unique"):
            if not isinstance(getattr(self, flag), bool):
                raise DefinitionError(
                    f"{where}: {flag}={getattr(self, flag)!r} must be True or False."
                )
        kinds = {}
        for bound in ("min", "max"):
            value = getattr(self, bound)
            if value is None:
                continue
            kind = _literal_kind(value, f"{where}: {bound}")
            if kind == "str":
                object.__setattr__(self, bound, _as_time(value, f"{where} {bound}"))
                kind = "time"
            elif kind == "time":
                object.__setattr__(self, bound, _as_time(value, f"{where} {bound}"))
            if kind == "bool":
                raise DefinitionError(
                    f"{where}: {bound}={value!r} is a bool; bounds are numbers or timestamps."
                )
            expected = {"num": _NUMERIC_DTYPES, "time": {"timestamp"}}[kind]
            if self.dtype is not None and self.dtype not in expected:
                raise DefinitionError(
                    f"{where}: {bound}={value!r} does not fit dtype {self.dtype!r}; bound a "
                    f"{'number' if kind == 'num' else 'timestamp'} column, or drop {bound}=."
                )
            kinds[bound] = kind
        if len(set(kinds.values())) > 1:
            raise DefinitionError(
                f"{where}: min={self.min!r} and max={self.max!r} must both be numbers or both "
                "timestamps."
            )
        lo, hi = self.min, self.max
        if kinds.get("min") == "time" and kinds.get("max") == "time":
            lo, hi = to_utc_timestamp(lo), to_utc_timestamp(hi)  # type: ignore[arg-type]
        if lo is not None and hi is not None and lo > hi:  # type: ignore[operator]
            raise DefinitionError(
                f"{where}: min={self.min!r} is greater than max={self.max!r}; no value could pass."
            )
        if self.isin is not None:
            self._check_isin(where)

    def _check_isin(self, where: str) -> None:
        values = self.isin
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise DefinitionError(
                f"{where}: isin={values!r} must be a list or tuple of allowed values, e.g. "
                "isin=('web', 'app')."
            )
        values = tuple(values)
        if not values:
            raise DefinitionError(f"{where}: isin=() allows no value; list at least one.")
        if any(v is None for v in values):
            raise DefinitionError(
                f"{where}: isin={values!r} lists None; missing values are allowed or refused "
                "by nullable=, not isin=."
            )
        kinds = {_literal_kind(v, f"{where}: isin value") for v in values}
        if len(kinds) > 1:
            raise DefinitionError(
                f"{where}: isin={values!r} mixes {' and '.join(sorted(kinds))} values; list "
                "values of one kind, as the column holds."
            )
        kind = kinds.pop()
        fits = {
            "num": _NUMERIC_DTYPES,
            "str": {"string", "timestamp"},
            "bool": {"bool"},
            "time": {"timestamp"},
        }[kind]
        if self.dtype is not None and self.dtype not in fits:
            raise DefinitionError(f"{where}: isin={values!r} does not fit dtype {self.dtype!r}.")
        if self.dtype == "timestamp" or kind == "time":
            values = tuple(_as_time(v, f"{where} isin value") for v in values)
            kind = "time"
        object.__setattr__(self, "isin", values)
        object.__setattr__(self, "_isin_kind", kind)

    @property
    def rule_kinds(self) -> dict[str, str]:
        """The literal kind (``num``, ``str``, ``bool``, ``time``) of each declared bound/set."""
        out = {}
        for bound in ("min", "max"):
            value = getattr(self, bound)
            if value is not None:
                out[bound] = "time" if isinstance(value, str) else "num"
        if self.isin is not None:
            out["isin"] = self._isin_kind  # type: ignore[attr-defined]  # set in __post_init__
        return out

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "nullable": self.nullable,
            "min": self.min,
            "max": self.max,
            "isin": list(self.isin) if self.isin is not None else None,
            "unique": self.unique,
        }


@dataclass(frozen=True)
class Source:
    """A table of events with an event-time column.

    Build one with :meth:`parquet` or :meth:`csv`. ``path`` may be a file, a folder
    (Hive partitions are read) or a glob; a relative path resolves against the project
    folder. ``post_outcome`` names columns known only after the outcome: a feature that
    reads one is refused with :class:`~lendml.errors.LeakageError`.
    """

    format: Literal["parquet", "csv"]
    path: str
    timestamp: str
    name: str | None = None
    columns: tuple[Column, ...] = ()
    post_outcome: tuple[str, ...] = ()
    unique_key: tuple[str, ...] = ()
    description: str = ""

    @staticmethod
    def parquet(
        path: str,
        *,
        timestamp: str,
        name: str | None = None,
        columns: Iterable[Column] = (),
        post_outcome: Iterable[str] = (),
        unique_key: Iterable[str] = (),
        description: str = "",
    ) -> Source:
        """A Parquet file, folder or glob."""
        return Source(
            "parquet",
            str(path),
            timestamp,
            name,
            tuple(columns),
            _names(post_outcome),
            _names(unique_key),
            description,
        )

    @staticmethod
    def csv(
        path: str,
        *,
        timestamp: str,
        name: str | None = None,
        columns: Iterable[Column] = (),
        post_outcome: Iterable[str] = (),
        unique_key: Iterable[str] = (),
        description: str = "",
    ) -> Source:
        """A CSV file (optionally .gz) or glob with a header row."""
        return Source(
            "csv",
            str(path),
            timestamp,
            name,
            tuple(columns),
            _names(post_outcome),
            _names(unique_key),
            description,
        )

    def __post_init__(self) -> None:
        if self.format not in ("parquet", "csv"):
            raise DefinitionError(f"Source format {self.format!r} must be 'parquet' or 'csv'.")
        if not self.path:
            raise DefinitionError("Source path is empty: give a file, folder or glob.")
        _check_name(self.timestamp, f"Source {self.path!r} timestamp column")
        where = f"Source {self.name or self.path!r}"
        for c in self.columns:
            if not isinstance(c, Column):
                raise DefinitionError(
                    f"{where}: columns= holds {c!r}, which is not a Column; write e.g. "
                    "Column('amount', dtype='float', min=0)."
                )
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DefinitionError(
                f"{where}: columns {dupes} are declared more than once; merge their rules "
                "into one Column each."
            )
        key = self.unique_key
        if any(not isinstance(k, str) or not k for k in key) or len(set(key)) != len(key):
            raise DefinitionError(
                f"{where}: unique_key={list(key)!r} must name distinct columns, e.g. "
                "unique_key=['CUSTOMER_ID', 'TX_DATETIME']."
            )

    def to_spec(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "path": self.path,
            "timestamp": self.timestamp,
            "name": self.name,
            "columns": [c.to_spec() for c in self.columns],
            "post_outcome": list(self.post_outcome),
            "unique_key": list(self.unique_key),
        }


@dataclass(frozen=True)
class Aggregation:
    """A windowed aggregation of one source column at each as-of time.

    The window ends ``offset`` before the as-of time (``end = as_of - offset``) and is
    ``window`` long. Count and sum over an empty window are 0, count_distinct too; the
    others are null. ``where`` is a filter in lendml's expression language; ``column``
    may be ``"*"`` for ``count`` (count rows).
    """

    column: str
    function: str
    window: str | timedelta
    name: str | None = None
    where: str | None = None
    offset: str | timedelta | None = None

    def __post_init__(self) -> None:
        if self.function not in AGG_FUNCTIONS:
            raise DefinitionError(
                f"Aggregation on {self.column!r}: function {self.function!r} is not one of "
                f"{', '.join(AGG_FUNCTIONS)}."
            )
        if self.column == "*" and self.function != "count":
            raise DefinitionError(
                f"Aggregation {self.function!r} over '*': only 'count' may use '*'; name a column."
            )
        where = f"Aggregation {self.name or self.column!r}"
        try:
            window = parse_duration(self.window, what="window")
            offset = parse_duration(self.offset or timedelta(0), what="offset")
        except DefinitionError:
            raise
        except ValueError as exc:
            raise DefinitionError(f"{where}: {exc}") from exc
        if window <= timedelta(0):
            raise DefinitionError(f"{where}: window {self.window!r} must be longer than 0.")
        object.__setattr__(self, "window", window)
        object.__setattr__(self, "offset", offset)
        if self.name is None:
            base = "rows" if self.column == "*" else self.column
            suffix = f"_{format_duration(window)}"
            if offset:
                suffix += f"_off{format_duration(offset)}"
            object.__setattr__(self, "name", f"{base}_{self.function}{suffix}")
        _check_name(self.name, "Aggregation")
        if self.where is not None:
            object.__setattr__(self, "_where_expr", expr.parse(self.where, where=where))

    @property
    def where_expr(self) -> expr.Expression | None:
        return getattr(self, "_where_expr", None)

    @property
    def window_td(self) -> timedelta:
        return self.window  # type: ignore[return-value]  # normalised in __post_init__

    @property
    def offset_td(self) -> timedelta:
        return self.offset  # type: ignore[return-value]  # normalised in __post_init__

    def to_spec(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "function": self.function,
            "window": format_duration(self.window_td),
            "name": self.name,
            "where": self.where,
            "offset": format_duration(self.offset_td),
        }


@dataclass(frozen=True)
class Feature:
    """A row-level feature: a source column's value in the latest row at the as-of time."""

    column: str
    name: str | None = None

    def __post_init__(self) -> None:
        if self.name is None:
            object.__setattr__(self, "name", self.column)
        _check_name(self.name, "Feature")

    def to_spec(self) -> dict[str, Any]:
        return {"column": self.column, "name": self.name}


@dataclass(frozen=True)
class Derived:
    """A feature computed from other features, spine/request fields and ``as_of``.

    The same expression runs offline (compiled into the engine plan) and online
    (evaluated in Python on the looked-up values).
    """

    name: str
    expression: str

    def __post_init__(self) -> None:
        _check_name(self.name, "Derived feature")
        object.__setattr__(
            self, "_expr", expr.parse(self.expression, where=f"Derived feature {self.name!r}")
        )

    @property
    def expr(self) -> expr.Expression:
        return self._expr  # type: ignore[attr-defined]

    def to_spec(self) -> dict[str, Any]:
        return {"name": self.name, "expression": self.expression}


@dataclass(frozen=True)
class FeatureView:
    """Named features of one entity computed from one source.

    ``aggregations`` are windowed; ``features`` are row lookups (latest row at or before
    the as-of time, if not older than ``ttl``). ``boundary`` decides whether an event
    stamped exactly at the as-of time counts: ``"inclusive"`` (default, at-or-before,
    as Feast does) or ``"strict"`` (strictly before).
    """

    name: str
    entity: Entity
    source: Source
    aggregations: Sequence[Aggregation] = ()
    features: Sequence[Feature] = ()
    ttl: str | timedelta | None = None
    boundary: Boundary = "inclusive"
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_name(self.name, "FeatureView")
        object.__setattr__(self, "aggregations", tuple(self.aggregations))
        object.__setattr__(self, "features", tuple(self.features))
        for item in (*self.aggregations, *self.features):
            if not isinstance(item, Aggregation | Feature):
                raise DefinitionError(
                    f"FeatureView {self.name!r}: {item!r} is not an Aggregation or a Feature."
                )
        if not self.aggregations and not self.features:
            raise DefinitionError(
                f"FeatureView {self.name!r} defines no features: give aggregations= or features=."
            )
        if self.boundary not in ("inclusive", "strict"):
            raise DefinitionError(
                f"FeatureView {self.name!r}: boundary {self.boundary!r} must be 'inclusive' "
                "(events at the as-of time count) or 'strict' (only events before it)."
            )
        if self.ttl is not None:
            object.__setattr__(self, "ttl", parse_duration(self.ttl, what="ttl"))
        names = [f.name for f in (*self.aggregations, *self.features)]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DefinitionError(
                f"FeatureView {self.name!r}: duplicate feature names {dupes}; give each a "
                "distinct name=."
            )

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in (*self.aggregations, *self.features))  # type: ignore[misc]

    @property
    def ttl_td(self) -> timedelta | None:
        return self.ttl  # type: ignore[return-value]

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "entity": self.entity.to_spec(),
            "source": self.source.to_spec(),
            "aggregations": [a.to_spec() for a in self.aggregations],
            "features": [f.to_spec() for f in self.features],
            "ttl": format_duration(self.ttl_td) if self.ttl_td is not None else None,
            "boundary": self.boundary,
        }

    @property
    def version(self) -> str:
        return spec_hash(self.to_spec())


@dataclass(frozen=True)
class DerivedView:
    """A named group of derived (on-demand) features.

    ``request_fields`` are columns that come with the spine or the scoring request
    (e.g. ``loan_amount``); ``as_of`` is always available.
    """

    name: str
    features: Sequence[Derived]
    request_fields: dict[str, str] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name, "DerivedView")
        object.__setattr__(self, "features", tuple(self.features))
        if not self.features:
            raise DefinitionError(f"DerivedView {self.name!r} defines no features.")
        for kind in self.request_fields.values():
            if kind not in ("number", "string", "bool", "timestamp"):
                raise DefinitionError(
                    f"DerivedView {self.name!r}: request field type {kind!r} must be one of "
                    "number, string, bool, timestamp."
                )

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.features)

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "features": [d.to_spec() for d in self.features],
            "request_fields": dict(sorted(self.request_fields.items())),
        }

    @property
    def version(self) -> str:
        return spec_hash(self.to_spec())


View = FeatureView | DerivedView


@dataclass(frozen=True)
class FeatureService:
    """The named set of features a model uses (its version is a content hash)."""

    name: str
    views: Sequence[View]
    description: str = ""

    def __post_init__(self) -> None:
        _check_name(self.name, "FeatureService")
        object.__setattr__(self, "views", tuple(self.views))
        if not self.views:
            raise DefinitionError(f"FeatureService {self.name!r} names no feature views.")
        for v in self.views:
            if not isinstance(v, FeatureView | DerivedView):
                raise DefinitionError(
                    f"FeatureService {self.name!r}: {v!r} is not a FeatureView or DerivedView."
                )
        names = [n for v in self.views for n in v.feature_names]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise DefinitionError(
                f"FeatureService {self.name!r}: feature names {dupes} appear in more than one "
                "view; rename them with name= so each output column is unique."
            )

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(n for v in self.views for n in v.feature_names)

    @property
    def feature_views(self) -> tuple[FeatureView, ...]:
        return tuple(v for v in self.views if isinstance(v, FeatureView))

    @property
    def derived_views(self) -> tuple[DerivedView, ...]:
        return tuple(v for v in self.views if isinstance(v, DerivedView))

    @property
    def entities(self) -> tuple[Entity, ...]:
        seen: dict[str, Entity] = {}
        for v in self.feature_views:
            seen.setdefault(v.entity.name, v.entity)
        return tuple(seen.values())

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "views": [{"name": v.name, "version": v.version} for v in self.views],
        }

    @property
    def version(self) -> str:
        return spec_hash(self.to_spec())
