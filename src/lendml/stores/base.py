"""The online-store protocol and the encoding every store shares.

A store keeps, per feature view and entity key, the latest feature values and the as-of
time they were computed for. Writes of one batch are atomic, and a value never replaces
a newer one (an old backfill cannot overwrite fresh values); a write with the *same*
as-of time replaces the stored values (the last writer of a tie wins).

Keys and values are stored as JSON text, the same way in every store, so a store can be
swapped without changing what reads return:

* an entity key is JSON, so ``7``, ``7.0``, ``"7"`` and ``[7]`` are four different keys;
* feature values are one JSON object; floats keep their exact value (``repr`` round
  trip, including ``-0.0`` and ``inf``), NaN is stored as null (a missing value reads back
  as ``None`` whether it was written as NaN or None), numpy scalars become Python scalars
  and timestamps become ISO-8601 text.
"""

from __future__ import annotations

import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from lendml.errors import ConfigError, DataValidationError

# repr() of a float never has more than 17 digits in a row; an int of 19+ digits may not
# fit the 64 bits orjson reads exactly.
_LONG_DIGITS = re.compile(r"\d{19}")
_LONG_DIGITS_B = re.compile(rb"\d{19}")


@dataclass(frozen=True)
class OnlineRecord:
    """One entity's features of one view, as of ``as_of_us`` (µs since epoch, UTC)."""

    key: Any
    values: dict[str, Any]
    as_of_us: int


class OnlineStore(ABC):
    """Latest feature values per (view, entity key)."""

    @abstractmethod
    def write_batch(self, view: str, records: Sequence[OnlineRecord]) -> int:
        """Upsert records atomically (all or none); return how many were newer and written."""

    @abstractmethod
    def read_many(self, view: str, keys: Sequence[Any]) -> list[OnlineRecord | None]:
        """Records for ``keys`` in order (None where a key has none)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


def clean_value(value: Any) -> Any:
    """A JSON-ready scalar: NaN -> None, numpy scalar -> Python, timestamp -> ISO text.

    Examples
    --------
    >>> clean_value(float("nan")) is None
    True
    >>> import numpy as np
    >>> clean_value(np.int64(7)), clean_value(np.float32(0.5))
    (7, 0.5)
    """
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return clean_value(value.item())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def encode_key(key: Any) -> str:
    """An entity key as JSON text, so 7 and "7" stay distinct.

    Examples
    --------
    >>> encode_key(7), encode_key("7"), encode_key(("a:b", 1))
    ('7', '"7"', '["a:b", 1]')
    """
    # Fast paths (a batch read encodes every key): exactly what json.dumps writes.
    if type(key) is int:
        return str(key)
    plain = type(key) is str and key.isascii() and key.isprintable()
    if plain and '"' not in key and "\\" not in key:
        return f'"{key}"'
    try:
        return json.dumps(clean_value(key))
    except (TypeError, ValueError) as exc:
        raise DataValidationError(
            f"Entity key {key!r} of type {type(key).__name__} cannot be stored in the online "
            f"store ({exc}); use an int, a str, or a list of these.",
        ) from exc


def encode_values(
    values: Mapping[str, Any], *, view: str = "", key: Any = None, compact: bool = False
) -> str:
    """Feature values as one JSON object (see the module docstring for the rules).

    ``compact`` drops the spaces after separators; both forms decode to the same values.
    ``view`` and ``key`` only name the record in the error raised for an unencodable value.

    Examples
    --------
    >>> encode_values({"n": 3, "avg": -0.0, "miss": float("nan")})
    '{"n": 3, "avg": -0.0, "miss": null}'
    >>> encode_values({"n": 3, "at": 1e300}, compact=True)
    '{"n":3,"at":1e+300}'
    """
    clean = {k: clean_value(v) for k, v in values.items()}
    try:
        return json.dumps(clean, separators=(",", ":") if compact else None)
    except (TypeError, ValueError) as exc:
        bad = next(
            (k for k, v in clean.items() if not _json_ok(v)),
            "?",
        )
        raise DataValidationError(
            f"Feature {bad!r} of view {view!r} for entity key {key!r} has a value the online "
            f"store cannot encode ({exc}): use int, float, str, bool, None, a timestamp, or "
            "lists and dicts of these.",
            feature_view=view or None,
        ) from exc


def decode_values(text: str | bytes) -> dict[str, Any]:
    """The feature values of :func:`encode_values` text.

    orjson decodes about four times faster than ``json``, but it refuses the ``Infinity``
    tokens ``json`` writes for infinite floats and reads integers beyond 64 bits as floats;
    payloads with either (19+ digits in a row) take ``json``'s exact path.

    Examples
    --------
    >>> decode_values('{"n":3,"at":Infinity}')
    {'n': 3, 'at': inf}
    """
    long_digits = _LONG_DIGITS_B if isinstance(text, bytes) else _LONG_DIGITS
    if long_digits.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def _json_ok(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def create_online_store(kind: str, **options: Any) -> OnlineStore:
    """Create a store by type name: ``sqlite`` (default) or ``redis``.

    Parameters
    ----------
    kind
        ``"sqlite"`` (options: ``path``) or ``"redis"`` (options: ``url``, ``namespace``).
    **options
        Passed to the store's constructor.

    Examples
    --------
    >>> import tempfile, os
    >>> store = create_online_store("sqlite", path=os.path.join(tempfile.mkdtemp(), "o.db"))
    >>> store.write_batch("v", [OnlineRecord(7, {"x": 1.5}, 10)])
    1
    >>> store.read_many("v", [7, 8])
    [OnlineRecord(key=7, values={'x': 1.5}, as_of_us=10), None]
    >>> store.close()
    """
    if kind == "sqlite":
        from lendml.stores.sqlite import SQLiteOnlineStore

        return SQLiteOnlineStore(**options)
    if kind == "redis":
        from lendml.stores.redis import RedisOnlineStore

        return RedisOnlineStore(**options)
    raise ConfigError(
        f"Online store type {kind!r} is not known: set online_store.type in lendml.yaml to "
        "'sqlite' or 'redis'."
    )
