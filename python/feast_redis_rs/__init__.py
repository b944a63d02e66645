"""A fast, byte-compatible Redis online store for Feast, with a Rust core.

In ``feature_store.yaml``, ``type: redis`` becomes ``type: feast_redis_rs.RedisOnlineStore``;
``batch_engine: {type: feast_redis_rs.RedisComputeEngine}`` materializes from Arrow.
"""

from feast_redis_rs._native import __version__
from feast_redis_rs.compute_engine import RedisComputeEngine, RedisComputeEngineConfig
from feast_redis_rs.online_store import RedisOnlineStore, RedisOnlineStoreConfig

__all__ = [
    "RedisComputeEngine",
    "RedisComputeEngineConfig",
    "RedisOnlineStore",
    "RedisOnlineStoreConfig",
    "__version__",
]
