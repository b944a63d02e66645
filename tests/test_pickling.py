"""The store, its config, the provider and the compute engine pickle at any time, as Ray,
Spark and multiprocessing ship them to workers: connections and plans stay behind, and
the copy reconnects in the process that unpickles it."""

from __future__ import annotations

import multiprocessing
import pickle

import pyarrow as pa
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

from feast_redis_rs import RedisComputeEngine, RedisOnlineStore, RedisOnlineStoreConfig

from . import loan_repo

APPLICANTS = ["19630620_4270", "19630621_4271", "worker_only"]


def _keys() -> list[EntityKey]:
    return [
        EntityKey(join_keys=["dob_ssn"], entity_values=[Value(string_val=a)]) for a in APPLICANTS
    ]


FEATURES = ["c_i64", "c_text"]


def _read(store, config, view) -> list[dict]:
    """What online_read answers for APPLICANTS, as plain values (None: no value)."""

    def plain(value: Value | None):
        kind = value.WhichOneof("val") if value is not None else None
        return getattr(value, kind) if kind else None

    rows = store.online_read(config, view, _keys(), FEATURES)
    return [{name: plain((values or {}).get(name)) for name in FEATURES} for _, values in rows]


def _worker(pickled: list[bytes]) -> dict:
    """In a fresh (spawned) process: use every unpickled object (each pickled on its
    own, so the provider's and the engine's stores are copies of their own)."""
    config, store, provider, engine, view = (pickle.loads(p) for p in pickled)
    assert provider.online_store is not store and engine.online_store is not store
    before = _read(store, config, view)
    row = loan_repo.frame(view, rows_per_entity=1).iloc[:1].assign(dob_ssn="worker_only")
    store.write_arrow(config, view, pa.Table.from_pandas(row, preserve_index=False))
    return {
        "store": before,
        "provider": _read(provider.online_store, config, view),
        "engine": _read(engine.online_store, config, view),
        "engine type": type(engine).__name__,
        "after": _read(store, config, view),
        "written": {name: row[name].iloc[0] for name in FEATURES},
    }


def test_store_provider_and_engine_pickle_after_use(redis_server, redis_db, tmp_path):
    online = RedisOnlineStoreConfig(connection_string=redis_server.address)
    feature_store = loan_repo.feature_store(
        tmp_path / "repo", online,
        provider="feast_redis_rs.RedisProvider",
        batch_engine={"type": "feast_redis_rs.RedisComputeEngine"},
    )  # fmt: skip
    view = feature_store.get_feature_view("credit_history")
    feature_store.write_to_online_store("credit_history", loan_repo.frame(view))
    provider = feature_store._get_provider()
    store, engine = provider.online_store, provider.batch_engine
    assert isinstance(store, RedisOnlineStore) and isinstance(engine, RedisComputeEngine)
    config = feature_store.config
    here = _read(store, config, view)
    assert store._client is not None
    assert here[0]["c_i64"] is not None and here[2] == {"c_i64": None, "c_text": None}

    pickled = [pickle.dumps(thing) for thing in (config, store, provider, engine, view)]
    # Pickling leaves the original connected and working.
    assert store._client is not None and _read(store, config, view) == here

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        there = pool.apply(_worker, (pickled,))
    assert there["store"] == here
    # The provider's and the engine's stores read (after the write) what the store wrote.
    assert there["provider"] == there["engine"] == there["after"]
    assert there["engine type"] == "RedisComputeEngine"
    assert there["after"] == [*here[:2], there["written"]]
    # What the worker wrote is in Redis, read back here.
    assert _read(store, config, view) == there["after"]
