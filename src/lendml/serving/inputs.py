"""Checking what a scoring request sends: entity keys and request-time fields.

Every problem raises :class:`~lendml.errors.DataValidationError` whose ``field`` context
names the JSON path of the bad value (``entity.borrower_id``, ``items[3].fields.amount``)
and whose message says what was wrong and what is expected. Values themselves are never
put into messages: they may be personal data, and messages reach application logs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from lendml.core.timeutil import to_utc_timestamp
from lendml.errors import ConfigError, DataValidationError, TimeZoneError

FieldKind = Literal["number", "string", "bool", "timestamp", "category"]
#: numbers beyond this magnitude are refused: no credit input is this large, and sums or
#: products of such values would overflow to infinity in derived features
MAX_ABS_NUMBER = 1e15
MAX_KEY_INT = 2**63 - 1
MAX_STRING = 1000
_SHOW = 8


@dataclass(frozen=True)
class ScoreInput:
    """One applicant to score: the entity keys and the request-time fields."""

    entity: dict[str, Any]
    fields: dict[str, Any]


def problem(where: str, message: str) -> DataValidationError:
    """A 422 error about the value at JSON path ``where``."""
    return DataValidationError(f"{where}: {message}", field=where)


def _listing(names: Any) -> str:
    names = sorted(names)
    shown = ", ".join(names[:_SHOW])
    return (shown + (" …" if len(names) > _SHOW else "")) or "(none)"


def check_entity(
    entity: Mapping[str, Any], *, required: tuple[str, ...], where: str
) -> dict[str, Any]:
    """The entity keys, checked: every ``required`` key present, no other key, each an
    integer or a non-empty string. With no ``required`` keys (a model scored from request
    fields only) any keys are accepted, for the prediction log and canary routing."""
    if required:
        missing = [k for k in required if k not in entity]
        if missing:
            raise problem(
                f"{where}.{missing[0]}",
                f"entity key is required (this model's entity keys: {_listing(required)}).",
            )
        extra = sorted(set(entity) - set(required))
        if extra:
            raise problem(
                f"{where}.{extra[0]}",
                f"is not an entity key of this model; its keys: {_listing(required)}.",
            )
    out: dict[str, Any] = {}
    for key, value in entity.items():
        path = f"{where}.{key}"
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise problem(
                path, f"an entity key must be an integer or a string, not {_kind(value)}."
            )
        if isinstance(value, int) and abs(value) > MAX_KEY_INT:
            raise problem(path, "an integer entity key must fit in 64 bits.")
        if isinstance(value, str) and not 0 < len(value) <= 256:
            raise problem(path, "a string entity key must have 1 to 256 characters.")
        out[key] = value
    return out


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def check_number(value: Any, where: str) -> float | int | None:
    """A finite number within ±1e15, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise problem(where, f"must be a number, not {_kind(value)}.")
    if isinstance(value, float) and not math.isfinite(value):
        raise problem(where, "must be a finite number (NaN and infinity are not values).")
    if abs(value) > MAX_ABS_NUMBER:
        raise problem(where, f"is too large: numbers must lie within ±{MAX_ABS_NUMBER:g}.")
    return value


def check_fields(
    fields: Mapping[str, Any], *, expected: Mapping[str, FieldKind], where: str
) -> dict[str, Any]:
    """The request-time fields, checked against their declared kinds.

    Every expected field must be sent (``null`` for a missing value); an unexpected field
    is refused so a misspelt name cannot silently score as missing.
    """
    unknown = sorted(set(fields) - set(expected))
    if unknown:
        raise problem(
            f"{where}.{unknown[0]}",
            f"is not a request field of this model; its fields: {_listing(expected)}.",
        )
    absent = [name for name in expected if name not in fields]
    if absent:
        raise problem(
            f"{where}.{absent[0]}",
            "request field is required (send null for a missing value).",
        )
    out: dict[str, Any] = {}
    for name, kind in expected.items():
        value, path = fields[name], f"{where}.{name}"
        if value is None:
            out[name] = None
        elif kind == "number":
            out[name] = check_number(value, path)
        elif kind == "bool":
            if not isinstance(value, bool):
                raise problem(path, f"must be true or false, not {_kind(value)}.")
            out[name] = value
        elif kind == "string":
            if not isinstance(value, str):
                raise problem(path, f"must be a string, not {_kind(value)}.")
            if len(value) > MAX_STRING:
                raise problem(path, f"is longer than {MAX_STRING} characters.")
            out[name] = value
        elif kind == "category":
            if isinstance(value, int | float) and not isinstance(value, bool):
                check_number(value, path)
            elif not isinstance(value, str | bool):
                raise problem(path, f"must be a category (string or number), not {_kind(value)}.")
            if isinstance(value, str) and len(value) > MAX_STRING:
                raise problem(path, f"is longer than {MAX_STRING} characters.")
            out[name] = value
        else:  # timestamp
            out[name] = _timestamp(value, path)
    return out


def _timestamp(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise problem(where, f"must be an ISO-8601 timestamp string, not {_kind(value)}.")
    try:
        return to_utc_timestamp(value, what=where).to_pydatetime()
    except (ConfigError, TimeZoneError, ValueError, OverflowError) as exc:
        raise problem(where, "is not an ISO-8601 timestamp (e.g. 2026-11-22T08:00:00Z).") from exc


__all__ = ["MAX_ABS_NUMBER", "ScoreInput", "check_entity", "check_fields", "check_number"]
