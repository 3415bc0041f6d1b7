"""The prediction log's local spool: batches that could not reach the store yet.

Each batch is one Arrow IPC file named ``<batch id>.arrow`` (ids sort by creation time,
so the folder lists in order), written under a temporary name, flushed to disk and then
renamed: a reader sees a whole batch or none. A batch is deleted only after the store
has taken it. The folder's ``.lock`` file (``flock``) keeps erasure, pruning and replays
of several threads and processes from interleaving.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from lendml.serving._predlog_base import SCHEMA, conform, entity_mask

TIME = SCHEMA.field("time").type

SUFFIX = ".arrow"
QUARANTINE = "unreadable"
log = logging.getLogger("lendml.serving.prediction_log")
_STALE_TMP_SECONDS = 3600.0


def write_atomic(path: Path, write: Any) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, flush it to disk, then
    rename it to ``path`` (readers see the old file or the new one, never half of one)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class Spool:
    """A folder of batches waiting for the store (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._unusable = False  # warned once that the folder cannot be listed

    # -- writing and reading
    def write(self, table: pa.Table, *, batch_id: str) -> Path:
        """Keep ``table`` as the batch ``batch_id``; atomic. Raises ``OSError``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{batch_id}{SUFFIX}"
        table = conform(table)

        def dump(fh: Any) -> None:
            with ipc.new_file(fh, SCHEMA) as writer:
                writer.write_table(table)

        write_atomic(path, dump)
        return path

    def files(self) -> list[Path]:
        """The spooled batches, oldest first."""
        try:
            names = [
                e.name
                for e in os.scandir(self.folder)
                if e.name.endswith(SUFFIX) and not e.name.startswith(".")
            ]
        except FileNotFoundError:
            return []
        except OSError as exc:  # an unusable spool holds nothing that can be replayed
            if not self._unusable:
                log.warning("prediction log: the spool %s cannot be listed (%s)", self.folder, exc)
            self._unusable = True
            return []
        self._unusable = False
        return [self.folder / n for n in sorted(names)]

    def read(self, path: Path) -> pa.Table:
        """The batch in ``path``. Raises ``FileNotFoundError`` if another process took it."""
        with pa.OSFile(str(path), "rb") as fh:
            return conform(ipc.open_file(fh).read_all())

    @staticmethod
    def batch_id(path: Path) -> str:
        return path.name[: -len(SUFFIX)]

    def remove(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def quarantine(self, path: Path) -> Path:
        """Move a batch that cannot be read to ``unreadable/`` (out of the replay order,
        kept for inspection); return its new path."""
        target = self.folder / QUARANTINE / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        return target

    def records(self) -> int:
        """How many records wait in the spool."""
        total = 0
        for path in self.files():
            with contextlib.suppress(FileNotFoundError):
                total += self.read(path).num_rows
        return total

    def remove_stale_temporaries(self, older_than: float = _STALE_TMP_SECONDS) -> int:
        """Delete temporary files a crashed writer left (old enough to be no one's)."""
        removed = 0
        try:
            entries = list(os.scandir(self.folder))
        except OSError:  # missing or unusable: nothing to clean
            return 0
        now = time.time()
        for e in entries:
            if e.name.startswith(".") and e.name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    if now - e.stat().st_mtime > older_than:
                        os.unlink(e.path)
                        removed += 1
        return removed

    # -- personal data
    def erase(self, key: str, value: Any) -> int:
        """Remove the records of entity ``key == value`` from every batch (each file
        rewritten atomically); return how many. Call under :meth:`locked`."""
        return self._rewrite(lambda t: pc.invert(entity_mask(t, key, value)))

    def prune(self, before: datetime) -> int:
        """Remove the records older than ``before``; return how many. Call under :meth:`locked`."""
        return self._rewrite(lambda t: pc.greater_equal(t["time"], pa.scalar(before, TIME)))

    def _rewrite(self, keep_mask: Any) -> int:
        removed = 0
        for path in self.files():
            try:
                table = self.read(path)
            except FileNotFoundError:
                continue
            kept = table.filter(keep_mask(table))
            if kept.num_rows == table.num_rows:
                continue
            removed += table.num_rows - kept.num_rows
            if kept.num_rows == 0:
                self.remove(path)
            else:
                self.write(kept, batch_id=self.batch_id(path))
        return removed

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the spool's lock (across threads and processes) for the block."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # A new open file description per holder: flock then excludes threads too.
            fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            # No usable spool folder: it holds no batch to protect, and store writes must
            # not stop because the spool's disk failed.
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock
