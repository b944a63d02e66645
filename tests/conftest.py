from __future__ import annotations

import pytest

from .redis_servers import RedisServer, start_redis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> RedisServer:
    """One standalone server for the session; tests that use it start from an empty db."""
    server = start_redis(tmp_path_factory.mktemp("redis-standalone"))
    yield server
    server.stop()


@pytest.fixture
def redis_db(redis_server):
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()
