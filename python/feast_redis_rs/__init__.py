"""A fast, byte-compatible Redis online store for Feast, with a Rust core.

In ``feature_store.yaml``, ``type: redis`` becomes ``type: feast_redis_rs.RedisOnlineStore``;
``batch_engine: {type: feast_redis_rs.RedisComputeEngine}`` materializes from Arrow and
``provider: feast_redis_rs.RedisProvider`` takes ``push`` / ``write_to_online_store`` the
same way; ``feast_redis_rs.RedisRayComputeEngine`` and
``feast_redis_rs.RedisSparkComputeEngine`` are Feast's Ray and Spark engines writing the
same way from their workers.

The classes are imported on first use, so ``import feast_redis_rs.encoding`` loads
neither the store nor Feast's compute engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from feast_redis_rs._native import BUILD_PROFILE, __version__

if TYPE_CHECKING:
    from feast_redis_rs.compute_engine import RedisComputeEngine, RedisComputeEngineConfig
    from feast_redis_rs.config import RedisOnlineStoreConfig
    from feast_redis_rs.errors import (
        RedisAuthenticationError,
        RedisConnectionError,
        RedisProtocolError,
        RedisResponseError,
        RedisTimeoutError,
    )
    from feast_redis_rs.online_store import RedisOnlineStore
    from feast_redis_rs.provider import RedisProvider
    from feast_redis_rs.ray_engine import RedisRayComputeEngine, RedisRayComputeEngineConfig
    from feast_redis_rs.spark_engine import (
        RedisSparkComputeEngine,
        RedisSparkComputeEngineConfig,
    )

_MODULE_OF = {
    "RedisComputeEngine": "compute_engine",
    "RedisComputeEngineConfig": "compute_engine",
    "RedisOnlineStore": "online_store",
    "RedisOnlineStoreConfig": "config",
    "RedisProvider": "provider",
    "RedisRayComputeEngine": "ray_engine",
    "RedisRayComputeEngineConfig": "ray_engine",
    "RedisSparkComputeEngine": "spark_engine",
    "RedisSparkComputeEngineConfig": "spark_engine",
    "RedisAuthenticationError": "errors",
    "RedisConnectionError": "errors",
    "RedisProtocolError": "errors",
    "RedisResponseError": "errors",
    "RedisTimeoutError": "errors",
}

__all__ = [
    "BUILD_PROFILE",
    "RedisAuthenticationError",
    "RedisComputeEngine",
    "RedisComputeEngineConfig",
    "RedisConnectionError",
    "RedisOnlineStore",
    "RedisOnlineStoreConfig",
    "RedisProtocolError",
    "RedisProvider",
    "RedisRayComputeEngine",
    "RedisRayComputeEngineConfig",
    "RedisResponseError",
    "RedisSparkComputeEngine",
    "RedisSparkComputeEngineConfig",
    "RedisTimeoutError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'feast_redis_rs' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"feast_redis_rs.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULE_OF])
