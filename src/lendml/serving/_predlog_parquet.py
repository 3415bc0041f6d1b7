"""The default prediction-log store: Parquet files, one folder per UTC date.

Layout: ``<path>/date=YYYY-MM-DD/part-<batch id>.parquet``. A batch that spans midnight
becomes one file per date. Every file is written under a temporary name (``.part-*.tmp``,
which readers skip), flushed to disk and renamed; erasure and pruning rewrite a file the
same way. A file's name comes from its batch id, so a replayed batch whose file already
exists is not written again.
"""

from __future__ import annotations

import contextlib
import os
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from lendml.errors import StoreError
from lendml.serving._predlog_base import (
    SCHEMA,
    LogStore,
    concat,
    conform,
    empty_table,
    entity_mask,
    time_filter,
)
from lendml.serving._predlog_spool import write_atomic

TIME = SCHEMA.field("time").type
_PREFIX = "date="
_READ_ATTEMPTS = 5


class ParquetLogStore(LogStore):
    """Prediction-log records as Parquet files under ``path`` (see the module docstring).

    Parameters
    ----------
    path
        The log's folder; made on the first write.
    compression
        The Parquet codec.
    """

    def __init__(self, path: str | os.PathLike[str], *, compression: str = "zstd") -> None:
        self.path = Path(path)
        self.compression = compression
        self.description = f"Parquet files in {self.path}"

    # -- writing
    def write_batch(self, table: pa.Table, *, batch_id: str) -> int:
        table = conform(table)
        if table.num_rows == 0:
            return 0
        days = pc.strftime(table["time"], format="%Y-%m-%d")
        written = 0
        for day in sorted(pc.unique(days).to_pylist()):
            part = table.filter(pc.equal(days, day))
            folder = self.path / f"{_PREFIX}{day}"
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"part-{batch_id}.parquet"
            if target.exists():  # a replay of a batch already written
                continue
            self._write_file(part, target)
            written += part.num_rows
        return written

    def _write_file(self, table: pa.Table, target: Path) -> None:
        write_atomic(target, lambda fh: pq.write_table(table, fh, compression=self.compression))

    # -- reading
    def _partitions(self) -> list[tuple[date, Path]]:
        if not self.path.exists():
            return []
        if not self.path.is_dir():
            raise StoreError(
                f"The prediction log path {str(self.path)!r} is not a folder; move the file "
                f"away or point prediction_log.path elsewhere.",
                path=str(self.path),
            )
        out = []
        for entry in os.scandir(self.path):
            if entry.is_dir() and entry.name.startswith(_PREFIX):
                with contextlib.suppress(ValueError):  # a foreign folder: not ours
                    out.append((date.fromisoformat(entry.name[len(_PREFIX) :]), Path(entry.path)))
        return sorted(out)

    def _files(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> list[tuple[date, Path]]:
        files = []
        for day, folder in self._partitions():
            if start is not None and day < start.date():
                continue
            if end is not None and day > end.date():
                continue
            files.extend((day, path) for path in self._folder_files(folder))
        return files

    @staticmethod
    def _folder_files(folder: Path) -> list[Path]:
        try:
            names = os.listdir(folder)
        except FileNotFoundError:  # pruned by another process meanwhile
            return []
        return [
            folder / n for n in sorted(names) if n.startswith("part-") and n.endswith(".parquet")
        ]

    def read(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        model: str | None = None,
        last: int | None = None,
    ) -> pa.Table:
        files = self._files(start, end)
        if last is None:
            return self._read_files([p for _, p in files], start, end, model)
        # The newest records first: read whole days backwards until there are enough.
        days = sorted({day for day, _ in files}, reverse=True)
        table = empty_table()
        for k in range(1, len(days) + 1):
            chosen = [p for day, p in files if day in days[:k]]
            table = self._read_files(chosen, start, end, model)
            if table.num_rows >= last:
                break
        return table.slice(max(table.num_rows - last, 0))

    def _read_files(
        self,
        paths: list[Path],
        start: datetime | None,
        end: datetime | None,
        model: str | None,
    ) -> pa.Table:
        expr = None if model is None else ds.field("model") == model
        table = empty_table()
        for attempt in range(_READ_ATTEMPTS):
            if attempt:  # pruning or erasure deleted a file after it was listed
                wanted = set(paths)
                paths = [p for _, p in self._files(start, end) if p in wanted]
            if not paths:
                return empty_table()
            try:
                dataset = ds.dataset([str(p) for p in paths], format="parquet", schema=SCHEMA)
                table = dataset.to_table(filter=expr)
                break
            except FileNotFoundError:
                if attempt == _READ_ATTEMPTS - 1:
                    raise
        table = time_filter(table, start, end)
        if table.num_rows == 0:
            return empty_table()
        # Stable: records of one time keep the order in which they were written.
        return concat([table.take(pc.sort_indices(table, [("time", "ascending")]))])

    # -- personal data
    def erase(self, key: str, value: Any) -> int:
        removed = 0
        for _, path in self._files():
            table = self._read_file(path)
            if table is None:
                continue
            mask = entity_mask(table, key, value)
            hits = pc.sum(mask).as_py() or 0
            if hits:
                self._replace(path, table.filter(pc.invert(mask)))
                removed += hits
        return removed

    def prune(self, before: datetime) -> int:
        removed = 0
        for day, folder in self._partitions():
            if day > before.date():
                break
            for path in self._folder_files(folder):
                if day < before.date():  # the whole day is older: no need to read rows
                    with contextlib.suppress(FileNotFoundError):
                        removed += pq.read_metadata(path).num_rows
                        path.unlink()
                    continue
                table = self._read_file(path)
                if table is None:
                    continue
                kept = time_filter(table, before, None)
                if kept.num_rows < table.num_rows:
                    removed += table.num_rows - kept.num_rows
                    self._replace(path, kept)
            with contextlib.suppress(OSError):  # not empty (or gone): kept as it is
                folder.rmdir()
        return removed

    def _read_file(self, path: Path) -> pa.Table | None:
        try:
            return pq.read_table(path, schema=SCHEMA)
        except FileNotFoundError:  # erased or pruned by another process meanwhile
            return None

    def _replace(self, path: Path, kept: pa.Table) -> None:
        """Rewrite ``path`` with only ``kept`` (atomically); delete it when nothing is left."""
        if kept.num_rows == 0:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        else:
            self._write_file(kept, path)
