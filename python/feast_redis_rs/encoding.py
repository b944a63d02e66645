"""Feast's Redis storage format, computed in Rust.

The functions mirror the names and signatures of Feast's own
(``feast.infra.key_encoding_utils`` and ``feast.infra.online_stores.helpers``) and return
the same bytes. Invalid input raises ``ValueError`` with a message that names the join key,
type, version or offset at fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto

from feast_redis_rs import _native

__all__ = [
    "canonical_value",
    "decode_timestamp",
    "deserialize_entity_key",
    "encode_timestamp",
    "mmh3_field",
    "redis_key",
    "serialize_entity_key",
    "serialize_entity_key_prefix",
    "timestamp_field",
    "value_kind",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def serialize_entity_key(
    entity_key: EntityKeyProto, entity_key_serialization_version: int = 3
) -> bytes:
    """Serialize an entity key as Feast does (``key_encoding_utils.serialize_entity_key``).

    Join keys are sorted by name with their values. Version 3 (Feast's default) records the
    join-key count and name lengths; version 2 does not; versions 0 and 1 also write int64
    values as 4 bytes. Entity values may be int32, int64, string, bytes or unix_timestamp.
    """
    return _native.serialize_entity_key(
        entity_key.SerializeToString(), entity_key_serialization_version
    )


def redis_key(
    project: str, entity_key: EntityKeyProto, entity_key_serialization_version: int = 3
) -> bytes:
    """The Redis key of an entity: its serialized key followed by the project name
    (``helpers._redis_key``)."""
    return _native.redis_key(
        project, entity_key.SerializeToString(), entity_key_serialization_version
    )


def serialize_entity_key_prefix(
    entity_keys: Sequence[str], entity_key_serialization_version: int = 3
) -> bytes:
    """The bytes every serialized key of these join keys starts with, for ``SCAN MATCH``
    (``key_encoding_utils.serialize_entity_key_prefix``)."""
    return _native.entity_key_prefix(list(entity_keys), entity_key_serialization_version)


def deserialize_entity_key(
    serialized_entity_key: bytes, entity_key_serialization_version: int = 3
) -> EntityKeyProto:
    """Parse a version 3 serialized entity key back into an ``EntityKey`` proto
    (``key_encoding_utils.deserialize_entity_key``). Version 2 keys cannot be parsed:
    they do not record how many join keys they hold."""
    return EntityKeyProto.FromString(
        _native.deserialize_entity_key(serialized_entity_key, entity_key_serialization_version)
    )


def mmh3_field(name: str) -> bytes:
    """The hash field of ``"{feature_view}:{feature}"``: murmur3_32 (seed 0) as 4 bytes
    little-endian, what ``helpers._mmh3`` returns."""
    return _native.mmh3_field(name)


def timestamp_field(feature_view: str) -> bytes:
    """The hash field holding the view's event time: ``b"_ts:" + feature_view``."""
    return _native.timestamp_field(feature_view)


def value_kind(value_bytes: bytes) -> str | None:
    """Parse a serialized ``feast.types.Value`` and return its set field's name, as
    ``Value.WhichOneof("val")`` does (``None`` for an empty value)."""
    return _native.value_kind(value_bytes)


def canonical_value(value_bytes: bytes) -> bytes:
    """Parse a serialized ``feast.types.Value`` and serialize it again: the bytes Feast
    writes for that value (unknown fields dropped, fields in number order)."""
    return _native.canonical_value(value_bytes)


def event_time_micros(event_time: datetime) -> int:
    """Microseconds since the epoch of an event time, as ``Timestamp.FromDatetime`` counts
    them (whole microseconds; a naive datetime is taken as UTC, as Feast does)."""
    if event_time.tzinfo is None:
        event_time = event_time.replace(tzinfo=timezone.utc)
    return (event_time - _EPOCH) // _MICROSECOND


def encode_timestamp(event_time: datetime) -> bytes:
    """Serialize an event time as the ``google.protobuf.Timestamp`` stored in ``_ts:`` fields.
    A naive datetime is taken as UTC, as Feast does."""
    seconds, micros = divmod(event_time_micros(event_time), 1_000_000)
    return _native.encode_timestamp(seconds, micros * 1000)


def decode_timestamp(timestamp_bytes: bytes) -> datetime:
    """Parse a stored ``google.protobuf.Timestamp`` into an aware UTC datetime."""
    seconds, nanos = _native.decode_timestamp(timestamp_bytes)
    try:
        return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        raise ValueError(
            f"stored timestamp {seconds}s {nanos}ns is outside the range of datetime"
        ) from None
