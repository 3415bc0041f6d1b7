"""Offline engines: DuckDB (embedded default) and Spark (scale), behind one protocol."""

from lendml.engines.base import EngineCapabilities, OfflineEngine, create_engine

__all__ = ["EngineCapabilities", "OfflineEngine", "create_engine"]
