"""A fast, byte-compatible Redis online store for Feast, with a Rust core."""

from feast_redis_rs._native import __version__

__all__ = ["__version__"]
