"""A fast, byte-compatible Redis online store for Feast, with a Rust core.

In ``feature_store.yaml``, ``type: redis`` becomes ``type: feast_redis_rs.RedisOnlineStore``.
"""

from feast_redis_rs._native import __version__
from feast_redis_rs.online_store import RedisOnlineStore, RedisOnlineStoreConfig

__all__ = ["RedisOnlineStore", "RedisOnlineStoreConfig", "__version__"]
