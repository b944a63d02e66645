//! Stored `feast.types.Value`s to Arrow columns, by the feature's declared dtype, and
//! (`encode`) Arrow columns to the stored bytes.
//! A value of another type than declared (or a kind this module does not map, like
//! `null_val`) makes the column "not columnar": callers then take Feast's proto path,
//! which converts value by value exactly as Feast does.

use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder,
    ListBuilder, StringBuilder, TimestampSecondBuilder,
};
use arrow_array::ArrayRef;
use prost::Message;

use crate::encoding::proto::{Val, Value};
use crate::encoding::EncodingError;

mod encode;

pub use encode::{encode_column, micros, timestamp_values, EncodedColumn};

/// Feast's `NULL_TIMESTAMP_INT_VALUE`: a unix timestamp Feast reads as None.
pub const NULL_TIMESTAMP: i64 = i64::MIN;

/// The time zone of timestamp columns: pyarrow turns "+00:00" into
/// `datetime.timezone.utc`, the tzinfo Feast's own conversion gives.
const UTC: &str = "+00:00";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarType {
    Int32,
    Int64,
    Float32,
    Float64,
    String,
    Bytes,
    Bool,
    UnixTimestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeatureType {
    pub scalar: ScalarType,
    pub list: bool,
}

impl FeatureType {
    /// The type of a Feast `ValueType` name (`INT64`, `STRING_LIST`, ...), or `None` for
    /// the kinds that stay on the proto path (maps, sets, JSON, UUIDs, decimals...).
    pub fn from_value_type(name: &str) -> Option<Self> {
        let (scalar, list) = match name.strip_suffix("_LIST") {
            Some(scalar) => (scalar, true),
            None => (name, false),
        };
        let scalar = match scalar {
            "INT32" => ScalarType::Int32,
            "INT64" => ScalarType::Int64,
            "FLOAT" => ScalarType::Float32,
            "DOUBLE" => ScalarType::Float64,
            "STRING" => ScalarType::String,
            "BYTES" => ScalarType::Bytes,
            "BOOL" => ScalarType::Bool,
            "UNIX_TIMESTAMP" => ScalarType::UnixTimestamp,
            _ => return None,
        };
        Some(Self { scalar, list })
    }
}

/// Appends one decoded value; `false` when its type is not the column's.
trait Append {
    fn append(&mut self, value: &Val) -> bool;
}

macro_rules! scalar_append {
    ($builder:ty, $variant:ident, |$v:ident| $convert:expr) => {
        impl Append for $builder {
            fn append(&mut self, value: &Val) -> bool {
                match value {
                    Val::$variant($v) => {
                        self.append_value($convert);
                        true
                    }
                    _ => false,
                }
            }
        }
    };
}

scalar_append!(Int32Builder, Int32Val, |v| *v);
scalar_append!(Int64Builder, Int64Val, |v| *v);
scalar_append!(Float32Builder, FloatVal, |v| *v);
scalar_append!(Float64Builder, DoubleVal, |v| *v);
scalar_append!(StringBuilder, StringVal, |v| v);
scalar_append!(BinaryBuilder, BytesVal, |v| v);
scalar_append!(BooleanBuilder, BoolVal, |v| *v);

impl Append for TimestampSecondBuilder {
    fn append(&mut self, value: &Val) -> bool {
        match value {
            Val::UnixTimestampVal(NULL_TIMESTAMP) => self.append_null(),
            Val::UnixTimestampVal(v) => self.append_value(*v),
            _ => return false,
        }
        true
    }
}

macro_rules! list_append {
    ($builder:ty, $variant:ident, |$items:ident, $values:ident| $fill:expr) => {
        impl Append for ListBuilder<$builder> {
            fn append(&mut self, value: &Val) -> bool {
                match value {
                    Val::$variant(list) => {
                        let $items = &list.val;
                        let $values = self.values();
                        $fill;
                        self.append(true);
                        true
                    }
                    _ => false,
                }
            }
        }
    };
}

list_append!(Int32Builder, Int32ListVal, |items, values| values
    .append_slice(items));
list_append!(Int64Builder, Int64ListVal, |items, values| values
    .append_slice(items));
list_append!(Float32Builder, FloatListVal, |items, values| values
    .append_slice(items));
list_append!(Float64Builder, DoubleListVal, |items, values| values
    .append_slice(items));
list_append!(StringBuilder, StringListVal, |items, values| items
    .iter()
    .for_each(|s| values.append_value(s)));
list_append!(BinaryBuilder, BytesListVal, |items, values| items
    .iter()
    .for_each(|b| values.append_value(b)));
list_append!(BooleanBuilder, BoolListVal, |items, values| items
    .iter()
    .for_each(|b| values.append_value(*b)));
list_append!(TimestampSecondBuilder, UnixTimestampListVal, |items, values| {
    items.iter().for_each(|&t| {
        if t == NULL_TIMESTAMP {
            values.append_null()
        } else {
            values.append_value(t)
        }
    })
});

/// A stored value that is not a `feast.types.Value`, at `position` of the values given.
#[derive(Debug)]
pub struct InvalidValue {
    pub position: usize,
    pub error: EncodingError,
}

/// The wire form nearly every stored scalar has: one field, its tag byte first.
/// `append_wire` appends a value given in that form and returns `false` for any other
/// form (several fields, another field, an empty message), which prost then decodes:
/// the result is the same, without decoding into an owned `Value` first.
trait AppendWire {
    fn append_wire(&mut self, bytes: &[u8]) -> bool;
}

/// A varint that is the whole of `bytes` (at most 10 bytes, the last holding one bit,
/// the varints prost accepts).
fn whole_varint(bytes: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (index, &byte) in bytes.iter().enumerate().take(10) {
        if index == 9 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return (index + 1 == bytes.len()).then_some(value);
        }
    }
    None
}

/// A length-delimited payload that is the whole rest of `bytes`.
fn whole_delimited(bytes: &[u8]) -> Option<&[u8]> {
    let prefix = bytes.iter().position(|&b| b & 0x80 == 0)? + 1;
    let len = whole_varint(&bytes[..prefix])?;
    let payload = &bytes[prefix..];
    (payload.len() as u64 == len).then_some(payload)
}

// Tag bytes of `feast.types.Value`'s scalar fields: (field number << 3) | wire type.
const BYTES_VAL: u8 = 1 << 3 | 2;
const STRING_VAL: u8 = 2 << 3 | 2;
const INT32_VAL: u8 = 3 << 3;
const INT64_VAL: u8 = 4 << 3;
const DOUBLE_VAL: u8 = 5 << 3 | 1;
const FLOAT_VAL: u8 = 6 << 3 | 5;
const BOOL_VAL: u8 = 7 << 3;
const UNIX_TIMESTAMP_VAL: u8 = 8 << 3;

macro_rules! wire_append {
    ($builder:ty, $tag:expr, |$b:ident, $payload:ident| $append:expr) => {
        impl AppendWire for $builder {
            fn append_wire(&mut self, bytes: &[u8]) -> bool {
                let $b = self;
                match bytes.split_first() {
                    Some((&tag, $payload)) if tag == $tag => $append,
                    _ => false,
                }
            }
        }
    };
}

// An int32 varint is read as its low 32 bits, as prost reads it.
wire_append!(Int32Builder, INT32_VAL, |b, payload| whole_varint(payload)
    .map(|v| b.append_value(v as i32))
    .is_some());
wire_append!(Int64Builder, INT64_VAL, |b, payload| whole_varint(payload)
    .map(|v| b.append_value(v as i64))
    .is_some());
wire_append!(BooleanBuilder, BOOL_VAL, |b, payload| whole_varint(payload)
    .map(|v| b.append_value(v != 0))
    .is_some());
wire_append!(Float64Builder, DOUBLE_VAL, |b, payload| <[u8; 8]>::try_from(
    payload
)
.map(|v| b.append_value(f64::from_le_bytes(v)))
.is_ok());
wire_append!(Float32Builder, FLOAT_VAL, |b, payload| <[u8; 4]>::try_from(
    payload
)
.map(|v| b.append_value(f32::from_le_bytes(v)))
.is_ok());
wire_append!(BinaryBuilder, BYTES_VAL, |b, payload| whole_delimited(payload)
    .map(|v| b.append_value(v))
    .is_some());
wire_append!(StringBuilder, STRING_VAL, |b, payload| whole_delimited(payload)
    .and_then(|v| std::str::from_utf8(v).ok())
    .map(|v| b.append_value(v))
    .is_some());
wire_append!(TimestampSecondBuilder, UNIX_TIMESTAMP_VAL, |b, payload| {
    whole_varint(payload)
        .map(|v| match v as i64 {
            NULL_TIMESTAMP => b.append_null(),
            seconds => b.append_value(seconds),
        })
        .is_some()
});

impl<B: ArrayBuilder> AppendWire for ListBuilder<B> {
    fn append_wire(&mut self, _bytes: &[u8]) -> bool {
        false
    }
}

/// A builder fed one stored value at a time.
trait Fill: Send {
    /// Appends `bytes` (`None` where the hash had no field); `Ok(false)` when the value
    /// is not of the column's type.
    fn push(&mut self, bytes: Option<&[u8]>) -> Result<bool, EncodingError>;
    fn finish(&mut self) -> ArrayRef;
}

struct Filler<B> {
    builder: B,
    append_null: fn(&mut B),
}

impl<B: ArrayBuilder + Append + AppendWire> Fill for Filler<B> {
    fn push(&mut self, bytes: Option<&[u8]>) -> Result<bool, EncodingError> {
        let Some(bytes) = bytes else {
            (self.append_null)(&mut self.builder);
            return Ok(true);
        };
        if self.builder.append_wire(bytes) {
            return Ok(true);
        }
        let value = Value::decode(bytes).map_err(|err| EncodingError::InvalidProto {
            message: "feast.types.Value",
            reason: err.to_string(),
        })?;
        Ok(match value.val {
            None => {
                (self.append_null)(&mut self.builder);
                true
            }
            Some(val) => self.builder.append(&val),
        })
    }

    fn finish(&mut self) -> ArrayRef {
        ArrayBuilder::finish(&mut self.builder)
    }
}

fn filler<B: ArrayBuilder + Append + AppendWire>(builder: B, append_null: fn(&mut B)) -> Box<dyn Fill> {
    Box::new(Filler { builder, append_null })
}

/// One feature's Arrow column, decoded a stored value at a time (as the replies holding
/// them arrive). Missing and empty values are nulls, as Feast reads them.
pub struct ColumnDecoder(Box<dyn Fill>);

impl ColumnDecoder {
    /// A decoder for `capacity` values of type `ty`.
    pub fn new(ty: FeatureType, capacity: usize) -> Self {
        macro_rules! decoder {
            ($builder:expr) => {
                if ty.list {
                    Self(filler(
                        ListBuilder::with_capacity($builder, capacity),
                        |b| b.append_null(),
                    ))
                } else {
                    Self(filler($builder, |b| b.append_null()))
                }
            };
        }
        match ty.scalar {
            ScalarType::Int32 => decoder!(Int32Builder::with_capacity(capacity)),
            ScalarType::Int64 => decoder!(Int64Builder::with_capacity(capacity)),
            ScalarType::Float32 => decoder!(Float32Builder::with_capacity(capacity)),
            ScalarType::Float64 => decoder!(Float64Builder::with_capacity(capacity)),
            ScalarType::String => decoder!(StringBuilder::with_capacity(capacity, capacity * 8)),
            ScalarType::Bytes => decoder!(BinaryBuilder::with_capacity(capacity, capacity * 8)),
            ScalarType::Bool => decoder!(BooleanBuilder::with_capacity(capacity)),
            ScalarType::UnixTimestamp => {
                decoder!(TimestampSecondBuilder::with_capacity(capacity).with_timezone(UTC))
            }
        }
    }

    /// Appends one serialized `Value` (`None` where the hash had no field); `Ok(false)`
    /// when it is not of the column's type, which makes the column not columnar.
    pub fn push(&mut self, bytes: Option<&[u8]>) -> Result<bool, EncodingError> {
        self.0.push(bytes)
    }

    /// The column of the values pushed so far; the decoder starts over empty.
    pub fn finish(&mut self) -> ArrayRef {
        self.0.finish()
    }
}

/// The Arrow column of `values` (serialized `Value`s, `None` where the hash had no
/// field), each decoded once, or `Ok(None)` when a value is not of type `ty`.
pub fn decode_column<'a>(
    ty: FeatureType,
    values: impl ExactSizeIterator<Item = Option<&'a [u8]>>,
) -> Result<Option<ArrayRef>, InvalidValue> {
    let mut decoder = ColumnDecoder::new(ty, values.len());
    for (position, bytes) in values.enumerate() {
        match decoder.push(bytes) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(error) => return Err(InvalidValue { position, error }),
        }
    }
    Ok(Some(decoder.finish()))
}

#[cfg(test)]
mod tests;
