"""The prediction log: every decision served, kept for monitoring and audit.

The HTTP service hands each response's :class:`~lendml.serving.records.PredictionRecord`
to :meth:`PredictionLog.submit`, which only puts it on a bounded in-memory queue. A
background writer thread takes records off the queue and writes them to the store in
batches (a Parquet file per ``rotate_rows`` records or ``rotate_seconds`` seconds, or a
PostgreSQL transaction per ``batch_rows`` / ``batch_seconds``).

Nothing accepted is lost:

- **The store fails** (an exception on write): the batch goes to the local *spool*, a
  folder of Arrow IPC files written atomically, and scoring goes on. The writer retries
  with exponential backoff (``retry_initial_seconds`` doubling up to
  ``retry_max_seconds``) and replays the spool oldest first; a spooled batch is deleted
  only after the store took it. While a backlog waits, new batches queue behind it in the
  spool, so the store receives batches in order.
- **The queue is full** (the store is slow or hung): ``submit`` does not block or drop;
  the records go to the spool in files of ``spill_rows``.
- **The process dies**: batches in the spool survive and are replayed by the next
  :func:`open_prediction_log` on the same spool folder. (Records still in memory — at
  most one queue and one unwritten batch — are lost on a hard kill; :meth:`close`, run
  at exit, writes or spools them.)
- **A replay repeats a write** (a crash between writing a batch and deleting it from the
  spool): stores write batches idempotently (Parquet files are named by batch id,
  PostgreSQL rows by a record key with ``ON CONFLICT DO NOTHING``).

Reading back: :func:`read_prediction_log`. Personal data: :func:`erase_prediction_log`
(by entity key, in the store and the spool) and :func:`prune_prediction_log` (older than
``retention_days``; the writer also prunes when it starts and once a day). The stores:
:class:`ParquetLogStore`, :class:`PostgresLogStore`, behind the :class:`LogStore` protocol.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from lendml.core.config import ParquetLogSettings, PostgresLogSettings
from lendml.errors import ConfigError
from lendml.serving._predlog_base import SCHEMA, LogStore
from lendml.serving._predlog_parquet import ParquetLogStore
from lendml.serving._predlog_postgres import PostgresLogStore, redact
from lendml.serving._predlog_writer import (
    ErasureReport,
    LogStats,
    PredictionLog,
    TimeLike,
)

LogSettings = ParquetLogSettings | PostgresLogSettings


# ---------------------------------------------------------------------------- builders


def _resolve(root: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else Path(root) / p


def create_log_store(settings: LogSettings, root: str | os.PathLike[str]) -> LogStore:
    """The :class:`LogStore` that ``settings`` (``prediction_log:`` in lendml.yaml) names.

    Raises
    ------
    ConfigError
        PostgreSQL's URL variable is not set.
    """
    if isinstance(settings, ParquetLogSettings):
        return ParquetLogStore(_resolve(Path(root), settings.path))
    if isinstance(settings, PostgresLogSettings):
        url = os.environ.get(settings.url_env)
        if not url:
            raise ConfigError(
                f"prediction_log.url_env names ${settings.url_env}, which is not set: export "
                f"it with the PostgreSQL URL (postgresql://user:password@host:5432/db) before "
                f"starting lendml; the URL never goes in lendml.yaml.",
                setting="prediction_log.url_env",
            )
        try:
            return PostgresLogStore(
                url,
                settings.table,
                connect_timeout=settings.connect_timeout_seconds,
                statement_timeout=settings.statement_timeout_seconds,
            )
        except ImportError as exc:
            raise ConfigError(
                "The PostgreSQL prediction log needs psycopg 3: pip install 'lendml[postgres]'."
            ) from exc
    raise ConfigError(f"Unknown prediction_log settings {settings!r}.")


def open_prediction_log(
    settings: LogSettings,
    root: str | os.PathLike[str],
    *,
    store: LogStore | None = None,
    clock: Callable[[], datetime] | None = None,
    start: bool = True,
) -> PredictionLog:
    """Open the prediction log that ``settings`` describe, with its writer thread running.

    A spool left by an earlier process is replayed as soon as the store takes writes. The
    store need not be reachable now: records wait in the spool until it is.

    Parameters
    ----------
    settings
        The project's ``prediction_log:`` settings (``ProjectConfig.prediction_log``).
    root
        The project folder; relative paths in ``settings`` resolve against it.
    store
        Use this store instead of the one ``settings`` name (e.g. a custom one).
    clock
        Returns the current UTC time; the default is the system clock.
    start
        Start the writer (``False``: only read, erase and prune).

    Returns
    -------
    PredictionLog
        Call :meth:`~PredictionLog.close` when done (or use it as a context manager).

    Examples
    --------
    >>> import tempfile
    >>> from datetime import datetime, UTC
    >>> from lendml.core.config import ParquetLogSettings
    >>> from lendml.serving.records import PredictionRecord
    >>> root = tempfile.mkdtemp()
    >>> with open_prediction_log(ParquetLogSettings(), root) as plog:
    ...     plog.submit(PredictionRecord(
    ...         request_id="r1", time=datetime(2026, 11, 2, 9, 30, tzinfo=UTC),
    ...         model="credit_pd", version=3, entity={"customer_id": 42},
    ...         features={"dti": 0.31}, score=612.0, probability=0.08, decision="approve"))
    >>> read_prediction_log(ParquetLogSettings(), root)[["request_id", "features.dti"]]
      request_id  features.dti
    0         r1          0.31
    """
    if isinstance(settings, ParquetLogSettings):
        batch_rows, batch_seconds = settings.rotate_rows, settings.rotate_seconds
    else:
        batch_rows, batch_seconds = settings.batch_rows, settings.batch_seconds
    return PredictionLog(
        store if store is not None else create_log_store(settings, root),
        _resolve(Path(root), settings.spool),
        queue_size=settings.queue_size,
        batch_rows=batch_rows,
        batch_seconds=batch_seconds,
        spill_rows=settings.spill_rows,
        retry_initial_seconds=settings.retry_initial_seconds,
        retry_max_seconds=settings.retry_max_seconds,
        retention_days=settings.retention_days,
        clock=clock,
        start=start,
    )


def read_prediction_log(
    settings: LogSettings,
    root: str | os.PathLike[str],
    *,
    start: TimeLike | None = None,
    end: TimeLike | None = None,
    model: str | None = None,
    last: int | None = None,
    flatten: bool = True,
) -> pd.DataFrame:
    """The logged records with ``start <= time < end``, one row per record, oldest first.

    Records still waiting in the spool are not included (they are not in the store yet).

    Parameters
    ----------
    settings, root
        As for :func:`open_prediction_log`.
    start, end
        UTC bounds (datetimes, dates or ISO-8601 strings; naive means UTC); ``None`` is open.
    model
        Only this registered model's records.
    last
        Only the newest ``last`` records (Parquet reads whole days, newest first, until
        it has enough).
    flatten
        One column per entity key (``entity.<key>``) and per feature
        (``features.<name>``), sorted by name — what drift monitoring and label joins
        need; a feature a record lacks is NaN (numbers) or None. ``False``: ``entity`` and
        ``features`` are columns of dicts instead.

    Returns
    -------
    pandas.DataFrame
        Columns ``request_id``, ``time`` (``datetime64[us, UTC]``), ``model``, ``version``
        (int64), ``role``, ``decision``, ``score``, ``probability``, ``reasons`` (lists of
        dicts), then the entity and feature columns.

    Raises
    ------
    StoreError
        The store cannot be read (PostgreSQL down, the Parquet path is not a folder).
    """
    plog = open_prediction_log(settings, root, start=False)
    try:
        return plog.read(start, end, model=model, last=last, flatten=flatten)
    finally:
        plog.close()


def erase_prediction_log(
    settings: LogSettings, root: str | os.PathLike[str], key: str, value: Any
) -> ErasureReport:
    """Remove every record whose entity has ``key`` equal to ``value``, from the store and
    from the spool; each Parquet file and spool file is rewritten atomically.

    Values match by text: ``value`` ``42`` or ``"42"`` erases entities with ``42`` or
    ``"42"``. Records still in a running service's memory (not yet written or spooled)
    are not reached: erase through that service's :meth:`PredictionLog.erase`, or run
    this again after it has flushed.

    Returns
    -------
    ErasureReport
        How many records were removed from the store and from the spool.
    """
    if not key:
        raise ConfigError(
            "The entity key to erase by is empty; write KEY=VALUE, e.g. customer_id=42."
        )
    plog = open_prediction_log(settings, root, start=False)
    try:
        return plog.erase(key, value)
    finally:
        plog.close()


def prune_prediction_log(
    settings: LogSettings,
    root: str | os.PathLike[str],
    *,
    before: TimeLike | None = None,
    clock: Callable[[], datetime] | None = None,
) -> int:
    """Delete records older than ``before`` (default: ``retention_days`` ago) from the
    store and the spool; return how many.

    Raises
    ------
    ConfigError
        Neither ``before`` nor ``retention_days`` is set.
    """
    plog = open_prediction_log(settings, root, start=False, clock=clock)
    try:
        return plog.prune(before)
    finally:
        plog.close()


__all__ = [
    "SCHEMA",
    "ErasureReport",
    "LogSettings",
    "LogStats",
    "LogStore",
    "ParquetLogStore",
    "PostgresLogStore",
    "PredictionLog",
    "create_log_store",
    "erase_prediction_log",
    "open_prediction_log",
    "prune_prediction_log",
    "read_prediction_log",
    "redact",
]
