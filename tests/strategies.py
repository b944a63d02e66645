"""Hypothesis strategies for Feast's entity keys and every variant of ``feast.types.Value``."""

from __future__ import annotations

from feast.protos.feast.types import Value_pb2 as V
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from hypothesis import strategies as st

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
FLOAT32 = st.floats(width=32)
DOUBLE = st.floats()
# Short names and strings mostly, with the odd long one; hypothesis' text() covers
# unicode (no lone surrogates, which protobuf cannot hold) and the empty string.
TEXT = st.one_of(st.text(max_size=12), st.text(min_size=200, max_size=2000))
BYTES = st.one_of(st.binary(max_size=12), st.binary(min_size=200, max_size=2000))

# Values that Feast accepts in an entity key, keyed by the Value field name.
ENTITY_VALUES = {
    "int32_val": INT32,
    "int64_val": INT64,
    "string_val": TEXT,
    "bytes_val": BYTES,
    "unix_timestamp_val": INT64,
}


def entity_value(kinds=tuple(ENTITY_VALUES)) -> st.SearchStrategy[V.Value]:
    return st.one_of(
        [ENTITY_VALUES[kind].map(lambda v, kind=kind: V.Value(**{kind: v})) for kind in kinds]
    )


@st.composite
def entity_keys(draw, min_keys=1, max_keys=4, kinds=tuple(ENTITY_VALUES)) -> EntityKey:
    names = draw(st.lists(TEXT, min_size=min_keys, max_size=max_keys, unique=True))
    values = [draw(entity_value(kinds)) for _ in names]
    return EntityKey(join_keys=names, entity_values=values)


def _lists(element, message):
    return st.lists(element, max_size=5).map(lambda items: message(val=items))


def _scalars(text, binary) -> dict[str, st.SearchStrategy]:
    return {
        "bytes_val": binary,
        "string_val": text,
        "int32_val": INT32,
        "int64_val": INT64,
        "double_val": DOUBLE,
        "float_val": FLOAT32,
        "bool_val": st.booleans(),
        "unix_timestamp_val": INT64,
        "null_val": st.just(V.NULL),
        "json_val": text,
        "uuid_val": st.uuids().map(str),
        "time_uuid_val": st.uuids(version=1).map(str),
        "decimal_val": st.decimals(allow_nan=False).map(str),
        "bytes_list_val": _lists(binary, V.BytesList),
        "string_list_val": _lists(text, V.StringList),
        "int32_list_val": _lists(INT32, V.Int32List),
        "int64_list_val": _lists(INT64, V.Int64List),
        "double_list_val": _lists(DOUBLE, V.DoubleList),
        "float_list_val": _lists(FLOAT32, V.FloatList),
        "bool_list_val": _lists(st.booleans(), V.BoolList),
        "unix_timestamp_list_val": _lists(INT64, V.Int64List),
        "bytes_set_val": _lists(binary, V.BytesSet),
        "string_set_val": _lists(text, V.StringSet),
        "int32_set_val": _lists(INT32, V.Int32Set),
        "int64_set_val": _lists(INT64, V.Int64Set),
        "double_set_val": _lists(DOUBLE, V.DoubleSet),
        "float_set_val": _lists(FLOAT32, V.FloatSet),
        "bool_set_val": _lists(st.booleans(), V.BoolSet),
        "unix_timestamp_set_val": _lists(INT64, V.Int64Set),
        "json_list_val": _lists(text, V.StringList),
        "uuid_list_val": _lists(st.uuids().map(str), V.StringList),
        "time_uuid_list_val": _lists(st.uuids(version=1).map(str), V.StringList),
        "uuid_set_val": _lists(st.uuids().map(str), V.StringSet),
        "time_uuid_set_val": _lists(st.uuids(version=1).map(str), V.StringSet),
        "decimal_list_val": _lists(st.decimals(allow_nan=False).map(str), V.StringList),
        "decimal_set_val": _lists(st.decimals(allow_nan=False).map(str), V.StringSet),
        "zoned_timestamp_val": st.builds(V.ZonedTimestamp, unix_timestamp=INT64, zone=text),
    }


SCALARS = _scalars(TEXT, BYTES)
# Inside maps and lists, short strings keep a nested value's size reasonable.
NESTED_SCALARS = _scalars(st.text(max_size=6), st.binary(max_size=6))

MAP_KEYS = st.one_of(
    st.builds(V.MapKey, int32_key=INT32),
    st.builds(V.MapKey, int64_key=INT64),
    st.builds(V.MapKey, float_key=FLOAT32),
    st.builds(V.MapKey, double_key=DOUBLE),
    st.builds(V.MapKey, bool_key=st.booleans()),
    st.builds(V.MapKey, unix_timestamp_key=INT64),
    st.builds(V.MapKey, bytes_key=st.binary(max_size=6)),
    st.builds(V.MapKey, uuid_key=st.uuids().map(str)),
    st.builds(V.MapKey, time_uuid_key=st.uuids(version=1).map(str)),
    st.builds(V.MapKey, decimal_key=st.decimals(allow_nan=False).map(str)),
    st.just(V.MapKey()),
)


def _maps(values):
    # `Map.val` is a proto map<string, Value>.
    return st.dictionaries(st.text(max_size=6), values, max_size=4).map(lambda val: V.Map(val=val))


def _nested(values) -> dict[str, st.SearchStrategy]:
    maps = _maps(values)
    map_lists = st.lists(maps, max_size=3).map(lambda val: V.MapList(val=val))
    repeated = st.lists(values, max_size=4).map(lambda val: V.RepeatedValue(val=val))
    scalar_map = st.lists(st.builds(V.ScalarMapEntry, key=MAP_KEYS, value=values), max_size=3).map(
        lambda val: V.ScalarMap(val=val)
    )
    return {
        "map_val": maps,
        "map_list_val": map_lists,
        "struct_val": maps,
        "struct_list_val": map_lists,
        "list_val": repeated,
        "set_val": repeated,
        "scalar_map_val": scalar_map,
    }


def _variant(name, strategy):
    return strategy.map(lambda v: V.Value(**{name: v}))


def values() -> st.SearchStrategy[V.Value]:
    """Every variant of ``Value``: scalars, lists, sets, null, zoned timestamps, and maps,
    structs, value lists and scalar maps nested a few levels deep; sometimes empty."""
    leaves = st.one_of(st.just(V.Value()), *[_variant(name, s) for name, s in SCALARS.items()])
    return st.recursive(
        leaves,
        lambda inner: st.one_of(*[_variant(name, s) for name, s in _nested(inner).items()]),
        max_leaves=12,
    )


def variant(name: str) -> st.SearchStrategy[V.Value]:
    """Values whose set field is ``name``."""
    if name in SCALARS:
        return _variant(name, SCALARS[name])
    return _variant(name, _nested(values())[name])


ALL_VARIANTS = (*SCALARS, *_nested(st.just(V.Value())))
