from __future__ import annotations

import pytest

from .deployments import Deployment, start_deployment
from .redis_servers import RedisServer, start_redis

DEPLOYMENTS = ["standalone", "cluster", "tls", "sentinel", "acl", "unix"]


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


@pytest.fixture(scope="session")
def started_deployments(tmp_path_factory):
    """Deployments started on first use and stopped at the end of the session."""
    started: dict[str, Deployment] = {}

    def get(name: str) -> Deployment:
        if name not in started:
            started[name] = start_deployment(name, tmp_path_factory.mktemp(name))
        return started[name]

    yield get
    for deployment in started.values():
        deployment.stop()


@pytest.fixture(params=DEPLOYMENTS)
def deployment(request, started_deployments) -> Deployment:
    """Each Redis deployment in turn, emptied before the test."""
    chosen = started_deployments(request.param)
    chosen.flush()
    return chosen
