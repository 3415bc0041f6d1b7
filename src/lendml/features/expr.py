"""A small, engine-neutral expression language for filters and derived features.

``where="TX_AMOUNT > 100 AND channel IN ('web', 'app')"`` and
``Derived("risk", "coalesce(nb_fraud / nb_tx, 0)")`` are parsed here (the SQL grammar is
sqlglot's), checked against a whitelist of node kinds, and turned into lendml's own tiny
immutable tree. That tree is compiled two ways with one semantics:

* :func:`to_ibis` — offline, inside the engine plan (DuckDB, Spark);
* :func:`evaluate` — online, on one row of Python values, in microseconds.

The language is never passed through as SQL, so a definition cannot run arbitrary SQL.
Semantics (both compilers): SQL three-valued logic; any arithmetic or comparison with a
null is null; division by zero, ``ln``/``sqrt`` outside their domain give null;
``hour(t)`` is 0–23 in UTC and ``weekday(t)`` is 0 (Monday) … 6 (Sunday).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlglot
from sqlglot import exp

from lendml.errors import DefinitionError

# Kinds used for type checking: "num", "str", "bool", "time", "null".
Kind = str


@dataclass(frozen=True)
class Col:
    name: str


@dataclass(frozen=True)
class Lit:
    value: Any


@dataclass(frozen=True)
class Unary:
    op: str  # "neg" | "not" | "isnull" | "notnull"
    arg: Node


@dataclass(frozen=True)
class Bin:
    op: str  # + - * / = != < <= > >= and or
    left: Node
    right: Node


@dataclass(frozen=True)
class InList:
    arg: Node
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple[Node, ...]


Node = Col | Lit | Unary | Bin | InList | Call

_BINARY = {
    exp.Add: "+",
    exp.Sub: "-",
    exp.Mul: "*",
    exp.Div: "/",
    exp.EQ: "=",
    exp.NEQ: "!=",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.GT: ">",
    exp.GTE: ">=",
    exp.And: "and",
    exp.Or: "or",
}
_FUNCTIONS = {
    # name: (min args, max args)
    "coalesce": (1, 16),
    "abs": (1, 1),
    "ln": (1, 1),
    "sqrt": (1, 1),
    "least": (2, 16),
    "greatest": (2, 16),
    "hour": (1, 1),
    "weekday": (1, 1),
}
_NAMED_FUNCS = {exp.Abs: "abs", exp.Ln: "ln", exp.Log: "ln", exp.Sqrt: "sqrt", exp.Hour: "hour"}
_ARITH = {"+", "-", "*", "/"}
_COMPARE = {"=", "!=", "<", "<=", ">", ">="}


@dataclass(frozen=True)
class Expression:
    """A parsed expression: its source text and tree."""

    text: str
    root: Node

    @property
    def columns(self) -> frozenset[str]:
        """Every column name the expression reads."""
        return frozenset(_columns(self.root))

    def kind(self, kinds: Mapping[str, Kind], *, where: str) -> Kind:
        """Type-check against column kinds; return the result kind."""
        return _kind(self.root, kinds, where=where, text=self.text)


def parse(text: str, *, where: str) -> Expression:
    """Parse ``text``; ``where`` names the definition for error messages."""
    if not isinstance(text, str) or not text.strip():
        raise DefinitionError(f"{where}: expression {text!r} is empty; write e.g. 'amount > 100'.")
    try:
        tree = sqlglot.parse_one(text)
    except sqlglot.errors.ParseError as exc:
        raise DefinitionError(
            f"{where}: cannot parse expression {text!r}: {str(exc).splitlines()[0]}"
        ) from exc
    return Expression(text, _convert(tree, where=where, text=text))


def _fail(where: str, text: str, what: str) -> DefinitionError:
    return DefinitionError(
        f"{where}: {what} in expression {text!r}. Allowed: column names, numbers, 'strings', "
        "TRUE/FALSE/NULL, + - * /, = != < <= > >=, AND OR NOT, IN (...), IS [NOT] NULL, "
        f"and the functions {', '.join(sorted(_FUNCTIONS))}."
    )


def _convert(node: exp.Expression, *, where: str, text: str) -> Node:
    conv = lambda n: _convert(n, where=where, text=text)  # noqa: E731
    if isinstance(node, exp.Paren):
        return conv(node.this)
    if isinstance(node, exp.Column):
        if node.table:
            raise _fail(where, text, f"qualified column {node.sql()!r}")
        return Col(node.name)
    if isinstance(node, exp.Boolean):
        return Lit(bool(node.this))
    if isinstance(node, exp.Null):
        return Lit(None)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return Lit(str(node.this))
        raw = str(node.this)
        return Lit(float(raw) if any(c in raw for c in ".eE") else int(raw))
    if isinstance(node, exp.Neg):
        inner = conv(node.this)
        if isinstance(inner, Lit) and isinstance(inner.value, int | float):
            return Lit(-inner.value)
        return Unary("neg", inner)
    if isinstance(node, exp.Not):
        inner = conv(node.this)
        if isinstance(inner, Unary) and inner.op == "isnull":
            return Unary("notnull", inner.arg)
        return Unary("not", inner)
    if isinstance(node, exp.Is):
        if not isinstance(node.expression, exp.Null):
            raise _fail(where, text, "IS may only be followed by [NOT] NULL")
        return Unary("isnull", conv(node.this))
    if isinstance(node, exp.In):
        if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
            raise _fail(where, text, "IN takes a list of literals")
        values = []
        for item in node.expressions:
            lit = conv(item)
            if not isinstance(lit, Lit) or lit.value is None:
                raise _fail(where, text, f"IN list item {item.sql()!r} is not a literal")
            values.append(lit.value)
        return InList(conv(node.this), tuple(values))
    for klass, op in _BINARY.items():
        if type(node) is klass:
            return Bin(op, conv(node.this), conv(node.expression))
    if isinstance(node, exp.Coalesce):
        return Call("coalesce", (conv(node.this), *(conv(e) for e in node.expressions)))
    if type(node) in (exp.Least, exp.Greatest):
        name = "least" if isinstance(node, exp.Least) else "greatest"
        return _call(name, [node.this, *node.expressions], conv, where, text)
    if type(node) in _NAMED_FUNCS:
        if isinstance(node, exp.Log) and node.expression is not None:
            raise _fail(where, text, "log with a base")
        return _call(_NAMED_FUNCS[type(node)], [node.this], conv, where, text)
    if isinstance(node, exp.Anonymous):
        name = str(node.this).lower()
        if name not in _FUNCTIONS:
            raise _fail(where, text, f"unknown function {name!r}")
        return _call(name, list(node.expressions), conv, where, text)
    raise _fail(where, text, f"unsupported syntax {node.sql()!r}")


def _call(name: str, args: list, conv: Callable, where: str, text: str) -> Call:
    lo, hi = _FUNCTIONS[name]
    if not lo <= len(args) <= hi:
        raise _fail(where, text, f"{name}() takes {lo}..{hi} arguments, got {len(args)}")
    return Call(name, tuple(conv(a) for a in args))


def _columns(node: Node) -> list[str]:
    match node:
        case Col(name):
            return [name]
        case Lit():
            return []
        case Unary(_, arg):
            return _columns(arg)
        case Bin(_, left, right):
            return _columns(left) + _columns(right)
        case InList(arg, _):
            return _columns(arg)
        case Call(_, args):
            return [c for a in args for c in _columns(a)]
    raise TypeError(node)  # pragma: no cover - Node is closed


def _lit_kind(value: Any) -> Kind:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "num"
    return "str"


def _kind(node: Node, kinds: Mapping[str, Kind], *, where: str, text: str) -> Kind:
    k = lambda n: _kind(n, kinds, where=where, text=text)  # noqa: E731

    def need(kind: Kind, got: Kind, what: str) -> None:
        if got not in (kind, "null"):
            raise DefinitionError(
                f"{where}: type mismatch in {text!r}: {what} needs a {_KIND_NAME[kind]} "
                f"value, got a {_KIND_NAME[got]}."
            )

    match node:
        case Col(name):
            if name not in kinds:
                raise DefinitionError(
                    f"{where}: column {name!r} in expression {text!r} is not available. "
                    f"Available: {', '.join(sorted(kinds)) or '(none)'}."
                )
            return kinds[name]
        case Lit(value):
            return _lit_kind(value)
        case Unary("neg", arg):
            need("num", k(arg), "'-'")
            return "num"
        case Unary("not", arg):
            need("bool", k(arg), "NOT")
            return "bool"
        case Unary(_, arg):
            k(arg)
            return "bool"
        case Bin(op, left, right) if op in _ARITH:
            need("num", k(left), f"'{op}'")
            need("num", k(right), f"'{op}'")
            return "num"
        case Bin(op, left, right) if op in ("and", "or"):
            need("bool", k(left), op.upper())
            need("bool", k(right), op.upper())
            return "bool"
        case Bin(op, left, right):
            lk, rk = k(left), k(right)
            if "null" not in (lk, rk) and lk != rk:
                raise DefinitionError(
                    f"{where}: type mismatch in {text!r}: '{op}' compares a {_KIND_NAME[lk]} "
                    f"with a {_KIND_NAME[rk]}."
                )
            return "bool"
        case InList(arg, values):
            ak = k(arg)
            for v in values:
                if ak != "null" and _lit_kind(v) != ak:
                    raise DefinitionError(
                        f"{where}: type mismatch in {text!r}: IN list value {v!r} is not a "
                        f"{_KIND_NAME[ak]} like the value it is compared with."
                    )
            return "bool"
        case Call(fn, args):
            arg_kinds = [k(a) for a in args]
            if fn in ("hour", "weekday"):
                need("time", arg_kinds[0], f"{fn}()")
                return "num"
            if fn == "coalesce":
                known = {a for a in arg_kinds if a != "null"}
                if len(known) > 1:
                    raise DefinitionError(
                        f"{where}: type mismatch in {text!r}: coalesce() mixes "
                        f"{', '.join(_KIND_NAME[x] for x in sorted(known))} values."
                    )
                return known.pop() if known else "null"
            for a in arg_kinds:
                need("num", a, f"{fn}()")
            return "num"
    raise TypeError(node)  # pragma: no cover


_KIND_NAME = {
    "num": "number",
    "str": "string",
    "bool": "boolean",
    "time": "timestamp",
    "null": "null",
}


# --------------------------------------------------------------------------- offline (Ibis)


def to_ibis(e: Expression, resolve: Callable[[str], Any]) -> Any:
    """Compile to an Ibis value; ``resolve(name)`` returns the Ibis column for a name."""
    import ibis

    def go(node: Node) -> Any:
        match node:
            case Col(name):
                return resolve(name)
            case Lit(None):
                return ibis.null()
            case Lit(value):
                return ibis.literal(value)
            case Unary("neg", arg):
                return -go(arg)
            case Unary("not", arg):
                return ~go(arg)
            case Unary("isnull", arg):
                return go(arg).isnull()
            case Unary("notnull", arg):
                return go(arg).notnull()
            case Bin("/", left, right):
                den = go(right)
                # x / 0 is null (not an error under Spark's ANSI mode, not inf)
                return ibis.ifelse(den == 0, ibis.null(), go(left) / den)
            case Bin(op, left, right):
                a, b = go(left), go(right)
                return {
                    "+": lambda: a + b,
                    "-": lambda: a - b,
                    "*": lambda: a * b,
                    "=": lambda: a == b,
                    "!=": lambda: a != b,
                    "<": lambda: a < b,
                    "<=": lambda: a <= b,
                    ">": lambda: a > b,
                    ">=": lambda: a >= b,
                    "and": lambda: a & b,
                    "or": lambda: a | b,
                }[op]()
            case InList(arg, values):
                return go(arg).isin(list(values))
            case Call("coalesce", args):
                return ibis.coalesce(*(go(a) for a in args))
            case Call("abs", (arg,)):
                return go(arg).abs()
            case Call("ln", (arg,)):
                x = go(arg)
                return ibis.ifelse(x > 0, x.cast("float64").ln(), ibis.null())
            case Call("sqrt", (arg,)):
                x = go(arg)
                return ibis.ifelse(x >= 0, x.cast("float64").sqrt(), ibis.null())
            case Call("least", args):
                vals = [go(a) for a in args]
                return _null_if_any_null(vals, ibis.least(*vals))
            case Call("greatest", args):
                vals = [go(a) for a in args]
                return _null_if_any_null(vals, ibis.greatest(*vals))
            case Call("hour", (arg,)):
                return go(arg).hour()
            case Call("weekday", (arg,)):
                return go(arg).day_of_week.index()
        raise TypeError(node)  # pragma: no cover

    return go(e.root)


def _null_if_any_null(vals: list, result: Any) -> Any:
    # Engines disagree on least/greatest with nulls (DuckDB skips them, SQL standard and
    # Spark differ by version); lendml's rule is "null in, null out".
    import ibis

    cond = vals[0].isnull()
    for v in vals[1:]:
        cond = cond | v.isnull()
    return ibis.ifelse(cond, ibis.null(), result)


# --------------------------------------------------------------------------- online (Python)


def _is_null(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def evaluate(e: Expression, row: Mapping[str, Any]) -> Any:
    """Evaluate on one row of Python values with the same semantics as :func:`to_ibis`."""

    def go(node: Node) -> Any:
        match node:
            case Col(name):
                v = row[name]
                return None if _is_null(v) else v
            case Lit(value):
                return value
            case Unary("neg", arg):
                v = go(arg)
                return None if v is None else -v
            case Unary("not", arg):
                v = go(arg)
                return None if v is None else not v
            case Unary("isnull", arg):
                return go(arg) is None
            case Unary("notnull", arg):
                return go(arg) is not None
            case Bin("and", left, right):
                a, b = go(left), go(right)
                if a is False or b is False:
                    return False
                return None if a is None or b is None else True
            case Bin("or", left, right):
                a, b = go(left), go(right)
                if a is True or b is True:
                    return True
                return None if a is None or b is None else False
            case Bin(op, left, right):
                a, b = go(left), go(right)
                if a is None or b is None:
                    return None
                if op == "/":
                    return None if b == 0 else a / b
                return _BINOPS[op](a, b)
            case InList(arg, values):
                v = go(arg)
                return None if v is None else v in values
            case Call("coalesce", args):
                for a in args:
                    v = go(a)
                    if v is not None:
                        return v
                return None
            case Call(fn, args):
                vals = [go(a) for a in args]
                if any(v is None for v in vals):
                    return None
                return _FUNCS[fn](*vals)
        raise TypeError(node)  # pragma: no cover

    return go(e.root)


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _utc(t: datetime) -> datetime:
    from datetime import UTC

    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


_FUNCS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "ln": lambda x: math.log(x) if x > 0 else None,
    "sqrt": lambda x: math.sqrt(x) if x >= 0 else None,
    "least": min,
    "greatest": max,
    "hour": lambda t: _utc(t).hour,
    "weekday": lambda t: _utc(t).weekday(),
}
