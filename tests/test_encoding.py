"""``feast_redis_rs.encoding`` against the installed Feast, byte for byte."""

from __future__ import annotations

import warnings
from datetime import datetime, timedelta, timezone

import pytest
from feast.infra import key_encoding_utils as feast_keys
from feast.infra.online_stores import helpers as feast_helpers
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.utils import make_tzaware
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feast_redis_rs import _native, encoding

from .strategies import ALL_VARIANTS, INT32, TEXT, entity_keys, values, variant

MANY = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def feast_serialize(entity_key: EntityKey, version: int) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Feast warns about versions below 3.
        return feast_keys.serialize_entity_key(entity_key, entity_key_serialization_version=version)


@MANY
@given(entity_key=entity_keys(), version=st.sampled_from([2, 3]))
def test_serialize_entity_key_matches_feast(entity_key, version):
    assert encoding.serialize_entity_key(entity_key, version) == feast_serialize(
        entity_key, version
    )


@MANY
@given(
    entity_key=entity_keys(kinds=("int32_val", "string_val", "bytes_val")),
    int64s=st.lists(INT32, min_size=1, max_size=2),
)
def test_version_1_writes_int64_in_four_bytes_like_feast(entity_key, int64s):
    for i, value in enumerate(int64s):
        entity_key.join_keys.append(f"\x7fint64_{i}")
        entity_key.entity_values.append(Value(int64_val=value))
    assert encoding.serialize_entity_key(entity_key, 1) == feast_serialize(entity_key, 1)


@MANY
@given(project=TEXT, entity_key=entity_keys(), version=st.sampled_from([2, 3]))
def test_redis_key_matches_feast(project, entity_key, version):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = feast_helpers._redis_key(project, entity_key, version)
    assert encoding.redis_key(project, entity_key, version) == expected


@MANY
@given(names=st.lists(TEXT, min_size=1, max_size=4, unique=True))
def test_prefix_matches_feast_and_starts_every_key(names):
    prefix = encoding.serialize_entity_key_prefix(names)
    assert prefix == feast_keys.serialize_entity_key_prefix(names)
    key = EntityKey(join_keys=names, entity_values=[Value(int64_val=1)] * len(names))
    assert encoding.serialize_entity_key(key).startswith(prefix)


def test_v2_prefix_has_no_count_or_lengths():
    assert encoding.serialize_entity_key_prefix(["b", "a"], 2) == (
        b"\x02\x00\x00\x00a\x02\x00\x00\x00b"
    )


@MANY
@given(entity_key=entity_keys())
def test_deserialize_entity_key_matches_feast(entity_key):
    serialized = feast_serialize(entity_key, 3)
    ours = encoding.deserialize_entity_key(serialized)
    assert ours == feast_keys.deserialize_entity_key(serialized, 3)
    # Both strip trailing NULs from names, so only other keys serialize back to the same bytes.
    if not any(name.endswith("\x00") for name in entity_key.join_keys):
        assert encoding.serialize_entity_key(ours) == serialized


@MANY
@given(name=st.one_of(TEXT, st.tuples(TEXT, TEXT).map(":".join)))
def test_mmh3_field_matches_feast(name):
    assert encoding.mmh3_field(name) == feast_helpers._mmh3(name)


def test_feast_unit_test_vectors():
    # The byte strings asserted by Feast's own Redis online-store unit tests.
    key = EntityKey(join_keys=["entity"], entity_values=[Value(int32_val=1)])
    assert encoding.redis_key("test", key) == (
        b"\x01\x00\x00\x00\x02\x00\x00\x00\x06\x00\x00\x00entity"
        b"\x03\x00\x00\x00\x04\x00\x00\x00\x01\x00\x00\x00test"
    )
    assert encoding.mmh3_field("feature_view_1:feature_10") == b"&m_9"
    assert encoding.mmh3_field("feature_view_1:feature_11") == b"\xc37\x9a\xbf"
    assert encoding.mmh3_field("feature_view_1:feature_12") == b"wr\xb5d"
    assert encoding.mmh3_field("feature_view_1:my-feature-view:feature1") == b"Si\x86J"
    assert encoding.timestamp_field("feature_view_1") == b"_ts:feature_view_1"


def test_every_value_variant_is_generated():
    oneof = Value.DESCRIPTOR.oneofs_by_name["val"]
    assert set(ALL_VARIANTS) == {field.name for field in oneof.fields}


@MANY
@given(value=values())
def test_values_round_trip_to_python_protobuf_bytes(value):
    serialized = value.SerializeToString()
    assert encoding.canonical_value(serialized) == serialized
    assert encoding.value_kind(serialized) == value.WhichOneof("val")


@pytest.mark.parametrize("name", ALL_VARIANTS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_each_variant_round_trips(name, data):
    value = data.draw(variant(name))
    serialized = value.SerializeToString()
    assert encoding.canonical_value(serialized) == serialized
    assert encoding.value_kind(serialized) == name


AWARE_TIMES = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.one_of(st.none(), st.timezones()),
)


@MANY
@given(event_time=AWARE_TIMES)
def test_timestamps_match_protobuf_from_datetime(event_time):
    expected = Timestamp()
    expected.FromDatetime(make_tzaware(event_time))
    assert encoding.encode_timestamp(event_time) == expected.SerializeToString()
    decoded = encoding.decode_timestamp(expected.SerializeToString())
    assert decoded == make_tzaware(event_time).astimezone(timezone.utc)


def test_decode_empty_timestamp_is_the_epoch():
    assert encoding.decode_timestamp(b"") == datetime(1970, 1, 1, tzinfo=timezone.utc)


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    sorted(
        set(ALL_VARIANTS)
        - {"int32_val", "int64_val", "string_val", "bytes_val", "unix_timestamp_val"}
    ),
)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_unsupported_entity_value_type_names_key_and_type(kind, data):
    value = data.draw(variant(kind))
    key = EntityKey(join_keys=["applicant"], entity_values=[value])
    with pytest.raises(ValueError, match=rf"join key 'applicant'.*{kind}"):
        encoding.serialize_entity_key(key)


def test_empty_entity_value_is_an_error():
    key = EntityKey(join_keys=["zipcode"], entity_values=[Value()])
    with pytest.raises(ValueError, match="join key 'zipcode' has an empty Value"):
        encoding.redis_key("p", key)


@pytest.mark.parametrize(("keys", "count"), [(["a", "b"], 1), (["a"], 2), ([], 1)])
def test_join_key_value_count_mismatch(keys, count):
    key = EntityKey(join_keys=keys, entity_values=[Value(int64_val=1)] * count)
    with pytest.raises(ValueError, match=f"{len(keys)} join keys but {count} values"):
        encoding.serialize_entity_key(key)


def test_duplicate_join_key():
    key = EntityKey(join_keys=["a", "a"], entity_values=[Value(int64_val=1)] * 2)
    with pytest.raises(ValueError, match="join key 'a' appears more than once"):
        encoding.serialize_entity_key(key)


@pytest.mark.parametrize("version", [-1, 4, 99])
def test_unsupported_version(version):
    key = EntityKey(join_keys=["a"], entity_values=[Value(int64_val=1)])
    with pytest.raises(
        ValueError, match=f"entity_key_serialization_version {version} is not supported"
    ):
        encoding.serialize_entity_key(key, version)


def test_int64_too_wide_for_version_1():
    key = EntityKey(join_keys=["id"], entity_values=[Value(int64_val=2**40)])
    with pytest.raises(ValueError, match="join key 'id' has int64 value 1099511627776"):
        encoding.serialize_entity_key(key, 1)


def test_invalid_utf8_is_a_value_error():
    # An EntityKey proto whose join key is not UTF-8 (Python's protobuf cannot build one).
    with pytest.raises(ValueError, match=r"feast\.types\.EntityKey"):
        _native.serialize_entity_key(b"\x0a\x02\xff\xfe")
    with pytest.raises(ValueError, match=r"feast\.types\.Value"):
        encoding.value_kind(b"\x12\x02\xff\xfe")
    key = encoding.serialize_entity_key(
        EntityKey(join_keys=["ab"], entity_values=[Value(string_val="x")])
    )
    broken = key[:12] + b"\xff" + key[13:]
    with pytest.raises(ValueError, match="invalid UTF-8 in the join-key name at offset 12"):
        encoding.deserialize_entity_key(broken)


def test_project_with_lone_surrogate_is_a_value_error():
    key = EntityKey(join_keys=["a"], entity_values=[Value(int64_val=1)])
    with pytest.raises(ValueError, match="surrogate"):
        encoding.redis_key("bad\udc80", key)


def test_truncated_entity_key_names_the_offset():
    key = encoding.serialize_entity_key(
        EntityKey(join_keys=["id"], entity_values=[Value(int64_val=5)])
    )
    with pytest.raises(ValueError, match=r"truncated: a value length needs 4 bytes at offset 18"):
        encoding.deserialize_entity_key(key[:20])
    with pytest.raises(ValueError, match=r"truncated"):
        encoding.deserialize_entity_key(key[:-1])
    with pytest.raises(ValueError, match="version 2 cannot be deserialized"):
        encoding.deserialize_entity_key(key, 2)


@pytest.mark.parametrize(
    ("decoder", "garbage", "message"),
    [
        (encoding.value_kind, b"\x12\x05ab", "feast.types.Value"),
        (encoding.canonical_value, b"\xff\xff\xff", "feast.types.Value"),
        (encoding.decode_timestamp, b"\x08", "google.protobuf.Timestamp"),
        (encoding.deserialize_entity_key, b"\x01\x00", "truncated"),
    ],
)
def test_truncated_or_garbage_bytes_raise_value_error(decoder, garbage, message):
    with pytest.raises(ValueError, match=message):
        decoder(garbage)


@settings(max_examples=3000, deadline=None)
@given(garbage=st.binary(max_size=300))
def test_decoders_fail_only_with_value_error_on_random_bytes(garbage):
    for decoder in (
        encoding.value_kind,
        encoding.canonical_value,
        encoding.decode_timestamp,
        encoding.deserialize_entity_key,
        _native.serialize_entity_key,
    ):
        try:
            decoder(garbage)
        except ValueError:
            pass


@MANY
@given(
    value=values(),
    cut=st.integers(min_value=0),
    flip=st.integers(min_value=0),
    byte=st.integers(0, 255),
)
def test_decoders_fail_only_with_value_error_on_damaged_values(value, cut, flip, byte):
    serialized = bytearray(value.SerializeToString())
    if serialized:
        serialized[flip % len(serialized)] = byte
        del serialized[cut % (len(serialized) + 1) :]
    try:
        encoding.canonical_value(bytes(serialized))
    except ValueError:
        pass


def test_huge_timestamp_is_a_value_error():
    with pytest.raises(ValueError, match="outside the range of datetime"):
        encoding.decode_timestamp(Timestamp(seconds=2**62).SerializeToString())


def test_naive_event_time_is_utc():
    naive = datetime(2021, 8, 25, 12, 0, 0, 123456)
    assert encoding.encode_timestamp(naive) == encoding.encode_timestamp(
        naive.replace(tzinfo=timezone.utc)
    )
    aware = datetime(2021, 8, 25, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert encoding.decode_timestamp(encoding.encode_timestamp(aware)) == datetime(
        2021, 8, 25, 12, 0, tzinfo=timezone.utc
    )
