"""The loop's state on disk: a crash-safe lock, content-addressed step outputs, the audit log.

Layout under ``loop.state`` (default ``data/loop``)::

    loop.lock              held with flock while a pass runs; the kernel releases it when
                           the process dies, so a crash never leaves it stuck
    steps/<step>-<key>.json
                           one finished step: ``key`` is the sha256 of the step's inputs, so
                           a pass that is run again (after a kill, or by cron twice) reads
                           its finished steps back instead of redoing them
    audit.jsonl            one JSON object per line, append-only: every decision with its
                           evidence; each entry has an ``id`` and is written once

Writes are atomic (temporary file, fsync, rename) for step outputs and a single
``O_APPEND`` write plus fsync per audit entry; a torn last line (power cut mid-write) is
skipped on read, never fatal, and ended with a newline before the next entry is appended.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lendml.errors import LoopBusy, StoreError


def content_key(*parts: Any) -> str:
    """sha256 (first 16 hex digits) of the JSON of ``parts``: a step's input address."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        # A failed write (disk full, interrupt) leaves the old record and no half file.
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class LoopState:
    """The lock, the step outputs and the audit log of one project's loop."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.steps = self.root / "steps"
        self.audit_path = self.root / "audit.jsonl"
        self.lock_path = self.root / "loop.lock"

    def _ensure(self) -> None:
        self.steps.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ lock

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the loop lock for the body, or raise :class:`LoopBusy` at once."""
        self._ensure()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
                raise LoopBusy(
                    f"Another loop pass is running ({holder}); one pass runs at a time. "
                    "Wait for it to finish (the lock is released when its process ends, "
                    "even by a crash).",
                    lock=str(self.lock_path),
                ) from None
            stamp = f"pid {os.getpid()} on {socket.gethostname()} since {_now()}"
            os.ftruncate(fd, 0)
            os.pwrite(fd, stamp.encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ steps

    def step_path(self, step: str, key: str) -> Path:
        return self.steps / f"{step}-{key}.json"

    def read_step(self, step: str, key: str) -> dict[str, Any] | None:
        """The recorded output of a finished step, or None when it has not finished."""
        path = self.step_path(step, key)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"The loop step record {path} cannot be read ({exc}); delete it to redo the step.",
                path=str(path),
            ) from exc

    def write_step(self, step: str, key: str, output: dict[str, Any]) -> None:
        self._ensure()
        _atomic_write(self.step_path(step, key), json.dumps(output, indent=2, default=str))

    # ------------------------------------------------------------------ audit

    def audit(self, entry: dict[str, Any]) -> bool:
        """Append ``entry`` (which has an ``id``) unless an entry with that id exists.

        Returns whether it was written. Appends are one ``write`` on an ``O_APPEND``
        descriptor followed by fsync, so concurrent readers see whole lines.
        """
        if "id" not in entry:
            raise ValueError("an audit entry needs an 'id'")
        if any(e.get("id") == entry["id"] for e in self.history()):
            return False
        self._ensure()
        line = json.dumps({"recorded_at": _now(), **entry}, default=str) + "\n"
        fd = os.open(self.audit_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            # After a torn write the file does not end in a newline: end that line first,
            # or this entry would be glued onto it and skipped with it on every read.
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = "\n" + line
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def history(self) -> list[dict[str, Any]]:
        """Every audit entry, oldest first (a torn last line is skipped)."""
        if not self.audit_path.exists():
            return []
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for line in self.audit_path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # torn write: the entry was never complete
            if isinstance(entry, dict) and entry.get("id") not in seen:
                seen.add(entry.get("id"))
                out.append(entry)
        return out


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


__all__ = ["LoopState", "content_key"]
