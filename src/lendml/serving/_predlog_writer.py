"""The prediction log's writer: :class:`PredictionLog`, a sink that queues records and
writes them to a :class:`~lendml.serving._predlog_base.LogStore` from a background thread,
spooling to local disk what the store cannot take. See :mod:`lendml.serving.prediction_log`
for the guarantees and the functions that build it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from lendml.errors import ConfigError
from lendml.serving._predlog_base import (
    LogStore,
    Row,
    as_utc,
    encode,
    new_batch_id,
    rows_to_table,
    to_frame,
)
from lendml.serving._predlog_spool import Spool
from lendml.serving.records import PredictionRecord, PredictionSink

# The public module's name: operators filter on one logger for the whole prediction log.
log = logging.getLogger("lendml.serving.prediction_log")

TimeLike = datetime | date | str | pd.Timestamp

_PRUNE_EVERY = 24 * 3600.0


@dataclass(frozen=True)
class LogStats:
    """Counters of one :class:`PredictionLog` since it was opened.

    ``accepted`` records were submitted; ``written`` reached the store (fresh or replayed);
    ``spooled`` went to the spool (store down or queue full); ``replayed`` were written
    from the spool; ``lost`` could be neither written nor spooled (the spool's disk
    failed too); ``store_failures`` counts failed store writes; ``spool_files`` is the
    number of batches waiting now; ``last_error`` the last store failure (class and first
    line, never a record's values).
    """

    accepted: int
    written: int
    spooled: int
    replayed: int
    lost: int
    store_failures: int
    spool_files: int
    last_error: str | None


@dataclass(frozen=True)
class ErasureReport:
    """What :func:`erase_prediction_log` removed: records in the store and in the spool."""

    key: str
    store: int
    spool: int

    @property
    def total(self) -> int:
        return self.store + self.spool


class _Flush:
    __slots__ = ("drain", "event")

    def __init__(self, drain: bool) -> None:
        self.drain = drain
        self.event = threading.Event()


_STOP = object()


def _describe(exc: BaseException) -> str:
    """An exception as ``Class: first line`` for logs. Store errors (connection refused,
    missing table, a path that is not a folder) name no record values."""
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class PredictionLog(PredictionSink):
    """A :class:`~lendml.serving.records.PredictionSink` that writes records to a
    :class:`LogStore` from a background thread, spooling to local disk what the store
    cannot take (see the module docstring).

    Use :func:`open_prediction_log` to build one from ``lendml.yaml`` settings.

    Parameters
    ----------
    store
        Where records go.
    spool
        The spool folder (made when first needed).
    queue_size
        Records the in-memory queue holds before ``submit`` spills to the spool.
    batch_rows, batch_seconds
        A batch is written when it has ``batch_rows`` records or its first record has
        waited ``batch_seconds``.
    spill_rows
        Records per spool file when the queue is full.
    retry_initial_seconds, retry_max_seconds
        The backoff between attempts while the store fails.
    retention_days
        If set, records older than this are pruned when the writer starts and daily.
    clock
        Returns the current UTC time (for retention).
    start
        Start the writer thread now (a log opened with ``start=False`` only reads,
        erases and prunes).
    """

    def __init__(
        self,
        store: LogStore,
        spool: str | os.PathLike[str],
        *,
        queue_size: int = 10_000,
        batch_rows: int = 10_000,
        batch_seconds: float = 60.0,
        spill_rows: int = 500,
        retry_initial_seconds: float = 0.5,
        retry_max_seconds: float = 30.0,
        retention_days: int | None = None,
        clock: Callable[[], datetime] | None = None,
        start: bool = True,
    ) -> None:
        for name, value in (
            ("queue_size", queue_size),
            ("batch_rows", batch_rows),
            ("spill_rows", spill_rows),
        ):
            if value < 1:
                raise ConfigError(f"PredictionLog {name} must be at least 1, got {value!r}.")
        self.store = store
        self.spool = Spool(Path(spool))
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self.spill_rows = spill_rows
        self.retry_initial = retry_initial_seconds
        self.retry_max = max(retry_max_seconds, retry_initial_seconds)
        self.retention_days = retention_days
        self._clock = clock or (lambda: datetime.now(UTC))

        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._count_lock = threading.Lock()
        self._accepted_n = 0
        self._lock = threading.Lock()  # buffer, in-flight batch, counters
        self._buffer: list[Row] = []
        self._buffer_since: float | None = None
        self._inflight: tuple[str, pa.Table] | None = None
        self._overflow: list[PredictionRecord] = []
        self._overflow_since: float | None = None
        self._overflow_lock = threading.Lock()
        self._drain_waiters: list[_Flush] = []
        self._counts = dict.fromkeys(
            ("written", "spooled", "replayed", "lost", "store_failures"), 0
        )
        self._last_error: str | None = None
        self._delay = retry_initial_seconds
        self._retry_at = 0.0
        self._next_prune = 0.0
        self._closed = False
        self._abandoned = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if start:
            self._thread = threading.Thread(
                target=self._run, name="lendml-prediction-log", daemon=True
            )
            self._thread.start()
            ref = weakref.ref(self)
            self._atexit = lambda: (lambda s: s and s.close(timeout=30))(ref())
            atexit.register(self._atexit)

    # ------------------------------------------------------------------ request path
    def submit(self, record: PredictionRecord) -> None:
        """Accept one record; never blocks on the store and never raises because of it.

        The record is queued for the writer thread; if the queue is full (or the log is
        closed) it goes to the spool instead.
        """
        if not isinstance(record, PredictionRecord):
            raise TypeError(f"submit takes a PredictionRecord, got {type(record).__name__}")
        with self._count_lock:
            self._accepted_n += 1
        if self._closed or self._thread is None:
            self._spill(record, force=True)
            return
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self._spill(record)

    def _spill(self, record: PredictionRecord | None, *, force: bool = False) -> None:
        """Keep ``record`` for the spool; write a spool file once ``spill_rows`` wait."""
        with self._overflow_lock:
            if record is not None:
                if not self._overflow:
                    self._overflow_since = time.monotonic()
                self._overflow.append(record)
            if not self._overflow or (len(self._overflow) < self.spill_rows and not force):
                return
            records, self._overflow, self._overflow_since = self._overflow, [], None
        self._spool_rows(self._encode_many(records))

    def _encode_many(self, records: list[PredictionRecord]) -> list[Row]:
        """Encode ``records``; one that cannot be encoded (a caller's bug, e.g. a score
        of ``None``) is counted as lost and logged, never raised into the request."""
        rows = []
        for record in records:
            try:
                rows.append(self._encode(record))
            except Exception as exc:
                with self._lock:
                    self._counts["lost"] += 1
                log.error("prediction log: a record could not be encoded (%s)", type(exc).__name__)
        return rows

    # ------------------------------------------------------------------ public API
    def flush(self, timeout: float | None = None, *, drain_spool: bool = False) -> bool:
        """Wait until every record submitted so far is in the store or the spool.

        Parameters
        ----------
        timeout
            Seconds to wait at most (``None``: as long as it takes).
        drain_spool
            Also wait until the spool is empty, i.e. everything reached the store (retrying
            now rather than after the backoff).

        Returns
        -------
        bool
            Whether that happened within ``timeout``.
        """
        if self._thread is None or not self._thread.is_alive():
            self._spill(None, force=True)
            return not drain_spool or not self.spool.files()
        request = _Flush(drain_spool)
        try:
            self._queue.put(request, timeout=timeout)
        except queue.Full:
            return False
        return request.event.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Write (or spool) every record accepted so far, then stop the writer.

        If the writer does not finish within ``timeout`` seconds (a store that hangs), what
        it holds goes to the spool from this thread; a later replay will not duplicate it.
        The spool's backlog is not replayed here: the next :func:`open_prediction_log` on
        the same spool does it.
        """
        if self._closed:
            return
        self._closed = True
        if hasattr(self, "_atexit"):
            atexit.unregister(self._atexit)
        thread = self._thread
        if thread is not None:
            self._stop.set()
            # A full queue: the writer sees the event once it has drained the queue.
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_STOP)
            thread.join(timeout)
            if thread.is_alive():
                self._abandon()
                self._spill(None, force=True)
                return  # the store is busy in the stuck writer: leave its connection be
        self._spill(None, force=True)
        self.store.close()

    def stats(self) -> LogStats:
        """The counters (see :class:`LogStats`)."""
        with self._lock:
            counts = dict(self._counts)
            last = self._last_error
        return LogStats(
            accepted=self._accepted_n,
            spool_files=len(self.spool.files()),
            last_error=last,
            **counts,
        )

    def read(
        self,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        model: str | None = None,
        last: int | None = None,
        flatten: bool = True,
    ) -> pd.DataFrame:
        """The records in the store; see :func:`read_prediction_log`."""
        if last is not None and last < 0:
            raise ConfigError(f"last must be a number of records (0 or more), got {last!r}.")
        return to_frame(
            self.store.read(
                None if start is None else as_utc(start, what="start"),
                None if end is None else as_utc(end, what="end"),
                model=model,
                last=last,
            ),
            flatten=flatten,
        )

    def erase(self, key: str, value: Any) -> ErasureReport:
        """Remove entity ``key == value``'s records from the store and the spool.

        Records submitted before the call are flushed first, so they are erased too.
        See :func:`erase_prediction_log`.
        """
        if self._thread is not None and self._thread.is_alive():
            self.flush()
        else:
            self._spill(None, force=True)
        with self.spool.locked():
            # The store first: if it cannot be reached, nothing has changed yet.
            in_store = self.store.erase(key, value)
            in_spool = self.spool.erase(key, value)
        log.info("prediction log: erased %d records by entity key %r", in_store + in_spool, key)
        return ErasureReport(key=key, store=in_store, spool=in_spool)

    def prune(self, before: TimeLike | None = None) -> int:
        """Delete records older than ``before`` (default: ``retention_days`` ago) from
        the store and the spool; return how many."""
        if before is None:
            if self.retention_days is None:
                raise ConfigError(
                    "No retention period is set: give a cutoff (`before=`, or --before 2026-01-01 "
                    "on the command line) or "
                    "set prediction_log.retention_days in lendml.yaml."
                )
            cutoff = self._clock() - timedelta(days=self.retention_days)
        else:
            cutoff = as_utc(before, what="before")
        with self.spool.locked():
            removed = self.spool.prune(cutoff) + self.store.prune(cutoff)
        log.info("prediction log: pruned %d records older than %s", removed, cutoff.isoformat())
        return removed

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        self.spool.remove_stale_temporaries()
        if leftover := len(self.spool.files()):
            log.info(
                "prediction log: %d spooled batches from an earlier run will be replayed",
                leftover,
            )
        while True:
            try:
                if self._step():
                    break
            except Exception as exc:  # the writer must outlive any bug in one step
                log.exception("prediction log: writer step failed (%s)", type(exc).__name__)
                time.sleep(min(self.retry_max, 1.0))
            if self._abandoned:
                return

    def _wait_seconds(self) -> float:
        now = time.monotonic()
        waits = [1.0]
        if self._buffer_since is not None:
            waits.append(self._buffer_since + self.batch_seconds - now)
        if self._overflow_since is not None:
            waits.append(self._overflow_since + self.batch_seconds - now)
        if self.spool.files() or self._drain_waiters:
            waits.append(self._retry_at - now)
        return max(0.0, min(waits))

    def _step(self) -> bool:
        """One turn of the writer; True when it is time to stop."""
        item: Any = None
        with contextlib.suppress(queue.Empty):
            item = self._queue.get(timeout=self._wait_seconds())
        stop = self._stop.is_set()
        flushes: list[_Flush] = []
        taken = 0
        # One record at a time off the queue: apart from the batch being written, every
        # accepted record is always in the queue, the buffer or the spool.
        while item is not None:
            if item is _STOP:
                stop = True
            elif isinstance(item, _Flush):
                flushes.append(item)
            else:
                self._add(item)
            taken += 1
            if taken >= 2 * self.batch_rows and not stop:
                break  # a turn's worth; after close() everything is drained
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                item = None
        if self._buffer and (
            flushes
            or stop
            or (
                self._buffer_since is not None
                and time.monotonic() - self._buffer_since >= self.batch_seconds
            )
        ):
            self._write_buffer()
        with self._overflow_lock:
            since = self._overflow_since
        if (
            flushes
            or stop
            or (since is not None and time.monotonic() - since >= self.batch_seconds)
        ):
            self._spill(None, force=True)
        if stop:
            for f in flushes + self._drain_waiters:
                f.event.set()
            return True
        if any(f.drain for f in flushes):
            self._retry_at = 0.0  # asked to drain: try the store now
        self._replay()
        self._drain_waiters.extend(f for f in flushes if f.drain)
        for f in flushes:
            if not f.drain:
                f.event.set()
        if self._drain_waiters and not self.spool.files():
            for f in self._drain_waiters:
                f.event.set()
            self._drain_waiters.clear()
        self._maybe_prune()
        return False

    def _encode(self, record: PredictionRecord) -> Row:
        return encode(record)

    def _add(self, record: PredictionRecord) -> None:
        encoded = self._encode_many([record])
        if not encoded:
            return
        row = encoded[0]
        with self._lock:
            abandoned = self._abandoned
            if not abandoned:
                if not self._buffer:
                    self._buffer_since = time.monotonic()
                self._buffer.append(row)
            full = len(self._buffer) >= self.batch_rows
        if abandoned:  # close() gave up on this thread: keep the record on disk
            self._spool_rows([row])
        elif full:
            self._write_buffer()

    def _write_buffer(self) -> None:
        with self._lock:
            rows, self._buffer, self._buffer_since = self._buffer, [], None
            if not rows:
                return
            try:
                batch = (new_batch_id(), rows_to_table(rows))
            except Exception as exc:  # encode() checks every value; this is a last guard
                self._counts["lost"] += len(rows)
                log.error(
                    "prediction log: %d records lost: they could not form a batch (%s)",
                    len(rows),
                    type(exc).__name__,
                )
                return
            self._inflight = batch
        try:
            backlog = time.monotonic() < self._retry_at or bool(self.spool.files())
            if backlog:  # keep the store's order: this batch waits behind the backlog
                self._spool_table(*batch)
            else:
                self._write_or_spool(*batch)
        finally:
            with self._lock:
                self._inflight = None

    def _write_or_spool(self, batch_id: str, table: pa.Table) -> None:
        try:
            with self.spool.locked():
                written = self.store.write_batch(table, batch_id=batch_id)
        except Exception as exc:
            self._failed(exc, table.num_rows)
            if not self._abandoned:
                self._spool_table(batch_id, table)
            return
        self._succeeded()
        with self._lock:
            self._counts["written"] += written

    def _replay(self) -> None:
        """Write spooled batches to the store, oldest first, while it takes them."""
        if time.monotonic() < self._retry_at:
            return
        for path in self.spool.files():
            if self._stop.is_set() or self._abandoned:
                return
            try:
                with self.spool.locked():
                    try:
                        table = self.spool.read(path)
                    except FileNotFoundError:  # another process replayed or erased it
                        continue
                    except (OSError, pa.ArrowException) as exc:
                        # A damaged file must not hold the backlog behind it forever.
                        moved = self.spool.quarantine(path)
                        log.error(
                            "prediction log: the spooled batch %s cannot be read (%s); moved "
                            "to %s for inspection, the rest of the spool goes on",
                            path.name,
                            type(exc).__name__,
                            moved,
                        )
                        continue
                    written = (
                        self.store.write_batch(table, batch_id=self.spool.batch_id(path))
                        if table.num_rows
                        else 0
                    )
                    self.spool.remove(path)
            except Exception as exc:
                self._failed(exc, None)
                return
            self._succeeded()
            with self._lock:
                self._counts["written"] += written
                self._counts["replayed"] += written
            if self._queue.qsize() > self._queue.maxsize // 2:
                return  # let the writer take new records before the next batch

    def _failed(self, exc: BaseException, rows: int | None) -> None:
        with self._lock:
            self._counts["store_failures"] += 1
            self._last_error = _describe(exc)
        delay = self._delay
        self._retry_at = time.monotonic() + delay
        self._delay = min(delay * 2, self.retry_max)
        what = f"a batch of {rows} records goes" if rows is not None else "the backlog stays"
        log.warning(
            "prediction log: %s failed (%s); %s to the spool %s, retrying in %.1f s",
            self.store.description,
            self._last_error,
            what,
            self.spool.folder,
            delay,
        )

    def _succeeded(self) -> None:
        if self._delay != self.retry_initial:
            log.info("prediction log: %s is back", self.store.description)
        self._delay = self.retry_initial
        self._retry_at = 0.0

    def _spool_rows(self, rows: list[Row]) -> None:
        if rows:
            self._spool_table(new_batch_id(), rows_to_table(rows))

    def _spool_table(self, batch_id: str, table: pa.Table) -> None:
        try:
            self.spool.write(table, batch_id=batch_id)
        except Exception as exc:
            with self._lock:
                self._counts["lost"] += table.num_rows
            log.error(
                "prediction log: %d records lost: neither the store nor the spool %s took "
                "them (%s); free the spool's disk or fix its permissions",
                table.num_rows,
                self.spool.folder,
                _describe(exc),
            )
            return
        with self._lock:
            self._counts["spooled"] += table.num_rows

    def _maybe_prune(self) -> None:
        if self.retention_days is None or time.monotonic() < self._next_prune:
            return
        try:
            self.prune()
        except Exception as exc:
            log.warning("prediction log: pruning failed (%s); trying again later", _describe(exc))
            self._next_prune = time.monotonic() + self.retry_max
        else:
            self._next_prune = time.monotonic() + _PRUNE_EVERY

    def _abandon(self) -> None:
        """The writer is stuck (close timed out): spool what it holds from this thread."""
        with self._lock:
            self._abandoned = True
            inflight, self._inflight = self._inflight, None
            rows, self._buffer = self._buffer, []
        if inflight is not None:  # the same batch id: a replay cannot duplicate it
            self._spool_table(*inflight)
        pending: list[Row] = list(rows)
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, PredictionRecord):
                pending.extend(self._encode_many([item]))
            elif isinstance(item, _Flush):
                item.event.set()
        self._spool_rows(pending)
        log.warning(
            "prediction log: the writer did not stop in time (%s hangs?); its records were "
            "spooled to %s",
            self.store.description,
            self.spool.folder,
        )
