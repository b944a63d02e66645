//! Feast's `feast.types.Value`, `feast.types.EntityKey` and `google.protobuf.Timestamp`
//! as prost messages, written with derive so that building needs no `protoc`.
//!
//! Field numbers and types follow `feast/types/Value.proto` and
//! `feast/types/EntityKey.proto` of Feast 0.67; the Python tests check that every
//! variant re-encodes to the bytes Python's protobuf writes.

use prost::{Enumeration, Message, Oneof};

#[derive(Clone, PartialEq, Message)]
pub struct Value {
    #[prost(
        oneof = "Val",
        tags = "1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, \
                25, 26, 27, 28, 29, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48"
    )]
    pub val: Option<Val>,
}

#[derive(Clone, PartialEq, Oneof)]
pub enum Val {
    #[prost(bytes = "vec", tag = "1")]
    BytesVal(Vec<u8>),
    #[prost(string, tag = "2")]
    StringVal(String),
    #[prost(int32, tag = "3")]
    Int32Val(i32),
    #[prost(int64, tag = "4")]
    Int64Val(i64),
    #[prost(double, tag = "5")]
    DoubleVal(f64),
    #[prost(float, tag = "6")]
    FloatVal(f32),
    #[prost(bool, tag = "7")]
    BoolVal(bool),
    #[prost(int64, tag = "8")]
    UnixTimestampVal(i64),
    #[prost(message, tag = "11")]
    BytesListVal(BytesList),
    #[prost(message, tag = "12")]
    StringListVal(StringList),
    #[prost(message, tag = "13")]
    Int32ListVal(Int32List),
    #[prost(message, tag = "14")]
    Int64ListVal(Int64List),
    #[prost(message, tag = "15")]
    DoubleListVal(DoubleList),
    #[prost(message, tag = "16")]
    FloatListVal(FloatList),
    #[prost(message, tag = "17")]
    BoolListVal(BoolList),
    #[prost(message, tag = "18")]
    UnixTimestampListVal(Int64List),
    #[prost(enumeration = "Null", tag = "19")]
    NullVal(i32),
    #[prost(message, tag = "20")]
    MapVal(Map),
    #[prost(message, tag = "21")]
    MapListVal(MapList),
    #[prost(message, tag = "22")]
    BytesSetVal(BytesList),
    #[prost(message, tag = "23")]
    StringSetVal(StringList),
    #[prost(message, tag = "24")]
    Int32SetVal(Int32List),
    #[prost(message, tag = "25")]
    Int64SetVal(Int64List),
    #[prost(message, tag = "26")]
    DoubleSetVal(DoubleList),
    #[prost(message, tag = "27")]
    FloatSetVal(FloatList),
    #[prost(message, tag = "28")]
    BoolSetVal(BoolList),
    #[prost(message, tag = "29")]
    UnixTimestampSetVal(Int64List),
    #[prost(string, tag = "32")]
    JsonVal(String),
    #[prost(message, tag = "33")]
    JsonListVal(StringList),
    #[prost(message, tag = "34")]
    StructVal(Map),
    #[prost(message, tag = "35")]
    StructListVal(MapList),
    #[prost(string, tag = "36")]
    UuidVal(String),
    #[prost(string, tag = "37")]
    TimeUuidVal(String),
    #[prost(message, tag = "38")]
    UuidListVal(StringList),
    #[prost(message, tag = "39")]
    TimeUuidListVal(StringList),
    #[prost(message, tag = "40")]
    UuidSetVal(StringList),
    #[prost(message, tag = "41")]
    TimeUuidSetVal(StringList),
    #[prost(message, tag = "42")]
    ListVal(RepeatedValue),
    #[prost(message, tag = "43")]
    SetVal(RepeatedValue),
    #[prost(string, tag = "44")]
    DecimalVal(String),
    #[prost(message, tag = "45")]
    DecimalListVal(StringList),
    #[prost(message, tag = "46")]
    DecimalSetVal(StringList),
    #[prost(message, tag = "47")]
    ScalarMapVal(ScalarMap),
    #[prost(message, tag = "48")]
    ZonedTimestampVal(ZonedTimestamp),
}

impl Val {
    /// The oneof field's name, as Python's `Value.WhichOneof("val")` gives it.
    pub fn field_name(&self) -> &'static str {
        match self {
            Val::BytesVal(_) => "bytes_val",
            Val::StringVal(_) => "string_val",
            Val::Int32Val(_) => "int32_val",
            Val::Int64Val(_) => "int64_val",
            Val::DoubleVal(_) => "double_val",
            Val::FloatVal(_) => "float_val",
            Val::BoolVal(_) => "bool_val",
            Val::UnixTimestampVal(_) => "unix_timestamp_val",
            Val::BytesListVal(_) => "bytes_list_val",
            Val::StringListVal(_) => "string_list_val",
            Val::Int32ListVal(_) => "int32_list_val",
            Val::Int64ListVal(_) => "int64_list_val",
            Val::DoubleListVal(_) => "double_list_val",
            Val::FloatListVal(_) => "float_list_val",
            Val::BoolListVal(_) => "bool_list_val",
            Val::UnixTimestampListVal(_) => "unix_timestamp_list_val",
            Val::NullVal(_) => "null_val",
            Val::MapVal(_) => "map_val",
            Val::MapListVal(_) => "map_list_val",
            Val::BytesSetVal(_) => "bytes_set_val",
            Val::StringSetVal(_) => "string_set_val",
            Val::Int32SetVal(_) => "int32_set_val",
            Val::Int64SetVal(_) => "int64_set_val",
            Val::DoubleSetVal(_) => "double_set_val",
            Val::FloatSetVal(_) => "float_set_val",
            Val::BoolSetVal(_) => "bool_set_val",
            Val::UnixTimestampSetVal(_) => "unix_timestamp_set_val",
            Val::JsonVal(_) => "json_val",
            Val::JsonListVal(_) => "json_list_val",
            Val::StructVal(_) => "struct_val",
            Val::StructListVal(_) => "struct_list_val",
            Val::UuidVal(_) => "uuid_val",
            Val::TimeUuidVal(_) => "time_uuid_val",
            Val::UuidListVal(_) => "uuid_list_val",
            Val::TimeUuidListVal(_) => "time_uuid_list_val",
            Val::UuidSetVal(_) => "uuid_set_val",
            Val::TimeUuidSetVal(_) => "time_uuid_set_val",
            Val::ListVal(_) => "list_val",
            Val::SetVal(_) => "set_val",
            Val::DecimalVal(_) => "decimal_val",
            Val::DecimalListVal(_) => "decimal_list_val",
            Val::DecimalSetVal(_) => "decimal_set_val",
            Val::ScalarMapVal(_) => "scalar_map_val",
            Val::ZonedTimestampVal(_) => "zoned_timestamp_val",
        }
    }
}

/// Feast's `ValueType.Enum` numbers that appear inside serialized entity keys.
pub mod value_type {
    pub const BYTES: u32 = 1;
    pub const STRING: u32 = 2;
    pub const INT32: u32 = 3;
    pub const INT64: u32 = 4;
    pub const UNIX_TIMESTAMP: u32 = 8;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enumeration)]
#[repr(i32)]
pub enum Null {
    Null = 0,
}

#[derive(Clone, PartialEq, Message)]
pub struct ZonedTimestamp {
    #[prost(int64, tag = "1")]
    pub unix_timestamp: i64,
    #[prost(string, tag = "2")]
    pub zone: String,
}

// Feast declares distinct `*List` and `*Set` messages with the same single field; their
// wire format is identical, so one Rust type serves both.

#[derive(Clone, PartialEq, Message)]
pub struct BytesList {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub val: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StringList {
    #[prost(string, repeated, tag = "1")]
    pub val: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Int32List {
    #[prost(int32, repeated, tag = "1")]
    pub val: Vec<i32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Int64List {
    #[prost(int64, repeated, tag = "1")]
    pub val: Vec<i64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct DoubleList {
    #[prost(double, repeated, tag = "1")]
    pub val: Vec<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct FloatList {
    #[prost(float, repeated, tag = "1")]
    pub val: Vec<f32>,
}

#[derive(Clone, PartialEq, Message)]
pub struct BoolList {
    #[prost(bool, repeated, tag = "1")]
    pub val: Vec<bool>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Map {
    #[prost(message, repeated, tag = "1")]
    pub val: Vec<MapEntry>,
}

/// An entry of `Map.val`, a proto `map<string, Value>`. Modelled as its wire format (a
/// repeated entry message) rather than a Rust map, so that decoding and encoding again
/// keeps the entries' order, and with an optional key because Python's protobuf writes
/// the key of a map entry even when it is empty.
#[derive(Clone, PartialEq, Message)]
pub struct MapEntry {
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Value>,
}

#[derive(Clone, PartialEq, Message)]
pub struct MapList {
    #[prost(message, repeated, tag = "1")]
    pub val: Vec<Map>,
}

#[derive(Clone, PartialEq, Message)]
pub struct RepeatedValue {
    #[prost(message, repeated, tag = "1")]
    pub val: Vec<Value>,
}

#[derive(Clone, PartialEq, Message)]
pub struct MapKey {
    #[prost(oneof = "MapKeyVal", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10")]
    pub key: Option<MapKeyVal>,
}

#[derive(Clone, PartialEq, Oneof)]
pub enum MapKeyVal {
    #[prost(int32, tag = "1")]
    Int32Key(i32),
    #[prost(int64, tag = "2")]
    Int64Key(i64),
    #[prost(float, tag = "3")]
    FloatKey(f32),
    #[prost(double, tag = "4")]
    DoubleKey(f64),
    #[prost(bool, tag = "5")]
    BoolKey(bool),
    #[prost(int64, tag = "6")]
    UnixTimestampKey(i64),
    #[prost(bytes = "vec", tag = "7")]
    BytesKey(Vec<u8>),
    #[prost(string, tag = "8")]
    UuidKey(String),
    #[prost(string, tag = "9")]
    TimeUuidKey(String),
    #[prost(string, tag = "10")]
    DecimalKey(String),
}

#[derive(Clone, PartialEq, Message)]
pub struct ScalarMapEntry {
    #[prost(message, optional, tag = "1")]
    pub key: Option<MapKey>,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Value>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ScalarMap {
    #[prost(message, repeated, tag = "1")]
    pub val: Vec<ScalarMapEntry>,
}

#[derive(Clone, PartialEq, Message)]
pub struct EntityKey {
    #[prost(string, repeated, tag = "1")]
    pub join_keys: Vec<String>,
    #[prost(message, repeated, tag = "2")]
    pub entity_values: Vec<Value>,
}

/// `google.protobuf.Timestamp`, the value of a `_ts:{view}` hash field.
#[derive(Clone, Copy, PartialEq, Eq, Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `feast.core.PrecomputedFeatureVector`: a feature service's features for one entity,
/// stored by Feast 0.64 on as the `vector` of view `__precomputed__{service}`.
#[derive(Clone, PartialEq, Message)]
pub struct PrecomputedFeatureVector {
    /// `{view}__{feature}` of each value.
    #[prost(string, repeated, tag = "1")]
    pub feature_names: Vec<String>,
    #[prost(message, repeated, tag = "2")]
    pub values: Vec<Value>,
    /// The event time each view's features were read at.
    #[prost(message, repeated, tag = "3")]
    pub fv_timestamps: Vec<FeatureViewTimestamp>,
    #[prost(message, optional, tag = "4")]
    pub precomputed_at: Option<Timestamp>,
}

#[derive(Clone, PartialEq, Message)]
pub struct FeatureViewTimestamp {
    #[prost(string, tag = "1")]
    pub feature_view_name: String,
    #[prost(message, optional, tag = "2")]
    pub event_timestamp: Option<Timestamp>,
}
