from __future__ import annotations

import pytest

from feast_redis_rs.config import NearCacheConfig, RedisOnlineStoreConfig

from .deployments import Deployment, start_deployment
from .feature_servers import NEAR_CACHE_ON
from .redis_servers import RedisServer, start_cluster, start_redis

DEPLOYMENTS = ["standalone", "cluster", "tls", "sentinel", "acl", "unix"]

if NEAR_CACHE_ON:
    # `make test-near-cache`: every store config of the run (yours, the repos' and the
    # servers', see feature_servers.write_repo_yaml) reads through a near cache.
    field = RedisOnlineStoreConfig.model_fields["near_cache"]
    field.default, field.default_factory = None, NearCacheConfig
    RedisOnlineStoreConfig.model_rebuild(force=True)


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


@pytest.fixture
def replicated_cluster(tmp_path) -> list[RedisServer]:
    """A 3-master cluster with a replica each, for one test to disturb."""
    nodes = start_cluster(tmp_path / "cluster", masters=3, replicas=1)
    yield nodes
    for node in nodes:
        node.stop()
