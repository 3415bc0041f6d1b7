"""Enforce the column rules a source declares on its data, on the offline engine.

A :class:`~lendml.features.definitions.Source` may declare :class:`Column` rules
(``dtype``, ``nullable``, ``min``, ``max``, ``isin``, ``unique``) and a ``unique_key``.
:func:`validate_source_data` checks them at ``Project.apply`` and before
``Project.materialize`` writes anything, and raises
:class:`~lendml.errors.DataValidationError` naming the source, the column, the rule, the
number of failing rows and up to five sample bad values.

How the rules run
-----------------
Each rule is a pandera ``Check`` over the source's Ibis table (pandera's Ibis backend), and
every check is one aggregate the engine computes: ``count(rows that fail) == 0``. The data
is never loaded into pandas; a file of any size costs one column scan per rule, and only a
failing rule costs a second query for its count and samples. Semantics:

* **Missing values** are null, and NaN in float columns. ``nullable=False`` refuses both;
  ``min``, ``max``, ``isin`` and ``unique`` ignore them (as pandera does for pandas data).
* ``dtype`` names a family (``int`` is any integer width, ``timestamp`` any time zone) and
  is checked on the table's schema, without a scan.
* ``unique`` / ``unique_key``: no two rows share a value (a key) with no missing part.

Why not pandera's built-in checks: in pandera 0.35's Ibis backend ``Column(unique=True)``
is accepted but never enforced, the ``nullable`` check reports an empty table as holding
nulls (SQL's ``bool_and`` over no rows is NULL), its dtype check compares exact types
(``int32`` is not ``int64``), and ``ge``/``le``/``isin`` flag NaN (DuckDB orders NaN above
every number), while a failing built-in check pulls a per-row mask into pandas. The rules
below are written as aggregates instead, so the same code runs on DuckDB and Spark.

Examples
--------
>>> from lendml import Column, Source
>>> src = Source.parquet(
...     "tx.parquet", timestamp="ts", unique_key=["tx_id"],
...     columns=[Column("amount", dtype="float", nullable=False, min=0)],
... )
>>> [r.label for r in declared_rules(src)]
["dtype='float'", 'nullable=False', 'min=0', 'unique_key']
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import pandas as pd
import pandera.errors as pandera_errors
import pandera.ibis as pandera_ibis
from pandera.api.ibis.types import IbisData
from pandera.config import ValidationDepth, config_context

from lendml.core.timeutil import to_utc_timestamp
from lendml.engines.base import OfflineEngine, resolve_files
from lendml.errors import DataValidationError, DefinitionError, EngineError
from lendml.features.definitions import Source

#: Sample bad values shown per failing rule.
MAX_SAMPLES = 5
#: Failing rules listed in one error message (the rest are counted).
MAX_LISTED = 10

_DTYPE_FAMILIES: dict[str, Callable[[dt.DataType], bool]] = {
    "int": lambda t: t.is_integer(),
    "float": lambda t: t.is_floating() or t.is_decimal(),
    "number": lambda t: t.is_numeric() and not t.is_boolean(),
    "string": lambda t: t.is_string(),
    "bool": lambda t: t.is_boolean(),
    "timestamp": lambda t: t.is_timestamp(),
}


@dataclass(frozen=True)
class Rule:
    """One declared rule of a source: what to check on which column(s)."""

    columns: tuple[str, ...]
    kind: str  # dtype | nullable | min | max | isin | unique | unique_key
    value: Any = None

    @property
    def label(self) -> str:
        """How the rule reads in a message: ``min=0``, ``isin=('a', 'b')``, ``unique``."""
        if self.kind in ("unique", "unique_key"):
            return self.kind
        if self.kind == "isin":
            return f"isin={tuple(self.value)!r}"
        return f"{self.kind}={self.value!r}"

    @property
    def where(self) -> str:
        if len(self.columns) == 1:
            return f"column {self.columns[0]!r}"
        return f"columns {self.columns!r}"


@dataclass(frozen=True)
class RuleViolation:
    """A rule the data breaks, with how many rows fail and a few of their values."""

    source: str
    rule: Rule
    failing_rows: int
    total_rows: int
    samples: tuple[Any, ...]

    def describe(self) -> str:
        """One line: the column, the rule, the failing rows and sample bad values."""
        return (
            f"{self.rule.where}, rule {self.rule.label}: {self.failing_rows:,} of "
            f"{self.total_rows:,} rows fail; sample bad values: {list(self.samples)!r}"
        )


def declared_rules(source: Source) -> list[Rule]:
    """The rules a source declares, in the order they are checked."""
    rules: list[Rule] = []
    for col in source.columns:
        name = (col.name,)
        if col.dtype is not None:
            rules.append(Rule(name, "dtype", col.dtype))
        if not col.nullable:
            rules.append(Rule(name, "nullable", False))
        if col.min is not None:
            rules.append(Rule(name, "min", col.min))
        if col.max is not None:
            rules.append(Rule(name, "max", col.max))
        if col.isin is not None:
            rules.append(Rule(name, "isin", col.isin))
        if col.unique:
            rules.append(Rule(name, "unique"))
    if source.unique_key:
        rules.append(Rule(tuple(source.unique_key), "unique_key"))
    return rules


# ------------------------------------------------------------------ rule expressions


def _missing(col: ir.Column) -> ir.BooleanColumn:
    """Null, or NaN for a float column."""
    if col.type().is_floating():
        return col.isnull() | col.isnan()
    return col.isnull()


def _literal(value: Any, col: ir.Column) -> ir.Scalar:
    """A rule value as a literal comparable with ``col`` (timestamps in its time zone)."""
    t = col.type()
    if t.is_timestamp():
        ts = to_utc_timestamp(value)
        ts = ts.tz_convert(t.timezone) if t.timezone else ts.tz_localize(None)
        return ibis.literal(ts.to_pydatetime(), type=t)
    return ibis.literal(value)


def _fails(rule: Rule, table: ir.Table) -> ir.BooleanColumn:
    """True for a row that breaks a row-level rule (nullable, min, max, isin)."""
    col = table[rule.columns[0]]
    missing = _missing(col)
    if rule.kind == "nullable":
        return missing
    if rule.kind == "min":
        return ~missing & (col < _literal(rule.value, col))
    if rule.kind == "max":
        return ~missing & (col > _literal(rule.value, col))
    if rule.kind == "isin":
        allowed = [_literal(v, col) for v in rule.value]
        return ~missing & ~col.isin(allowed)
    raise DefinitionError(f"Rule {rule.label} is not a row-level rule.")  # pragma: no cover


def _duplicates(rule: Rule, table: ir.Table) -> ir.Table:
    """Key values held by more than one row (rows with a missing key part are ignored)."""
    present = ibis.and_(*(~_missing(table[c]) for c in rule.columns))
    groups = table.filter(present).group_by(list(rule.columns)).aggregate(__n=ibis._.count())
    return groups.filter(groups["__n"] > 1)


def _passes(rule: Rule) -> Callable[[IbisData], ir.BooleanScalar]:
    """The pandera check function of a data rule: one aggregate, true when no row fails."""

    def check(data: IbisData) -> ir.BooleanScalar:
        if rule.kind in ("unique", "unique_key"):
            return _duplicates(rule, data.table).count() == 0
        return data.table.count(where=_fails(rule, data.table)) == 0

    return check


def pandera_schema(source: Source, rules: Sequence[Rule] | None = None) -> Any:
    """A pandera Ibis ``DataFrameSchema`` that checks a source's data rules.

    ``dtype`` rules are not part of it (they are checked on the table schema). Each check
    is named ``"<index>:<rule>"`` so a failure maps back to its :class:`Rule`.
    """
    rules = declared_rules(source) if rules is None else rules
    per_column: dict[str, list[Any]] = {}
    table_checks: list[Any] = []
    for i, rule in enumerate(rules):
        if rule.kind == "dtype":
            continue
        check = pandera_ibis.Check(_passes(rule), name=f"{i}:{rule.label}", error=rule.label)
        if len(rule.columns) == 1:
            per_column.setdefault(rule.columns[0], []).append(check)
        else:
            table_checks.append(check)
    columns = {
        # nullable=True: missing values are checked by the "nullable" rule's own check.
        name: pandera_ibis.Column(checks=checks, nullable=True, name=name)
        for name, checks in per_column.items()
    }
    return pandera_ibis.DataFrameSchema(
        columns, checks=table_checks, name=source.name or source.path
    )


# ------------------------------------------------------------------ reading a source


def read_source(engine: OfflineEngine, source: Source, path: str) -> ir.Table:
    """The source as an Ibis table on the engine, read so that NaN values are seen."""
    if engine.name == "duckdb" and source.format == "parquet":
        # Parquet min/max statistics exclude NaN by the format's spec, and DuckDB trusts
        # them unless told otherwise: it folds isnan() to false and prunes NaN rows from
        # range filters (duckdb/duckdb#25521), so a NaN would pass nullable=False.
        # can_have_nan=True turns that off for this read.
        resolved, is_dir = resolve_files(path, "parquet")
        target = os.path.join(resolved, "**", "*.parquet") if is_dir else resolved
        return engine.con.read_parquet(target, hive_partitioning=is_dir, can_have_nan=True)
    return engine.read_files(source.format, path)


# ------------------------------------------------------------------ checking


def _show(value: Any) -> Any:
    if isinstance(value, datetime | pd.Timestamp):
        return value.isoformat()
    if isinstance(value, dict):
        return tuple(_show(v) for v in value.values())
    return value


def _rows(engine: OfflineEngine, expr: ir.Table) -> list[dict[str, Any]]:
    return engine.to_arrow(expr).to_pylist()


def _violation(
    engine: OfflineEngine, name: str, rule: Rule, table: ir.Table, total: int
) -> RuleViolation:
    """Count the rows that break ``rule`` and fetch up to MAX_SAMPLES of their values."""
    cols = list(rule.columns)
    if rule.kind == "dtype":
        col = table[cols[0]]
        sample = table.filter(col.notnull()).select(cols).limit(MAX_SAMPLES)
        values = dict.fromkeys(_show(r[cols[0]]) for r in _rows(engine, sample))
        return RuleViolation(name, rule, total, total, tuple(values))
    if rule.kind in ("unique", "unique_key"):
        dupes = _duplicates(rule, table)
        failing = _rows(engine, dupes.aggregate(n=dupes["__n"].sum()))[0]["n"] or 0
        top = dupes.order_by([ibis.desc("__n"), *cols]).limit(MAX_SAMPLES).select(cols)
        rows = _rows(engine, top)
        samples = tuple(_show(r[cols[0]]) if len(cols) == 1 else _show(r) for r in rows)
        return RuleViolation(name, rule, int(failing), total, samples)
    fails = _fails(rule, table)
    failing = _rows(engine, table.aggregate(n=table.count(where=fails)))[0]["n"]
    bad = table.filter(fails)
    col = bad[cols[0]]
    if rule.kind == "isin":  # the most frequent bad values first
        sample = bad.group_by(cols).aggregate(__n=ibis._.count())
        sample = sample.order_by([ibis.desc("__n"), cols[0]]).select(cols)
    elif rule.kind == "nullable":  # null and/or NaN
        sample = bad.select(cols).distinct()
    else:  # the worst offenders first: lowest under min, highest over max
        order = col if rule.kind == "min" else col.desc()
        sample = bad.select(cols).distinct().order_by(order)
    values = [_show(r[cols[0]]) for r in _rows(engine, sample.limit(MAX_SAMPLES))]
    if rule.kind == "nullable":
        values.sort(key=lambda v: v is not None)  # null before NaN, whatever the engine's order
    return RuleViolation(name, rule, int(failing), total, tuple(values))


def check_source_data(
    engine: OfflineEngine, source: Source, resolve_path: Callable[[str], str]
) -> list[RuleViolation]:
    """The rules a source's data breaks (empty when it keeps them all).

    Raises
    ------
    DefinitionError
        A rule names a column the data lacks.
    EngineError
        A check could not run on the engine (the data was not judged).
    """
    rules = declared_rules(source)
    if not rules:
        return []
    name = source.name or source.path
    table = read_source(engine, source, resolve_path(source.path))
    schema = table.schema()
    for rule in rules:
        for c in rule.columns:
            if c not in schema:
                raise DefinitionError(
                    f"Source {name!r} declares rule {rule.label} for column {c!r}, which its "
                    f"data lacks. Existing columns: {', '.join(schema.names)}.",
                    source=source.path,
                )
    failed: list[Rule] = []
    wrong_type = set()
    for rule in rules:
        if rule.kind == "dtype" and not _DTYPE_FAMILIES[rule.value](schema[rule.columns[0]]):
            failed.append(rule)
            wrong_type.add(rule.columns[0])
    # A bound or an allowed set on a column of the wrong type could fail to compile or
    # mislead; the type is what to report. nullable and unique apply to any type.
    data_rules = [
        r
        for r in rules
        if r.kind != "dtype"
        and not (r.kind in ("min", "max", "isin") and r.columns[0] in wrong_type)
    ]
    failed.extend(_run_pandera(source, data_rules, table))
    failed.sort(key=rules.index)  # report in declaration order
    if not failed:
        return []
    total = int(_rows(engine, table.aggregate(n=table.count()))[0]["n"])
    return [_violation(engine, name, rule, table, total) for rule in failed]


def _run_pandera(source: Source, rules: Sequence[Rule], table: ir.Table) -> list[Rule]:
    """Run the rules through pandera's Ibis backend; return those that fail."""
    if not rules:
        return []
    schema = pandera_schema(source, rules)
    # Fail closed: PANDERA_VALIDATION_ENABLED / _DEPTH in the environment must not turn
    # these checks off or down to schema-only.
    with config_context(
        validation_enabled=True,
        validation_depth=ValidationDepth.SCHEMA_AND_DATA,
        use_narwhals_backend=False,
    ):
        try:
            schema.validate(table, lazy=True)
        except pandera_errors.SchemaErrors as exc:
            return _failed_rules(source, rules, exc.schema_errors, exc)
        except pandera_errors.SchemaError as exc:  # pragma: no cover - lazy=True collects
            return _failed_rules(source, rules, [exc], exc)
    return []


def _failed_rules(
    source: Source, rules: Sequence[Rule], errors: Iterable[Any], cause: Exception
) -> list[Rule]:
    """Map pandera's errors back to rules; a check that could not run is an EngineError."""
    failed = []
    for err in errors:
        if err.reason_code == pandera_errors.SchemaErrorReason.CHECK_ERROR:
            raise EngineError(
                f"Source {source.name or source.path!r}: the data check {err.check} could not "
                f"run on the engine: {err}",
                source=source.path,
            ) from cause
        check_name = getattr(err.check, "name", None) or ""
        index, _, _ = check_name.partition(":")
        if not index.isdigit():
            raise EngineError(
                f"Source {source.name or source.path!r}: pandera reported an unexpected "
                f"failure ({err.reason_code}): {err}",
                source=source.path,
            ) from cause
        failed.append(rules[int(index)])
    return failed


def validate_source_data(
    engine: OfflineEngine, sources: Iterable[Source], resolve_path: Callable[[str], str]
) -> None:
    """Check every source's declared rules on its data; raise if any is broken.

    Sources are checked once each (equal definitions count once); sources that declare no
    rule cost nothing.

    Raises
    ------
    DataValidationError
        Naming, per failing rule, the source, the column, the rule, the number of failing
        rows and up to five sample bad values.
    """
    seen: set[str] = set()
    lines: list[str] = []
    violations: list[RuleViolation] = []
    for source in sources:
        key = json.dumps(source.to_spec(), sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        found = check_source_data(engine, source, resolve_path)
        if found:
            label = f"{source.name!r} ({source.path!r})" if source.name else repr(source.path)
            lines.append(f"Source {label} breaks its declared column rules:")
            lines.extend(f"  - {v.describe()}" for v in found[:MAX_LISTED])
            if len(found) > MAX_LISTED:
                lines.append(f"  - … and {len(found) - MAX_LISTED} more rules")
            violations.extend(found)
    if violations:
        first = violations[0]
        raise DataValidationError(
            "\n".join(lines)
            + "\nFix the data, or change the Column rules declared on the source; nothing was "
            "written. Pass validate_data=False to skip these checks.",
            source=first.source,
            column=", ".join(first.rule.columns),
            rule=first.rule.label,
            violations=tuple(violations),
        )


__all__ = [
    "MAX_SAMPLES",
    "Rule",
    "RuleViolation",
    "check_source_data",
    "declared_rules",
    "pandera_schema",
    "read_source",
    "validate_source_data",
]
