"""Newest event time wins even when writers race: several processes write the same
entities with random event times, many rounds; afterwards every hash holds the newest
row any writer wrote for it (`_ts` and fields together), through `online_write_batch`
and through `write_arrow`. Stock Feast's read-then-write loses ~half of such races."""

from __future__ import annotations

import multiprocessing
import random
from datetime import timedelta

import pyarrow as pa
import pytest
from feast import FeatureStore, FeatureView, Field, RepoConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.types import Int64
from google.protobuf.timestamp_pb2 import Timestamp

from feast_redis_rs import RedisOnlineStore, RedisOnlineStoreConfig, encoding

from . import loan_repo
from .redis_servers import start_redis

ENTITIES = [f"applicant-{i}" for i in range(2000)]
ROUNDS = 15


def repo_config(address: str, registry: str) -> RepoConfig:
    return RepoConfig(
        project=loan_repo.PROJECT,
        provider="local",
        registry=registry,
        online_store=RedisOnlineStoreConfig(connection_string=address),
        offline_store={"type": "file"},
        entity_key_serialization_version=3,
    )


def write_rounds(address: str, registry: str, seed: int, mode: str) -> dict[str, int]:
    """One writer: every round, every entity with a random event time (its seconds are
    also the row's `c_i64`). Returns the newest seconds written per entity."""
    config = repo_config(address, registry)
    view = FeatureStore(config=config).get_feature_view("credit_history")
    store = RedisOnlineStore()
    rng = random.Random(seed)
    newest: dict[str, int] = {}
    for _ in range(ROUNDS):
        seconds = {e: rng.randrange(1_000_000) for e in ENTITIES}
        for entity, s in seconds.items():
            newest[entity] = max(newest.get(entity, -1), s)
        times = [loan_repo.BASE_TIME + timedelta(seconds=s) for s in seconds.values()]
        if mode == "online_write_batch":
            rows = [
                (
                    EntityKey(join_keys=["dob_ssn"], entity_values=[Value(string_val=e)]),
                    {"c_i64": Value(int64_val=s)},
                    t,
                    None,
                )
                for (e, s), t in zip(seconds.items(), times, strict=True)
            ]
            store.online_write_batch(config, view, rows, None)
        else:
            table = pa.table(
                {
                    "dob_ssn": list(seconds),
                    "c_i64": list(seconds.values()),
                    "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
                }
            )
            store.write_arrow(config, view, table)
    return newest


@pytest.mark.parametrize(
    ("writers", "mode"),
    [(2, "online_write_batch"), (4, "online_write_batch"), (2, "write_arrow")],
)
def test_the_newest_row_wins_across_racing_writers(writers, mode, redis_server, redis_db, tmp_path):
    registry = str(tmp_path / "registry.db")
    feature_store = FeatureStore(config=repo_config(redis_server.address, registry))
    credit = loan_repo.views(tmp_path)[1]
    racing = FeatureView(
        name=credit.name,
        entities=[loan_repo.entities()[1]],
        schema=[Field(name="c_i64", dtype=Int64)],
        source=credit.batch_source,
        ttl=credit.ttl,
    )
    feature_store.apply([loan_repo.entities()[1], racing])
    context = multiprocessing.get_context("spawn")
    with context.Pool(writers) as pool:
        results = pool.starmap(
            write_rounds, [(redis_server.address, registry, seed, mode) for seed in range(writers)]
        )
    stale = []
    for entity in ENTITIES:
        newest = max(result[entity] for result in results)
        key = encoding.redis_key(
            loan_repo.PROJECT,
            EntityKey(join_keys=["dob_ssn"], entity_values=[Value(string_val=entity)]),
        )
        stored = redis_db.hgetall(key)
        ts = Timestamp.FromString(stored[b"_ts:credit_history"])
        value = Value.FromString(stored[encoding.mmh3_field("credit_history:c_i64")])
        expected = int((loan_repo.BASE_TIME + timedelta(seconds=newest)).timestamp())
        if (ts.seconds, value.int64_val) != (expected, newest):
            stale.append((entity, ts.seconds - expected, value.int64_val - newest))
    assert not stale, f"{len(stale)} of {len(ENTITIES)} hashes hold an older row: {stale[:5]}"


def test_writes_fall_back_to_read_then_write_where_scripts_are_refused(tmp_path):
    server = start_redis(tmp_path / "noscript", password="admin-s3cret")
    admin = server.client()
    admin.acl_setuser(
        "writer", enabled=True, passwords=["+w-s3cret"], keys=["*"],
        commands=["+@all", "-@scripting"],
    )  # fmt: skip
    config = RepoConfig(
        project=loan_repo.PROJECT,
        provider="local",
        registry=str(tmp_path / "registry.db"),
        online_store=RedisOnlineStoreConfig(
            connection_string=f"{server.address},username=writer,password=w-s3cret"
        ),
        entity_key_serialization_version=3,
    )
    view = loan_repo.views(tmp_path)[1]
    key = EntityKey(join_keys=["dob_ssn"], entity_values=[Value(string_val="a")])
    store = RedisOnlineStore()
    try:
        for minutes in (10, 5, 20, 15):
            event_time = loan_repo.BASE_TIME + timedelta(minutes=minutes)
            row = (key, {"c_i64": Value(int64_val=minutes)}, event_time, None)
            store.online_write_batch(config, view, [row], None)
        stored = admin.hgetall(encoding.redis_key(loan_repo.PROJECT, key))
        value = Value.FromString(stored[encoding.mmh3_field("credit_history:c_i64")])
        assert value.int64_val == 20
        assert admin.acl_log()[0]["object"] in ("evalsha", "script|load", "script")
    finally:
        admin.close()
        server.stop()
