"""Online stores behind one narrow protocol: ``write_batch`` / ``read_many``."""

from lendml.stores.base import OnlineRecord, OnlineStore, create_online_store

__all__ = ["OnlineRecord", "OnlineStore", "create_online_store"]
