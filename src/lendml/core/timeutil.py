"""Durations and UTC time handling shared by every layer.

Rule: time is explicit and UTC. Naive timestamps mean UTC; a column mixing time zones
is refused with :class:`~lendml.errors.TimeZoneError`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa

from lendml.errors import ConfigError, TimeZoneError

_DURATION = re.compile(r"^\s*(\d+)\s*(us|ms|s|m|min|h|d|w)\s*$")
_UNIT_US = {
    "us": 1,
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "min": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 7 * 86_400_000_000,
}


def parse_duration(value: str | timedelta | int, *, what: str = "duration") -> timedelta:
    """Parse ``"30d"``, ``"12h"``, ``"90min"`` (or a timedelta) into a timedelta.

    Examples
    --------
    >>> parse_duration("7d")
    datetime.timedelta(days=7)
    """
    if isinstance(value, timedelta):
        td = value
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        td = timedelta(microseconds=int(m.group(1)) * _UNIT_US[m.group(2)])
    else:
        raise ConfigError(
            f"Invalid {what} {value!r}: expected a number and a unit such as '30d', '12h', "
            f"'15min', '90s' (units: {', '.join(sorted(_UNIT_US))})."
        )
    if td < timedelta(0):
        raise ConfigError(f"Invalid {what} {value!r}: it must not be negative.")
    return td


def duration_us(td: timedelta) -> int:
    """Whole microseconds in a timedelta."""
    return (td.days * 86_400 + td.seconds) * 1_000_000 + td.microseconds


def format_duration(td: timedelta) -> str:
    """The shortest ``parse_duration`` spelling of a timedelta (``7d``, ``90min``)."""
    us = duration_us(td)
    for unit in ("w", "d", "h", "min", "s", "ms"):
        if us and us % _UNIT_US[unit] == 0:
            return f"{us // _UNIT_US[unit]}{unit}"
    return f"{us}us"


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def to_utc_timestamp(value: str | datetime | pd.Timestamp, *, what: str = "time") -> pd.Timestamp:
    """One point in time as a UTC pandas Timestamp (naive means UTC)."""
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"Invalid {what} {value!r}: expected an ISO-8601 time such as '2024-01-31' or "
            "'2024-01-31T12:00:00Z'."
        ) from exc
    if ts is pd.NaT:
        raise ConfigError(f"Invalid {what} {value!r}: it is empty (NaT).")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def utc_series(series: pd.Series, *, column: str) -> pd.Series:
    """A pandas Series as ``datetime64[us, UTC]``; naive means UTC; mixed zones refused."""
    s = series
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        out = s.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(s.dtype):
        out = s.dt.tz_localize("UTC")
    else:
        zones = {
            str(v.tzinfo) if getattr(v, "tzinfo", None) is not None else None
            for v in s.dropna()
            if isinstance(v, datetime)
        }
        if len(zones) > 1:
            raise TimeZoneError(
                f"Column {column!r} mixes time zones {sorted(map(str, zones))}: convert it to "
                "one zone (UTC preferred) before giving it to lendml.",
                column=column,
            )
        try:
            out = pd.to_datetime(s, utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            raise TimeZoneError(
                f"Column {column!r} cannot be read as timestamps: {exc}. Give datetimes or "
                "ISO-8601 strings.",
                column=column,
            ) from exc
    return out.astype("datetime64[us, UTC]")


def utc_arrow_column(col: pa.ChunkedArray | pa.Array, *, column: str) -> pa.ChunkedArray:
    """An Arrow timestamp column as ``timestamp[us, UTC]`` (naive means UTC)."""
    if not pa.types.is_timestamp(col.type):
        raise TimeZoneError(
            f"Column {column!r} has type {col.type}, expected a timestamp.", column=column
        )
    target = pa.timestamp("us", tz="UTC")
    if col.type.tz is None:
        col = col.cast(pa.timestamp(col.type.unit, tz="UTC"))
    return col.cast(target, safe=False)
