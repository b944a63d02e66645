"""Redis Cluster disturbed while the store works, on a 3-master cluster with a replica
each that the test starts: a manual ``CLUSTER FAILOVER`` and a killed master during
reads and writes, and a slot range resharded during a materialization. Errors happen
only inside the failover window; afterwards the data equals an undisturbed run."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pandas as pd
import redis
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

from feast_redis_rs import RedisOnlineStore, RedisOnlineStoreConfig

from . import loan_repo
from .redis_servers import RedisServer, redis_cli_binary, start_redis

VIEW = loan_repo.views(loan_repo.Path("."))[1]
ENTITIES = 300
# After a failover the store's next calls must work: its retries (connection refused,
# MOVED to the new master) take well under this.
GRACE_SECONDS = 3.0


def role(node: RedisServer) -> str:
    return node.client().info("replication")["role"]


def a_master_and_its_replica(nodes: list[RedisServer]) -> tuple[RedisServer, RedisServer]:
    for replica in nodes:
        info = replica.client().info("replication")
        if info["role"] == "slave":
            master = next(n for n in nodes if n.port == int(info["master_port"]))
            return master, replica
    raise AssertionError("the cluster has no replica")


def wait_until(check, seconds: float, what: str) -> float:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return time.monotonic()
        except redis.exceptions.RedisError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {seconds} s")


def cluster_ok_everywhere(nodes: list[RedisServer]) -> bool:
    return all(
        b"cluster_state:ok" in node.client().execute_command("CLUSTER", "INFO") for node in nodes
    )


def key(n: int) -> EntityKey:
    return EntityKey(join_keys=["dob_ssn"], entity_values=[Value(string_val=f"applicant-{n}")])


KEYS = [key(n) for n in range(ENTITIES)]


def round_rows(number: int):
    """Round `number` of the writer: every entity's value is the round, a second newer
    than the round before."""
    when = loan_repo.BASE_TIME + timedelta(seconds=number)
    return [(k, {"c_i64": Value(int64_val=number)}, when, None) for k in KEYS]


@dataclass
class Load:
    """A reader and a writer on one store through the disturbance. The writer writes
    round after round, retrying a failed round (as a job would), so every round lands;
    each call's end time and error (or the values read) are kept."""

    store: RedisOnlineStore
    config: RepoConfig
    stop: threading.Event = field(default_factory=threading.Event)
    writes: list[tuple[float, str | None]] = field(default_factory=list)
    reads: list[tuple[float, str | None, list[int]]] = field(default_factory=list)
    rounds_written: int = 0

    def write(self) -> None:
        number = 1
        while not self.stop.is_set():
            try:
                self.store.online_write_batch(self.config, VIEW, round_rows(number), None)
                self.writes.append((time.monotonic(), None))
                self.rounds_written = number
                number += 1
            except (ConnectionError, TimeoutError, RuntimeError) as error:
                self.writes.append((time.monotonic(), f"{type(error).__name__}: {error}"))
                time.sleep(0.05)

    def read(self) -> None:
        while not self.stop.is_set():
            try:
                got = self.store.online_read(self.config, VIEW, KEYS, ["c_i64"])
                values = [v["c_i64"].int64_val if v else 0 for _, v in got]
                self.reads.append((time.monotonic(), None, values))
            except (ConnectionError, TimeoutError, RuntimeError) as error:
                self.reads.append((time.monotonic(), f"{type(error).__name__}: {error}", []))
                time.sleep(0.05)

    def __enter__(self) -> Load:
        self.threads = [threading.Thread(target=self.write), threading.Thread(target=self.read)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def errors_outside(self, start: float, end: float) -> list[str]:
        calls = [*self.writes, *((t, e) for t, e, _ in self.reads)]
        return [error for t, error in calls if error and not start <= t <= end]

    def calls_after(self, moment: float) -> tuple[int, int]:
        writes = sum(1 for t, e in self.writes if e is None and t > moment)
        reads = sum(1 for t, e, _ in self.reads if e is None and t > moment)
        return writes, reads


def cluster_config(nodes: list[RedisServer]) -> RepoConfig:
    seeds = ",".join(n.address for n in nodes)
    online = RedisOnlineStoreConfig(
        redis_type="redis_cluster",
        connection_string=seeds,
        connect_timeout_seconds=1,
        command_timeout_seconds=2,
    )
    return loan_repo.repo_config(online)


def check_after(load: Load, nodes: list[RedisServer], disturbed: float, recovered: float):
    """Errors only between the disturbance and the recovery (plus the grace); calls
    succeed after it; the data is the last round everywhere, and reads only ever saw
    rounds that were written."""
    assert load.errors_outside(disturbed, recovered + GRACE_SECONDS) == []
    assert all(n > 0 for n in load.calls_after(recovered + GRACE_SECONDS)), load.calls_after(
        recovered + GRACE_SECONDS
    )
    final = load.rounds_written
    got = load.store.online_read(load.config, VIEW, KEYS, ["c_i64"])
    assert [v["c_i64"].int64_val for _, v in got] == [final] * ENTITIES
    for _, error, values in load.reads:
        assert error or all(0 <= value <= final for value in values)
    # Every master answers for its slots and holds only keys of them.
    live = [n for n in nodes if n.process.poll() is None]
    assert cluster_ok_everywhere(live)


def test_manual_failover_during_reads_and_writes(replicated_cluster):
    nodes = replicated_cluster
    master, replica = a_master_and_its_replica(nodes)
    with Load(RedisOnlineStore(), cluster_config(nodes)) as load:
        wait_until(lambda: load.rounds_written >= 3 and len(load.reads) >= 3, 30, "the load")
        disturbed = time.monotonic()
        replica.client().execute_command("CLUSTER", "FAILOVER")
        recovered = wait_until(
            lambda: role(replica) == "master" and role(master) == "slave", 30, "the failover"
        )
        rounds_at_recovery = load.rounds_written
        wait_until(lambda: load.rounds_written >= rounds_at_recovery + 3, 30, "writes after")
        time.sleep(GRACE_SECONDS + 1.5)
    check_after(load, nodes, disturbed, recovered)
    # A manual failover loses nothing and moves no data: no read went backwards.
    for earlier, later in zip(load.reads, load.reads[1:], strict=False):
        if earlier[1] is None and later[1] is None:
            assert all(a <= b for a, b in zip(earlier[2], later[2], strict=True))


def test_killed_master_during_reads_and_writes(replicated_cluster):
    nodes = replicated_cluster
    master, replica = a_master_and_its_replica(nodes)
    with Load(RedisOnlineStore(), cluster_config(nodes)) as load:
        wait_until(lambda: load.rounds_written >= 3 and len(load.reads) >= 3, 30, "the load")
        disturbed = time.monotonic()
        os.kill(master.process.pid, signal.SIGKILL)
        master.process.wait(timeout=10)
        survivors = [n for n in nodes if n is not master]
        recovered = wait_until(
            lambda: role(replica) == "master" and cluster_ok_everywhere(survivors),
            60,
            "the replica's promotion",
        )
        rounds_at_recovery = load.rounds_written
        wait_until(lambda: load.rounds_written >= rounds_at_recovery + 3, 30, "writes after")
        time.sleep(GRACE_SECONDS + 1.5)
    check_after(load, nodes, disturbed, recovered)


# --- resharding during a materialization ---------------------------------------------

MATERIALIZED = 20_000


def materialized_store(path, online, data_path) -> tuple[FeatureStore, FeatureView]:
    applicant = Entity(name="applicant", join_keys=["applicant_id"], value_type=ValueType.INT64)
    view = FeatureView(
        name="scores",
        entities=[applicant],
        ttl=timedelta(days=2),
        schema=[
            Field(name="applicant_id", dtype=Int64),
            Field(name="score", dtype=Float64),
            Field(name="band", dtype=String),
            Field(name="loans", dtype=Int64),
        ],
        source=FileSource(path=str(data_path), timestamp_field="event_timestamp"),
    )
    path.mkdir(parents=True, exist_ok=True)
    store = FeatureStore(
        config=RepoConfig(
            project="reshard",
            provider="local",
            registry=str(path / "registry.db"),
            online_store=online,
            offline_store={"type": "file"},
            batch_engine={"type": "feast_redis_rs.RedisComputeEngine"},
            entity_key_serialization_version=3,
        )
    )
    store.apply([applicant, view])
    return store, view


def all_hashes(clients: list[redis.Redis]) -> dict[bytes, dict]:
    hashes = {}
    for client in clients:
        for name in client.scan_iter(count=1000):
            hashes[name] = client.hgetall(name)
    return hashes


def test_reshard_during_a_materialization(replicated_cluster, tmp_path):
    nodes = replicated_cluster
    rng = np.random.default_rng(5)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    data = pd.DataFrame({
        "applicant_id": np.arange(MATERIALIZED, dtype="int64"),
        "score": rng.random(MATERIALIZED),
        "band": rng.choice(["A", "B", "C"], MATERIALIZED),
        "loans": rng.integers(0, 9, MATERIALIZED),
        "event_timestamp": now - pd.to_timedelta(rng.integers(60, 3600, MATERIALIZED), unit="s"),
    })  # fmt: skip
    data_path = tmp_path / "scores.parquet"
    data.to_parquet(data_path)
    window = (now - pd.Timedelta(hours=2)).to_pydatetime(), now.to_pydatetime()

    standalone = start_redis(tmp_path / "undisturbed")
    try:
        undisturbed, _ = materialized_store(
            tmp_path / "plain",
            RedisOnlineStoreConfig(connection_string=standalone.address),
            data_path,
        )
        undisturbed.materialize(*window)
        expected = all_hashes([standalone.client()])
    finally:
        standalone.stop()
    assert len(expected) == MATERIALIZED

    online = cluster_config(nodes).online_store
    store, _ = materialized_store(tmp_path / "cluster", online, data_path)
    masters = [n for n in nodes if role(n) == "master"]
    source, target = masters[0], masters[1]
    source_id = source.client().execute_command("CLUSTER", "MYID").decode()
    target_id = target.client().execute_command("CLUSTER", "MYID").decode()

    reshard = subprocess.Popen(
        [redis_cli_binary(), "--cluster", "reshard", source.address,
         "--cluster-from", source_id, "--cluster-to", target_id,
         "--cluster-slots", "3000", "--cluster-yes", "--cluster-pipeline", "50"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        started = time.monotonic()
        store.materialize(*window)
        materialize_seconds = time.monotonic() - started
        # The reshard ran during the materialization: it was not done before it ended.
        resharding_during = reshard.poll() is None
        output, _ = reshard.communicate(timeout=300)
    finally:
        if reshard.poll() is None:
            reshard.kill()
    assert reshard.returncode == 0, output.decode()[-2000:]
    assert resharding_during, (
        f"the reshard ended before the materialization ({materialize_seconds:.1f} s)"
    )
    slots_of_target = sum(
        end - start + 1
        for start, end, *rest in target.client().execute_command("CLUSTER", "SLOTS")
        if rest[0][1] == target.port
    )
    assert slots_of_target >= 5461 + 3000 - 1
    got = all_hashes([m.client() for m in masters])
    assert len(got) == MATERIALIZED
    assert got == expected
