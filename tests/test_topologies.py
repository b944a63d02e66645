"""What only a cluster or a sentinel deployment can show: keys routed by slot to every
master, MOVED and ASK redirections followed while a slot migrates, and a new master
found after a sentinel failover."""

from __future__ import annotations

import time

import pytest
import redis
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from feast_redis_rs import RedisOnlineStore, RedisOnlineStoreConfig, encoding

from . import loan_repo
from .redis_servers import start_redis, start_sentinel

VIEW = loan_repo.views(loan_repo.Path("."))[1]


def key(n: int) -> EntityKey:
    return EntityKey(join_keys=["dob_ssn"], entity_values=[Value(string_val=f"applicant-{n}")])


def rows(count: int, amount: int, minutes: int = 0):
    return [
        (
            key(n),
            {"c_i64": Value(int64_val=amount + n)},
            loan_repo.BASE_TIME.replace(minute=minutes),
            None,
        )
        for n in range(count)
    ]


def hmget_calls(client: redis.Redis) -> int:
    return client.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0)


@pytest.fixture
def cluster(started_deployments):
    deployment = started_deployments("cluster")
    deployment.flush()
    return deployment


def test_cluster_reads_reach_every_master(cluster, tmp_path):
    feature_store = loan_repo.feature_store(tmp_path, cluster.ours())
    view = feature_store.get_feature_view("credit_history")
    feature_store.write_to_online_store("credit_history", loan_repo.frame(view))
    clients = cluster.master_clients()
    assert all(c.dbsize() > 0 for c in clients), "the data set must cover every master"
    before = [hmget_calls(c) for c in clients]
    response = feature_store.get_online_features(
        features=["credit_history:c_i64"],
        entity_rows=[{"dob_ssn": a} for a in loan_repo.APPLICANTS],
    ).proto
    found = [ts.seconds > 0 for ts in response.results[-1].event_timestamps]
    assert found == [True] * len(loan_repo.APPLICANTS)
    after = [hmget_calls(c) for c in clients]
    assert [a - b for a, b in zip(after, before, strict=True)] == [c.dbsize() for c in clients]


def node_id(client: redis.Redis) -> str:
    return client.execute_command("CLUSTER", "MYID").decode()


def test_cluster_follows_ask_and_moved_during_a_slot_migration(cluster):
    store = RedisOnlineStore()
    config = loan_repo.repo_config(cluster.ours())
    store.online_write_batch(config, VIEW, rows(50, 100), None)
    redis_key = encoding.redis_key(loan_repo.PROJECT, key(7))
    slot = cluster.raw().keyslot(redis_key)
    clients = cluster.master_clients()

    def keys_in_slot(client: redis.Redis) -> int:
        return client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot)

    source = next(c for c in clients if keys_in_slot(c) > 0)
    target = next(c for c in clients if c is not source)
    source_id, target_id = node_id(source), node_id(target)
    target_port = target.connection_pool.connection_kwargs["port"]

    target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    keys = source.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000)
    source.execute_command("MIGRATE", "127.0.0.1", target_port, "", 0, 5000, "KEYS", *keys)
    # Mid-migration the source answers ASK for the moved key.
    got = store.online_read(config, VIEW, [key(7)], ["c_i64"])
    assert got[0][1]["c_i64"].int64_val == 107

    for client in clients:
        client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    # Our slot map still says source: it answers MOVED, and writes follow too.
    store.online_write_batch(config, VIEW, rows(50, 200, minutes=5), None)
    got = store.online_read(config, VIEW, [key(n) for n in range(50)], ["c_i64"])
    assert [values["c_i64"].int64_val for _, values in got] == [200 + n for n in range(50)]
    assert keys_in_slot(target) > 0 and keys_in_slot(source) == 0


def test_sentinel_failover_finds_the_new_master(tmp_path):
    master = start_redis(tmp_path / "master")
    replica = start_redis(tmp_path / "replica", "--replicaof", master.host, str(master.port))
    sentinel = start_sentinel(tmp_path / "sentinel", master, "loans")
    servers = [sentinel, replica, master]
    try:
        wait_until(lambda: replica.client().info("replication")["master_link_status"] == "up")
        store = RedisOnlineStore()
        config = loan_repo.repo_config(
            RedisOnlineStoreConfig(
                redis_type="redis_sentinel",
                connection_string=sentinel.address,
                sentinel_master="loans",
            )
        )
        store.online_write_batch(config, VIEW, rows(5, 100), None)
        wait_until(lambda: replica.client().dbsize() == 5)
        sentinel.client().execute_command("SENTINEL", "FAILOVER", "loans")
        wait_until(lambda: replica.client().info("replication")["role"] == "master")
        wait_until(lambda: master.client().info("replication")["role"] == "slave")

        store.online_write_batch(config, VIEW, rows(5, 300, minutes=5), None)
        got = store.online_read(config, VIEW, [key(n) for n in range(5)], ["c_i64"])
        assert [values["c_i64"].int64_val for _, values in got] == [300 + n for n in range(5)]
        assert replica.client().info("replication")["role"] == "master"
    finally:
        for server in servers:
            server.stop()


def test_sentinel_with_an_unknown_master_name(tmp_path):
    master = start_redis(tmp_path / "master")
    sentinel = start_sentinel(tmp_path / "sentinel", master, "loans")
    try:
        config = loan_repo.repo_config(
            RedisOnlineStoreConfig(
                redis_type="redis_sentinel",
                connection_string=sentinel.address,
                sentinel_master="nope",
            )
        )
        with pytest.raises(
            ConnectionError, match=r"no sentinel among .* knows a master named 'nope'"
        ):
            RedisOnlineStore().online_read(config, VIEW, [key(1)])
    finally:
        sentinel.stop()
        master.stop()


def wait_until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)
