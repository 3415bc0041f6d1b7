"""The online-store protocol.

A store keeps, per feature view and entity key, the latest feature values and the as-of
time they were computed for. Writes of one batch are atomic, and a value never replaces
a newer one (an old backfill cannot overwrite fresh values).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lendml.errors import ConfigError


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


def create_online_store(kind: str, **options: Any) -> OnlineStore:
    """Create a store by type name: ``sqlite`` (default)."""
    if kind == "sqlite":
        from lendml.stores.sqlite import SQLiteOnlineStore

        return SQLiteOnlineStore(**options)
    raise ConfigError(f"Online store type {kind!r} is not available in this version: use 'sqlite'.")
