"""The prediction log's row format and the protocol every log store implements.

A record travels as one row of an Arrow table with :data:`SCHEMA`: scalars in columns of
their own, and the entity keys, the feature vector and the reasons as JSON text (their
keys differ between models, and JSON is what PostgreSQL's ``jsonb`` reads). Stores write
and read such tables; :func:`to_frame` turns one into the DataFrame users see.

``policy_decision`` and ``explore`` (the approval holdout) came with format 2; data
written before them reads through :func:`conform`, as what they meant then: the decision
of the cutoffs, not explored.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lendml.errors import ConfigError
from lendml.serving.records import PredictionRecord

FORMAT_VERSION = "2"

SCHEMA = pa.schema(
    [
        ("record_key", pa.string()),
        ("request_id", pa.string()),
        ("time", pa.timestamp("us", tz="UTC")),
        ("model", pa.string()),
        ("version", pa.int64()),
        ("role", pa.string()),
        ("decision", pa.string()),
        ("score", pa.float64()),
        ("probability", pa.float64()),
        ("reasons", pa.string()),
        ("entity", pa.string()),
        ("features", pa.string()),
        ("policy_decision", pa.string()),  # format 2; null in older data: = decision
        ("explore", pa.bool_()),  # format 2; null in older data: False
    ],
    metadata={"lendml.prediction_log": FORMAT_VERSION},
)
COLUMNS = tuple(SCHEMA.names)
# Columns that data written in format 1 lacks; read as nulls.
ADDED_COLUMNS = ("policy_decision", "explore")
JSON_COLUMNS = ("reasons", "entity", "features")
# The columns of read_prediction_log's DataFrame before the flattened entity/features.
FRAME_COLUMNS = (
    "request_id",
    "time",
    "model",
    "version",
    "role",
    "decision",
    "score",
    "probability",
    "reasons",
    "policy_decision",
    "explore",
)

Row = tuple[Any, ...]

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_batch_counter = itertools.count()
# Types Arrow's JSON reader gives that mean the same as the Python path's columns.
_FLAT_TYPES = (pa.int64(), pa.float64(), pa.string(), pa.bool_(), pa.null())
# A JSON integer of 19 digits or more (a value, not inside a fraction or an exponent).
_BIG_INTEGER = r"[:,\[]\s*-?[0-9]{19,}\s*[,}\]]"
_BIG_INTEGER_RE = re.compile(_BIG_INTEGER)


# ---------------------------------------------------------------------------- encoding


def _scrub(value: Any) -> Any:
    """``value`` with NUL characters replaced (PostgreSQL text and jsonb refuse them) and
    non-finite floats as ``None`` (JSON has no NaN), walking dicts and lists."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {_scrub(str(k)): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """JSON text of ``value``: NaN and infinities become ``null``, NUL characters U+FFFD,
    numpy scalars their Python values, anything else its ``str``. Never raises."""
    options = _OPTIONS | (orjson.OPT_SORT_KEYS if sort_keys else 0)
    try:
        out = orjson.dumps(value, default=str, option=options)
    except TypeError:  # integers beyond 64 bits: the standard library keeps them exact
        return json.dumps(
            _scrub(value), default=str, sort_keys=sort_keys, allow_nan=False, separators=(",", ":")
        )
    if b"\\u0000" in out:  # rare: rebuild without NUL characters
        out = orjson.dumps(_scrub(value), default=str, option=options)
    return out.decode()


def _text(value: Any) -> str:
    text = str(value)
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def as_utc(value: datetime | date | str | pd.Timestamp, *, what: str = "time") -> datetime:
    """``value`` as an aware UTC datetime (naive values and dates mean UTC)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ConfigError(
                f"{what} {value!r} is not an ISO-8601 time; write e.g. '2026-11-01' or "
                f"'2026-11-01T12:00:00Z'."
            ) from exc
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise ConfigError(f"{what} must be a datetime or an ISO-8601 string, got {value!r}.")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def record_key(record: PredictionRecord, entity_sorted: str | None = None) -> str:
    """The identity of a record in the log: a hash of its request id, role, model, version
    and entity keys. A replayed batch carries the same keys, so no store keeps it twice."""
    entity = entity_sorted if entity_sorted is not None else dumps(record.entity, sort_keys=True)
    head = dumps([record.request_id, record.role, record.model, record.version])
    return hashlib.sha256(f"{head}\n{entity}".encode()).hexdigest()[:32]


def encode(record: PredictionRecord) -> Row:
    """One record as a row of :data:`SCHEMA` (JSON text for its dicts and lists)."""
    entity_sorted = dumps(record.entity, sort_keys=True)
    version = int(record.version)
    if not -(2**63) <= version < 2**63:  # checked here, so one record cannot sink a batch
        raise ValueError(f"a model version must fit 64 bits, got {version}")
    return (
        record_key(record, entity_sorted),
        _text(record.request_id),
        as_utc(record.time, what="record.time"),
        _text(record.model),
        version,
        _text(record.role),
        _text(record.decision),
        float(record.score),
        float(record.probability),
        dumps(list(record.reasons)),
        dumps(record.entity),
        dumps(record.features),
        _text(record.policy_decision or record.decision),
        bool(record.explore),
    )


def rows_to_table(rows: Sequence[Row]) -> pa.Table:
    """Rows from :func:`encode` as an Arrow table of :data:`SCHEMA`."""
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(COLUMNS)
    return pa.table(
        [pa.array(col, type=f.type) for col, f in zip(columns, SCHEMA, strict=True)],
        schema=SCHEMA,
    )


def empty_table() -> pa.Table:
    return SCHEMA.empty_table()


def conform(table: pa.Table) -> pa.Table:
    """``table`` as :data:`SCHEMA`; a table written before the columns of
    :data:`ADDED_COLUMNS` existed gets them as nulls."""
    for name in ADDED_COLUMNS:
        if name not in table.column_names:
            field = SCHEMA.field(name)
            table = table.append_column(field, pa.nulls(table.num_rows, type=field.type))
    return table.select(list(COLUMNS)).cast(SCHEMA)


def new_batch_id() -> str:
    """A unique batch id that sorts by creation time (then by creation order in a process)."""
    now = datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S%f}-{next(_batch_counter):08d}-{secrets.token_hex(4)}"


# ---------------------------------------------------------------------------- matching


def key_text(value: Any) -> str:
    """The text an entity key is matched by on erasure: a string itself, anything else
    its JSON text (``42`` and ``"42"`` both match ``customer_id=42``)."""
    if isinstance(value, str):
        return value
    return dumps(value)


def entity_mask(table: pa.Table, key: str, value: Any) -> pa.ChunkedArray:
    """Which rows of ``table`` have ``entity[key]`` equal to ``value`` (by :func:`key_text`)."""
    want = key_text(value)
    column = table.column("entity")
    # Most rows cannot match: only rows whose JSON holds the wanted text are parsed.
    if want and not any(c in want for c in '"\\') and want.isprintable():
        candidates = pc.match_substring(column, want)
    else:
        candidates = pa.chunked_array([pa.array([True] * len(table), type=pa.bool_())])
    flags = []
    for text, maybe in zip(column.to_pylist(), candidates.to_pylist(), strict=True):
        if not maybe:
            flags.append(False)
            continue
        entity = loads(text)
        flags.append(  # a null key matches nothing (as in PostgreSQL's ->>)
            isinstance(entity, dict)
            and entity.get(key) is not None
            and key_text(entity[key]) == want
        )
    return pa.chunked_array([pa.array(flags, type=pa.bool_())])


def time_filter(table: pa.Table, start: datetime | None, end: datetime | None) -> pa.Table:
    """Rows with ``start <= time < end`` (either bound may be open)."""
    if start is not None:
        table = table.filter(
            pc.greater_equal(table["time"], pa.scalar(start, SCHEMA.field("time").type))
        )
    if end is not None:
        table = table.filter(pc.less(table["time"], pa.scalar(end, SCHEMA.field("time").type)))
    return table


# ---------------------------------------------------------------------------- reading


def to_frame(table: pa.Table, *, flatten: bool = True) -> pd.DataFrame:
    """The DataFrame :func:`~lendml.serving.prediction_log.read_prediction_log` returns."""
    table = conform(table)
    n = table.num_rows
    frame = pd.DataFrame(
        {
            "request_id": pd.array(table["request_id"].to_pylist(), dtype=object),
            "time": table["time"].to_pandas(),
            "model": pd.array(table["model"].to_pylist(), dtype=object),
            "version": table["version"].to_numpy(),
            "role": pd.array(table["role"].to_pylist(), dtype=object),
            "decision": pd.array(table["decision"].to_pylist(), dtype=object),
            "score": table["score"].to_numpy(),
            "probability": table["probability"].to_numpy(),
            "reasons": pd.array(_loads(table["reasons"]), dtype=object),
            # null in data written before the holdout existed: the cutoffs' decision
            "policy_decision": pd.array(
                pc.coalesce(table["policy_decision"], table["decision"]).to_pylist(),
                dtype=object,
            ),
            "explore": pc.fill_null(table["explore"], False).to_numpy(zero_copy_only=False),
        },
        index=pd.RangeIndex(n),
    )
    frame["time"] = pd.to_datetime(frame["time"], utc=True).astype("datetime64[us, UTC]")
    frame["version"] = frame["version"].astype("int64")
    if not flatten:
        frame["entity"] = pd.array(_loads(table["entity"]), dtype=object)
        frame["features"] = pd.array(_loads(table["features"]), dtype=object)
        return frame
    parts = [frame, _flat(table["entity"], "entity.", n), _flat(table["features"], "features.", n)]
    return pd.concat(parts, axis=1)


def _loads(column: pa.ChunkedArray) -> list[Any]:
    """Parse each JSON text; integers beyond 64 bits stay exact (orjson reads them as
    floats, so texts that hold one go through the standard library)."""
    texts = column.to_pylist()
    if not texts or not pc.any(pc.match_substring_regex(column, _BIG_INTEGER)).as_py():
        return [orjson.loads(text) for text in texts]
    return [loads(text) for text in texts]


def loads(text: str) -> Any:
    """One JSON text, integers of any size exact."""
    return json.loads(text) if _BIG_INTEGER_RE.search(text) else orjson.loads(text)


def _flat(column: pa.ChunkedArray, prefix: str, n: int) -> pd.DataFrame:
    """One column per key of the JSON objects in ``column``, sorted by name: ints as
    int64, numbers with gaps or fractions as float64 (NaN for missing), text and the rest
    as objects. Arrow's JSON reader does it in C++; values it would change (integers
    beyond 64 bits, strings that look like timestamps, nested values) take the Python way.
    """
    index = pd.RangeIndex(n)
    parsed = _flat_arrow(column, n) if n else None
    if parsed is None:
        dicts = _loads(column)
        names = sorted({k for d in dicts for k in d})
        data = {f"{prefix}{name}": _column([d.get(name) for d in dicts]) for name in names}
        return pd.DataFrame(data, index=index)
    names = sorted(parsed.column_names)
    data = {}
    for name in names:
        col = parsed[name]
        values = col.to_pandas()
        if (
            col.type == pa.string()
            or col.type == pa.null()
            or (col.null_count and col.type == pa.bool_())
        ):
            values = pd.array(col.to_pylist(), dtype=object)
        data[f"{prefix}{name}"] = values
    return pd.DataFrame(data, index=index)


def _flat_arrow(column: pa.ChunkedArray, n: int) -> pa.Table | None:
    import pyarrow.json as pj

    if pc.any(pc.match_substring_regex(column, _BIG_INTEGER)).as_py():
        return None  # an integer that may not fit 64 bits: Arrow would make it a double
    text = "\n".join(column.to_pylist()).encode()
    try:
        parsed = pj.read_json(pa.BufferReader(text))
    except pa.ArrowInvalid:  # e.g. a key that holds numbers and strings
        return None
    if parsed.num_rows != n or any(f.type not in _FLAT_TYPES for f in parsed.schema):
        return None
    return parsed


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _column(values: list[Any]) -> Any:
    """Numbers with gaps as float64 (NaN for missing), ints as int64, booleans without
    gaps as bool, others as objects."""
    present = [v for v in values if v is not None]
    if present and len(present) == len(values) and all(isinstance(v, bool) for v in present):
        return pd.array(values, dtype=bool)
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        if len(present) == len(values) and all(isinstance(v, int) for v in present):
            # pandas may wrap an int beyond 64 bits silently: keep those exact as objects
            if all(_INT64_MIN <= v <= _INT64_MAX for v in present):
                return pd.array(values, dtype="int64")
            return pd.array(values, dtype=object)
        return pd.array([math.nan if v is None else float(v) for v in values], dtype="float64")
    return pd.array(values, dtype=object)


# ---------------------------------------------------------------------------- stores


class LogStore(ABC):
    """Where the prediction log keeps its records. Implementations must accept
    :meth:`write_batch` from one writer thread while other threads or processes call
    :meth:`read`, :meth:`erase` and :meth:`prune`."""

    #: A description for messages and logs (never with a password).
    description: str = ""

    @abstractmethod
    def write_batch(self, table: pa.Table, *, batch_id: str) -> int:
        """Append the rows of ``table`` (:data:`SCHEMA`) all or nothing, idempotently: a
        batch written again under the same ``batch_id`` (a replay) adds nothing. Return
        how many rows were added. Raise on any failure; the caller spools the batch."""

    @abstractmethod
    def read(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        model: str | None = None,
        last: int | None = None,
    ) -> pa.Table:
        """Rows with ``start <= time < end`` (and of ``model``), sorted by time; with
        ``last``, only the newest ``last`` of them (still oldest first)."""

    @abstractmethod
    def erase(self, key: str, value: Any) -> int:
        """Delete every row whose entity has ``key`` equal to ``value``; return how many."""

    @abstractmethod
    def prune(self, before: datetime) -> int:
        """Delete every row older than ``before``; return how many."""

    def close(self) -> None:  # noqa: B027 - optional hook: most stores hold nothing open
        """Release connections or handles."""


def concat(tables: Iterable[pa.Table]) -> pa.Table:
    tables = [conform(t) for t in tables]
    return pa.concat_tables(tables) if tables else empty_table()
