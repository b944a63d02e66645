"""What stock Feast's ``RedisOnlineStore`` actually writes to a real Redis is exactly what
``feast_redis_rs.encoding`` computes: keys, hash fields, values and timestamps."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from feast import Entity, FeatureView, Field, FileSource, RepoConfig
from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import FloatList, StringList, Value
from feast.types import Array, Bool, Float32, Float64, Int64, String
from feast.value_type import ValueType

from feast_redis_rs import encoding

PROJECT = "credit_scoring"


def repo_config(redis_server, tmp_path, version: int) -> RepoConfig:
    return RepoConfig(
        project=PROJECT,
        provider="local",
        registry=str(tmp_path / "registry.db"),
        online_store=RedisOnlineStoreConfig(connection_string=redis_server.address),
        entity_key_serialization_version=version,
    )


def loan_view(join_keys: list[str]) -> FeatureView:
    entities = [
        Entity(
            name=k,
            join_keys=[k],
            value_type=ValueType.STRING if k == "dob_ssn" else ValueType.INT64,
        )
        for k in join_keys
    ]
    return FeatureView(
        name="credit_history",
        entities=entities,
        schema=[
            Field(name="credit_card_due", dtype=Int64),
            Field(name="mortgage_due", dtype=Float64),
            Field(name="city", dtype=String),
            Field(name="rate", dtype=Float32),
            Field(name="bankrupt", dtype=Bool),
            Field(name="tags", dtype=Array(String)),
            Field(name="scores", dtype=Array(Float32)),
        ],
        source=FileSource(path="unused.parquet", timestamp_field="event_timestamp"),
    )


def rows(join_keys: list[str]):
    base = datetime(2021, 8, 25, 12, 0, 0, 123456, tzinfo=timezone.utc)
    for i in range(20):
        values = [
            Value(string_val=f"19630621_{4278 + i}")
            if k == "dob_ssn"
            else Value(int64_val=76104 + i)
            for k in join_keys
        ]
        features = {
            "credit_card_due": Value(int64_val=i * 1000),
            "mortgage_due": Value(double_val=i * 12345.5),
            "city": Value(string_val=f"Fört Wörth {i}"),
            "rate": Value(float_val=i / 3),
            "bankrupt": Value(bool_val=i % 2 == 0),
            "tags": Value(string_list_val=StringList(val=["a", str(i)])),
            "scores": Value(float_list_val=FloatList(val=[0.5, i])),
        }
        if i % 5 == 0:
            features["city"] = Value()  # a null feature value
        yield (
            EntityKey(join_keys=join_keys, entity_values=values),
            features,
            base + timedelta(minutes=i),
            None,
        )


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("join_keys", [["zipcode"], ["dob_ssn"], ["zipcode", "dob_ssn"]])
def test_stock_writes_match_our_encoding(redis_server, redis_db, tmp_path, version, join_keys):
    config = repo_config(redis_server, tmp_path, version)
    view = loan_view(join_keys)
    data = list(rows(join_keys))
    RedisOnlineStore().online_write_batch(config, view, data, progress=None)

    expected_keys = {encoding.redis_key(PROJECT, key, version) for key, _, _, _ in data}
    assert set(redis_db.keys()) == expected_keys

    for entity_key, features, event_time, _ in data:
        stored = redis_db.hgetall(encoding.redis_key(PROJECT, entity_key, version))
        expected_fields = {encoding.mmh3_field(f"{view.name}:{name}") for name in features}
        assert set(stored) == expected_fields | {encoding.timestamp_field(view.name)}

        for name, value in features.items():
            raw = stored[encoding.mmh3_field(f"{view.name}:{name}")]
            assert raw == value.SerializeToString()
            assert encoding.canonical_value(raw) == raw
            assert encoding.value_kind(raw) == value.WhichOneof("val")

        raw_ts = stored[encoding.timestamp_field(view.name)]
        assert raw_ts == encoding.encode_timestamp(event_time)
        assert encoding.decode_timestamp(raw_ts) == event_time


def test_entity_prefix_scans_exactly_the_views_keys(redis_server, redis_db, tmp_path):
    config = repo_config(redis_server, tmp_path, 3)
    for join_keys in (["zipcode"], ["zipcode", "dob_ssn"]):
        RedisOnlineStore().online_write_batch(
            config, loan_view(join_keys), list(rows(join_keys)), None
        )

    prefix = encoding.serialize_entity_key_prefix(["zipcode"])
    pattern = prefix + b"*" + PROJECT.encode()
    matched = set(redis_db.scan_iter(match=pattern, count=1000))
    assert matched == {encoding.redis_key(PROJECT, key) for key, _, _, _ in rows(["zipcode"])}

    stored_key = next(iter(matched))
    entity_key = encoding.deserialize_entity_key(stored_key[: -len(PROJECT)])
    assert list(entity_key.join_keys) == ["zipcode"]
    assert encoding.redis_key(PROJECT, entity_key) == stored_key
