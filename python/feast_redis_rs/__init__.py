"""A fast, byte-compatible Redis online store for Feast, with a Rust core.

In ``feature_store.yaml``, ``type: redis`` becomes ``type: feast_redis_rs.RedisOnlineStore``;
``batch_engine: {type: feast_redis_rs.RedisComputeEngine}`` materializes from Arrow and
``provider: feast_redis_rs.RedisProvider`` takes ``push`` / ``write_to_online_store`` the
same way.
"""

from feast_redis_rs._native import __version__
from feast_redis_rs.compute_engine import RedisComputeEngine, RedisComputeEngineConfig
from feast_redis_rs.online_store import RedisOnlineStore, RedisOnlineStoreConfig
from feast_redis_rs.provider import RedisProvider

__all__ = [
    "RedisComputeEngine",
    "RedisComputeEngineConfig",
    "RedisOnlineStore",
    "RedisOnlineStoreConfig",
    "RedisProvider",
    "__version__",
]
