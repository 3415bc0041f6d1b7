"""Batch scoring: a Parquet or CSV file in, a Parquet file of scores (and reasons) out.

:func:`score_file` streams the input in chunks of ``chunk_rows`` rows, so memory stays
bounded whatever the file's size: read a chunk (pyarrow), check and encode it with the
model's feature schema, score it — LightGBM models with compiled code
(:class:`~lendml.models.compiled.CompiledScorer`) on every core, other kinds with their
``decision_function`` — optionally explain it (exact Shapley reason codes against the
model's reference point), and append it to a Parquet file.
The next chunk is read while the current one is scored.

The output is written to a temporary file next to the target and renamed at the end, so
a run that fails — bad input in row 3 million, a full disk, Ctrl-C — leaves no output
file, and a run that succeeds replaces the target at once.

Input rules (the model's :class:`~lendml.models.schema.FeatureSchema`):

* every model feature must be a column (missing ones are named, with near spellings);
  other columns are ignored unless listed in ``keep``;
* numeric features must hold numbers: numeric or boolean columns, or text that parses as
  numbers (a bad value is shown with its column); missing values stay missing;
* categorical features may be text, integers, booleans or dictionary columns; a value the
  model never saw in training is read as missing, as in training and serving (the
  schema's rule), and counted per feature in the summary with examples.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import math
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from lendml.errors import ConfigError, DataValidationError, LendmlError
from lendml.models.base import Model
from lendml.models.compiled import CompiledScorer
from lendml.models.reasons import ReferencePoint, reason_codes
from lendml.models.schema import FeatureSchema, FeatureSpec, category_label

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 100_000
MAX_REASONS = 4  # Regulation B: up to four principal reasons
SCORE, PROBABILITY = "score", "probability"
_SHOW = 5
_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_BLOCK_ROWS = 1024  # rows per block of the encoder's transpose (fits the CPU cache)

Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class BatchSummary:
    """What :func:`score_file` did.

    Attributes
    ----------
    input, output
        The files read and written.
    rows, chunks
        Rows scored and chunks they were read in.
    seconds, rows_per_second
        Wall time of the whole run (reading to renaming) and its throughput.
    backend
        ``"lleaves"`` (compiled trees), ``"lightgbm"`` (``Booster.predict``) or
        ``"decision_function"`` (a scorecard or network).
    fallback_reason
        Why compiled code was not used for a LightGBM model, else ``None``.
    compile_seconds, compiled_from_cache
        Time to compile the model or load its cached object, and which it was.
    reasons
        Whether reason codes were written.
    reference
        Where the reference point came from and how it was chosen (with reasons).
    excluded
        Features that are never reasons (the model's protected attributes and
        ``exclude``).
    unknown_categories
        Per categorical feature: ``{"count": rows, "examples": [...]}`` of values the
        model never saw (scored as missing).
    columns
        The output's columns, in order.
    """

    input: str
    output: str
    rows: int
    chunks: int
    seconds: float
    rows_per_second: float
    backend: str
    fallback_reason: str | None
    compile_seconds: float
    compiled_from_cache: bool
    reasons: bool
    reference: dict[str, Any] | None
    excluded: list[str]
    unknown_categories: dict[str, dict[str, Any]]
    columns: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


# --------------------------------------------------------------------------- the entry point
def score_file(
    model: Model,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    reasons: bool = False,
    reference: ReferencePoint | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    exclude: Iterable[str] = (),
    groups: Mapping[str, str] | None = None,
    top: int = MAX_REASONS,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    threads: int | None = None,
    keep: Sequence[str] = (),
    compile: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    scorer: CompiledScorer | None = None,
    progress: Progress | None = None,
) -> BatchSummary:
    """Score every row of a Parquet or CSV file and write the scores as Parquet.

    Parameters
    ----------
    model
        A fitted or loaded model (``Registry.load(ref).model`` or
        :func:`~lendml.models.load_model`).
    input_path
        A Parquet file or folder of Parquet files (``.parquet``, ``.pq``, a folder), or a
        CSV file (``.csv``, ``.csv.gz``, ``.csv.bz2``, ``.csv.zst``) with a header row.
    output_path
        The Parquet file to write (replaced if it exists; never half-written).
    reasons
        Also write up to ``top`` adverse reason codes per row (LightGBM models only):
        columns ``reason_1`` … and ``reason_1_contribution`` … (log-odds moved away from
        the reference applicant; empty when a row has fewer reasons).
    reference
        The reference applicant for the reasons: a :class:`ReferencePoint`, its
        ``to_dict()``, or a JSON file holding it (or a dict with a ``reference_point``
        key). Default: the one training stored in ``model.metadata_``.
    exclude
        Features that must never be reasons, added to the model's stored protected
        attributes (``model.metadata_["protected"]``).
    groups
        ``{feature: code}``: related features reported as one reason.
    top
        Reasons per row, 1 to 4.
    chunk_rows
        Rows per chunk. Memory is about ``chunk_rows × features × 8 bytes`` times a
        small factor (input, encoded matrix, the chunk being read).
    threads
        Threads for compiled scoring (default: every core). Reasons run on one thread
        while the next chunk is read.
    keep
        Input columns copied to the output first (entity keys, application ids).
    compile, cache_dir, scorer
        LightGBM models: compile with lleaves (``compile=False`` uses
        ``Booster.predict``), caching the object in ``cache_dir`` (default
        :func:`~lendml.models.compiled.default_cache_dir`); or pass a ready ``scorer``.
    progress
        Called after each chunk with (rows done, total rows or ``None`` if unknown).

    Returns
    -------
    BatchSummary

    Raises
    ------
    ConfigError
        Unknown file type, a bad option, an output column name taken twice, reasons for a
        model kind without them, or no reference point.
    DataValidationError
        A model feature or kept column is missing from the input, or a feature holds
        values of the wrong type (named, with examples). No output file is left behind.

    Examples
    --------
    >>> import tempfile, numpy as np, pandas as pd
    >>> from pathlib import Path
    >>> from lendml.models.lightgbm import LightGBMModel
    >>> rng = np.random.default_rng(0)
    >>> frame = pd.DataFrame({"id": range(500), "dti": rng.uniform(size=500)})
    >>> bad = (rng.uniform(size=500) < frame["dti"]).astype(int)
    >>> model = LightGBMModel(n_estimators=5, early_stopping_rounds=0).fit(frame[["dti"]], bad)
    >>> folder = Path(tempfile.mkdtemp())
    >>> frame.to_parquet(folder / "applicants.parquet")
    >>> summary = score_file(model, folder / "applicants.parquet", folder / "scores.parquet",
    ...                      keep=["id"], cache_dir=folder / "cache")
    >>> summary.rows, summary.columns
    (500, ['id', 'score', 'probability'])
    """
    start = time.perf_counter()
    source = Path(input_path)
    target = Path(output_path)
    _check_options(chunk_rows=chunk_rows, threads=threads, top=top)
    keep = list(dict.fromkeys(str(k) for k in keep))
    schema: FeatureSchema = model.schema_
    if target.resolve() == source.resolve():
        raise ConfigError(
            f"The output {str(target)!r} is the input file; write the scores elsewhere."
        )
    if target.is_dir():
        raise ConfigError(f"The output {str(target)!r} is a folder; give a file name.")
    if source.is_dir() and target.resolve().is_relative_to(source.resolve()):
        raise ConfigError(
            f"The output {str(target)!r} is inside the input folder {str(source)!r}; the "
            "next run would read the scores as input. Write them elsewhere."
        )
    n_threads = threads or os.cpu_count() or 1
    out_names = _output_names(keep, top if reasons else 0)
    explain = None
    excluded: list[str] = []
    if reasons:
        explain = _Reasons.build(model, reference, exclude, groups, top)
        excluded = explain.excluded
    reader = _open(source, schema, keep, chunk_rows)
    try:
        return _run(
            model,
            reader,
            source,
            target,
            start=start,
            keep=keep,
            out_names=out_names,
            explain=explain,
            excluded=excluded,
            n_threads=n_threads,
            compile=compile,
            cache_dir=cache_dir,
            scorer=scorer,
            progress=progress,
        )
    finally:
        reader.close()


def _run(
    model: Model,
    reader: _Reader,
    source: Path,
    target: Path,
    *,
    start: float,
    keep: list[str],
    out_names: list[str],
    explain: _Reasons | None,
    excluded: list[str],
    n_threads: int,
    compile: bool,
    cache_dir: str | os.PathLike[str] | None,
    scorer: CompiledScorer | None,
    progress: Progress | None,
) -> BatchSummary:
    schema: FeatureSchema = model.schema_

    backend, fallback, compile_s, from_cache = "decision_function", None, 0.0, False
    score_matrix: Callable[[np.ndarray], np.ndarray] | None = None
    if model.kind == "lightgbm":
        if scorer is None:
            scorer = CompiledScorer.from_model(
                model, cache_dir=cache_dir, compile=compile, n_jobs=n_threads
            )
        backend, fallback = scorer.backend_, scorer.fallback_reason_
        compile_s, from_cache = scorer.compile_seconds_, scorer.from_cache_
        score_matrix = scorer.predict_raw

    encoder = _Encoder(schema)
    rows = chunks = 0
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    writer: pq.ParquetWriter | None = None
    try:
        with contextlib.closing(_prefetch(reader.batches())) as chunks_in:
            for batch in chunks_in:
                X = encoder.encode(batch, first_row=rows)
                if score_matrix is not None:
                    score = score_matrix(X)
                else:
                    score = np.asarray(
                        model.decision_function(_frame(batch, schema)), dtype=np.float64
                    )
                columns: dict[str, pa.Array] = {k: batch.column(k) for k in keep}
                columns[SCORE] = pa.array(score, pa.float64())
                columns[PROBABILITY] = pa.array(1.0 / (1.0 + np.exp(-score)), pa.float64())
                if explain is not None:
                    columns.update(explain.columns(X))
                table = pa.Table.from_pydict(columns)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                rows += batch.num_rows
                chunks += 1
                if progress is not None:
                    progress(rows, reader.total_rows)
        if writer is None:  # no rows: an empty file with the output's columns
            writer = pq.ParquetWriter(tmp, _empty_schema(reader.schema, keep, out_names))
        writer.close()
        writer = None
        os.replace(tmp, target)
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise

    unknown = encoder.unknown_summary()
    for name, info in unknown.items():
        log.warning(
            "%d value(s) of %r were not seen in training and were scored as missing, e.g. %r.",
            info["count"],
            name,
            info["examples"],
        )
    seconds = time.perf_counter() - start
    return BatchSummary(
        input=str(source),
        output=str(target),
        rows=rows,
        chunks=chunks,
        seconds=seconds,
        rows_per_second=rows / seconds if seconds > 0 else math.inf,
        backend=backend,
        fallback_reason=fallback,
        compile_seconds=compile_s,
        compiled_from_cache=from_cache,
        reasons=explain is not None,
        reference=explain.reference_info if explain is not None else None,
        excluded=excluded,
        unknown_categories=unknown,
        columns=out_names,
    )


def _check_options(*, chunk_rows: int, threads: int | None, top: int) -> None:
    def positive_int(value: Any) -> bool:
        return isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 1

    if not positive_int(chunk_rows):
        raise ConfigError(f"chunk_rows must be a positive number of rows; got {chunk_rows!r}.")
    if threads is not None and not positive_int(threads):
        raise ConfigError(f"threads must be a positive number; got {threads!r}.")
    if not positive_int(top) or top > MAX_REASONS:
        raise ConfigError(
            f"top must be 1 to {MAX_REASONS} reasons per row (Regulation B asks for up to "
            f"four); got {top!r}."
        )


def _output_names(keep: Sequence[str], top: int) -> list[str]:
    reason_names = [f"reason_{i}" for i in range(1, top + 1)]
    reason_names += [f"reason_{i}_contribution" for i in range(1, top + 1)]
    ours = [SCORE, PROBABILITY, *reason_names]
    clash = [k for k in keep if k in ours]
    if clash:
        raise ConfigError(
            f"Kept column(s) {clash!r} have the name of an output column ({', '.join(ours)}); "
            "rename them in the input or do not keep them."
        )
    return [*keep, SCORE, PROBABILITY, *_interleave(top)]


def _interleave(top: int) -> list[str]:
    out = []
    for i in range(1, top + 1):
        out += [f"reason_{i}", f"reason_{i}_contribution"]
    return out


def _empty_schema(input_schema: pa.Schema, keep: Sequence[str], names: Sequence[str]) -> pa.Schema:
    fields = [input_schema.field(k) for k in keep]
    for name in names[len(keep) :]:
        is_code = name.startswith("reason_") and not name.endswith("_contribution")
        fields.append(pa.field(name, pa.string() if is_code else pa.float64()))
    return pa.schema(fields)


def _frame(batch: pa.RecordBatch, schema: FeatureSchema) -> pd.DataFrame:
    return batch.select(schema.names).to_pandas()


# --------------------------------------------------------------------------- reading
class _Reader:
    """Chunks of exactly ``chunk_rows`` rows (the last may be shorter) of the columns the
    scoring needs, from a Parquet dataset or a CSV file."""

    def __init__(
        self,
        batches: Callable[[], Iterator[pa.RecordBatch]],
        schema: pa.Schema,
        total_rows: int | None,
        chunk_rows: int,
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self._batches = batches
        self.schema = schema
        self.total_rows = total_rows
        self._chunk_rows = chunk_rows
        self.close = close

    def batches(self) -> Iterator[pa.RecordBatch]:
        pending: list[pa.RecordBatch] = []
        held = 0
        for batch in self._batches():
            if not batch.num_rows:
                continue
            pending.append(batch)
            held += batch.num_rows
            while held >= self._chunk_rows:
                table = pa.Table.from_batches(pending)
                yield table.slice(0, self._chunk_rows).combine_chunks().to_batches()[0]
                rest = table.slice(self._chunk_rows)
                pending = rest.combine_chunks().to_batches() if rest.num_rows else []
                held = rest.num_rows
        if held:
            yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


def _kind_of(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir() or name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    raise ConfigError(
        f"Cannot tell the format of {str(path)!r}: name a Parquet file or folder "
        f"({', '.join(_PARQUET_SUFFIXES)}) or a CSV file ({', '.join(_CSV_SUFFIXES)})."
    )


def _open(path: Path, schema: FeatureSchema, keep: Sequence[str], chunk_rows: int) -> _Reader:
    if not path.exists():
        raise DataValidationError(f"The input {str(path)!r} does not exist.", path=str(path))
    kind = _kind_of(path)
    needed = list(dict.fromkeys([*keep, *schema.names]))
    if kind == "parquet":
        try:
            # pre_buffer would keep every row group's raw column chunks until the file is
            # closed (memory grew by a row group per chunk: 4 GB for a 1.4 GB file)
            options = pads.ParquetFragmentScanOptions(pre_buffer=False)
            parquet = pads.ParquetFileFormat(default_fragment_scan_options=options)
            dataset = pads.dataset(path, format=parquet)
            arrow_schema = dataset.schema
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataValidationError(
                f"Cannot read {str(path)!r} as Parquet: {exc}", path=str(path)
            ) from exc
        _check_columns(arrow_schema.names, schema, keep, path)
        _check_types(arrow_schema, schema, path)
        total = dataset.count_rows()

        files = list(dataset.files)

        def parquet_batches() -> Iterator[pa.RecordBatch]:
            # File by file, row group by row group, with no read-ahead buffering of its own:
            # pyarrow's dataset scanner read ~7 chunks ahead of a slow consumer (1.3 GB at
            # 100k x 200) and pre-buffering kept every row group read; _prefetch reads one
            # chunk ahead instead.
            for name in files:
                try:
                    with pq.ParquetFile(name, pre_buffer=False) as part:
                        lacking = [c for c in needed if c not in part.schema_arrow.names]
                        if lacking:
                            raise DataValidationError(
                                f"{name!r} (part of {str(path)!r}) lacks the column(s) "
                                f"{lacking[:_SHOW]!r} that the first file has; every file of "
                                "the input needs the model's features.",
                                path=name,
                            )
                        yield from part.iter_batches(
                            batch_size=min(chunk_rows, 1 << 20), columns=needed
                        )
                except (pa.ArrowInvalid, OSError) as exc:
                    raise DataValidationError(
                        f"Cannot read {name!r}: {exc}", path=str(path)
                    ) from exc

        selected = pa.schema([arrow_schema.field(n) for n in needed])
        return _Reader(parquet_batches, selected, total, chunk_rows)

    header = _csv_header(path)
    _check_columns(header, schema, keep, path)
    types: dict[str, pa.DataType] = {k: pa.string() for k in keep}
    for spec in schema.features:
        types[spec.name] = pa.string() if spec.kind == "categorical" else pa.float64()
    convert = pacsv.ConvertOptions(
        column_types=types, include_columns=needed, strings_can_be_null=True
    )
    read = pacsv.ReadOptions(block_size=_csv_block_size(len(header), chunk_rows))
    try:
        stream = pacsv.open_csv(path, read_options=read, convert_options=convert)
    except pa.ArrowInvalid as exc:
        raise _csv_error(exc, path, header) from exc

    def csv_batches() -> Iterator[pa.RecordBatch]:
        while True:
            try:
                batch = stream.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as exc:
                raise _csv_error(exc, path, header) from exc
            yield batch

    return _Reader(csv_batches, stream.schema, None, chunk_rows, close=stream.close)


def _csv_header(path: Path) -> list[str]:
    try:
        probe = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16))
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataValidationError(
            f"Cannot read the header of the CSV file {str(path)!r}: {exc}", path=str(path)
        ) from exc
    try:
        return list(probe.schema.names)
    finally:
        probe.close()


def _csv_block_size(n_columns: int, chunk_rows: int) -> int:
    # ~12 bytes per value: a block holds about a chunk, within 1 MB .. 64 MB
    return int(min(max(n_columns * chunk_rows * 12, 1 << 20), 64 << 20))


def _csv_error(exc: Exception, path: Path, header: Sequence[str]) -> DataValidationError:
    text = str(exc)
    hint = ""
    marker = "In CSV column #"
    if marker in text:
        index = text.split(marker, 1)[1].split(":", 1)[0].strip()
        if index.isdigit() and int(index) < len(header):  # counted in the file's columns
            name = header[int(index)]
            hint = (
                f" Column {name!r} must hold numbers (empty, NA or null for missing); fix "
                "or blank the value shown."
            )
    return DataValidationError(f"Cannot read {str(path)!r}: {text}.{hint}", path=str(path))


def _prefetch(items: Iterator[pa.RecordBatch], depth: int = 1) -> Iterator[pa.RecordBatch]:
    """Read the next chunk in a thread while the caller scores the current one (at most
    ``depth`` chunks wait, so memory stays bounded)."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("done", None))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            q.put(("error", exc))

    thread = threading.Thread(target=work, name="lendml-batch-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():  # unblock a reader waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.1)


# --------------------------------------------------------------------------- validation
def _check_columns(
    available: Sequence[str], schema: FeatureSchema, keep: Sequence[str], path: Path
) -> None:
    have = set(available)
    missing = [n for n in schema.names if n not in have]
    missing_keep = [k for k in keep if k not in have]
    if not missing and not missing_keep:
        return
    parts = []
    if missing:
        shown = ", ".join(_with_near(n, available) for n in missing[:_SHOW])
        more = f" and {len(missing) - _SHOW} more" if len(missing) > _SHOW else ""
        parts.append(f"{len(missing)} model feature(s) are not columns of the input: {shown}{more}")
    if missing_keep:
        shown = ", ".join(_with_near(n, available) for n in missing_keep[:_SHOW])
        parts.append(f"kept column(s) not in the input: {shown}")
    raise DataValidationError(
        f"{str(path)!r}: {'; '.join(parts)}. Its columns: {list(available)[:20]}"
        f"{' …' if len(available) > 20 else ''}. Add the columns (the model needs every "
        "feature it was trained on) or fix --keep.",
        path=str(path),
    )


def _with_near(name: str, available: Sequence[str]) -> str:
    near = difflib.get_close_matches(name, list(available), n=1, cutoff=0.75)
    lower = {a.lower(): a for a in available}
    hint = near[0] if near else lower.get(name.lower())
    return f"{name!r} (did you mean {hint!r}?)" if hint else repr(name)


def _numeric_type(t: pa.DataType) -> bool:
    return (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_decimal(t)
        or pa.types.is_null(t)
    )


def _text_type(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _check_types(arrow_schema: pa.Schema, schema: FeatureSchema, path: Path) -> None:
    bad = []
    for spec in schema.features:
        t = arrow_schema.field(spec.name).type
        if pa.types.is_dictionary(t):
            t = t.value_type
        ok = _numeric_type(t) or _text_type(t)  # text is parsed (numeric) or matched
        if not ok:
            bad.append(f"{spec.name!r} ({spec.kind}) is {t}")
    if bad:
        raise DataValidationError(
            f"{str(path)!r}: feature column(s) of a type the model cannot read: "
            f"{'; '.join(bad[:_SHOW])}. Numeric features need numbers, categorical ones "
            "text, integers or booleans; convert the columns (e.g. a date to days since).",
            path=str(path),
        )


# --------------------------------------------------------------------------- encoding
class _Encoder:
    """Arrow chunks → the float64 matrix :meth:`FeatureSchema.encode` would give, without
    going through pandas for the common column types."""

    def __init__(self, schema: FeatureSchema) -> None:
        self.schema = schema
        self._levels = {
            s.name: pa.array(list(s.categories), pa.string())
            for s in schema.features
            if s.kind == "categorical"
        }
        self._unknown: dict[str, int] = {}
        self._examples: dict[str, list[Any]] = {}
        self._stage: np.ndarray | None = None
        self._out: np.ndarray = np.empty((0, len(schema)))

    def encode(self, batch: pa.RecordBatch, *, first_row: int) -> np.ndarray:
        """The chunk's matrix, shape ``(rows, features)``, C order.

        The matrix lives in a buffer reused by the next call (a fresh 100k x 200 matrix
        per chunk costs more in page faults than the encoding itself): use it before
        encoding the next chunk.
        """
        n, width = batch.num_rows, len(self.schema)
        if self._stage is None or self._stage.shape[1] < n:
            self._stage = np.empty((width, n))  # one contiguous row per feature
            self._out = np.empty((n, width))
        stage = self._stage
        for j, spec in enumerate(self.schema.features):
            col = batch.column(spec.name)
            if spec.kind == "categorical":
                stage[j, :n] = self._categorical(spec, col)
            else:
                if pa.types.is_dictionary(col.type):
                    col = col.dictionary_decode()
                stage[j, :n] = _numeric(spec, col, first_row)
        out = self._out[:n]
        # transpose block by block: each block of both arrays stays in the CPU cache
        for start in range(0, n, _BLOCK_ROWS):
            stop = min(start + _BLOCK_ROWS, n)
            out[start:stop] = stage[:, start:stop].T
        return out

    def _categorical(self, spec: FeatureSpec, col: pa.Array) -> np.ndarray:
        if pa.types.is_dictionary(col.type):
            # match the (few) dictionary values, then look the rows' indices up
            on_dict = self._index(spec, col.dictionary)
            index = pc.take(on_dict, col.indices)
            labels_valid = col.is_valid()
        else:
            labels = self._labels(col)
            index = self._index(spec, labels)
            labels_valid = labels.is_valid()
        unseen = pc.and_(pc.is_null(index), labels_valid)
        n_unseen = pc.sum(unseen).as_py() or 0
        if n_unseen:
            self._unknown[spec.name] = self._unknown.get(spec.name, 0) + n_unseen
            seen = self._examples.setdefault(spec.name, [])
            if len(seen) < _SHOW:
                plain = col.dictionary_decode() if pa.types.is_dictionary(col.type) else col
                for value in pc.unique(self._labels(plain).filter(unseen)).to_pylist():
                    if value not in seen and len(seen) < _SHOW:
                        seen.append(value)
        return index.cast(pa.float64()).to_numpy(zero_copy_only=False)

    def _index(self, spec: FeatureSpec, values: pa.Array) -> pa.Array:
        """Each value's position in the training categories (null: missing or unseen)."""
        return pc.index_in(self._labels(values), value_set=self._levels[spec.name])

    @staticmethod
    def _labels(col: pa.Array) -> pa.Array:
        """The values as the strings :func:`category_label` makes of them."""
        t = col.type
        if _text_type(t):
            return col
        if pa.types.is_integer(t):
            return col.cast(pa.string())
        if pa.types.is_boolean(t):
            return pc.if_else(col, "true", "false")
        if pa.types.is_null(t):
            return pa.nulls(len(col), pa.string())
        # floats, decimals: Python's spelling of the value, as in training
        values = col.to_pandas().map(category_label, na_action="ignore")
        return pa.array(values.astype(object).where(values.notna(), None), pa.string())

    def unknown_summary(self) -> dict[str, dict[str, Any]]:
        return {
            name: {"count": count, "examples": self._examples.get(name, [])}
            for name, count in sorted(self._unknown.items())
        }


def _numeric(spec: FeatureSpec, col: pa.Array, first_row: int) -> np.ndarray:
    t = col.type
    if _text_type(t):
        try:
            col = col.cast(pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            values = pd.Series(col.to_pylist(), dtype=object)
            parsed = pd.to_numeric(values, errors="coerce")
            bad = values[parsed.isna() & values.notna()]
            rows = [first_row + int(i) for i in bad.index[:_SHOW]]
            raise DataValidationError(
                f"Feature {spec.name!r} must be numeric; it holds text that is not a number, "
                f"such as {list(bad.unique()[:_SHOW])!r} (rows {rows}, counted from 0). "
                "Fix those values or leave them empty (missing).",
                feature=spec.name,
            ) from exc
    elif t != pa.float64():
        col = col.cast(pa.float64())
    return col.to_numpy(zero_copy_only=False)


# --------------------------------------------------------------------------- reasons
@dataclass
class _Reasons:
    """Reason codes for the chunks of one run: the explainer, the reference, the rules."""

    explainer: Any
    reference: ReferencePoint
    reference_info: dict[str, Any]
    excluded: list[str]
    groups: dict[str, str] | None
    top: int

    @classmethod
    def build(
        cls,
        model: Model,
        reference: Any,
        exclude: Iterable[str],
        groups: Mapping[str, str] | None,
        top: int,
    ) -> _Reasons:
        from lendml.models.explain import TreeExplainer

        if model.kind != "lightgbm":
            raise ConfigError(
                f"Reason codes are computed for LightGBM models; this model is a "
                f"{model.kind!r}. Score without reasons."
            )
        ref, info = _reference(model, reference)
        metadata = getattr(model, "metadata_", {}) or {}
        excluded = sorted({str(e) for e in (*metadata.get("protected", ()), *exclude)})
        explainer = TreeExplainer.from_model(model)  # type: ignore[arg-type]
        explainer.contributions(ref.encoded[None], ref)  # plan the reference once, up front
        return cls(explainer, ref, info, excluded, dict(groups) if groups else None, top)

    def columns(self, X: np.ndarray) -> dict[str, pa.Array]:
        # One thread: the explainer is numpy-bound and holds the GIL most of the time;
        # splitting a chunk across threads measured 0.9-1.0x here (2 cores).
        phi = self.explainer.contributions(X, self.reference)
        ranked = reason_codes(
            phi,
            self.explainer.feature_names_,
            top=self.top,
            exclude=self.excluded,
            groups=self.groups,
        )
        out: dict[str, pa.Array] = {}
        for i in range(self.top):
            codes = [r[i].code if len(r) > i else None for r in ranked]
            values = [r[i].contribution if len(r) > i else None for r in ranked]
            out[f"reason_{i + 1}"] = pa.array(codes, pa.string())
            out[f"reason_{i + 1}_contribution"] = pa.array(values, pa.float64())
        return out


def _reference(model: Model, reference: Any) -> tuple[ReferencePoint, dict[str, Any]]:
    if isinstance(reference, ReferencePoint):
        return reference, {"source": "given", **_how(reference)}
    if reference is None:
        stored = (getattr(model, "metadata_", {}) or {}).get("reference_point")
        if not stored:
            raise ConfigError(
                "Reason codes need a reference point, and this model has none stored with it "
                "(training stores one when its rows allow). Pass one: --reference FILE, a JSON "
                "file of ReferencePoint.to_dict() (see docs/reason-codes.md)."
            )
        ref = _from_dict(stored, model, "the model's stored reference point")
        return ref, {"source": "model metadata", **_how(ref)}
    if isinstance(reference, Mapping):
        ref = _from_dict(reference, model, "the given reference point")
        return ref, {"source": "given", **_how(ref)}
    path = Path(reference)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"The reference file {str(path)!r} does not exist.") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"The reference file {str(path)!r} is not readable JSON: {exc}. It must hold "
            "ReferencePoint.to_dict()."
        ) from exc
    if isinstance(data, Mapping) and isinstance(data.get("reference_point"), Mapping):
        data = data["reference_point"]
    ref = _from_dict(data, model, f"the reference file {str(path)!r}")
    return ref, {"source": str(path), **_how(ref)}


def _from_dict(data: Any, model: Model, what: str) -> ReferencePoint:
    if not isinstance(data, Mapping) or not isinstance(data.get("values"), Mapping):
        raise ConfigError(
            f"{what[0].upper()}{what[1:]} must be a JSON object with 'features' and 'values' "
            "(ReferencePoint.to_dict())."
        )
    try:
        return ReferencePoint.from_dict(data, model.schema_)
    except LendmlError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{what[0].upper()}{what[1:]} cannot be read: {exc}.") from exc


def _how(ref: ReferencePoint) -> dict[str, Any]:
    return {"cutoff": ref.cutoff, "band": ref.band, "side": ref.side, "n_rows": ref.n_rows}


__all__ = ["DEFAULT_CHUNK_ROWS", "BatchSummary", "score_file"]
