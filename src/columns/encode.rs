//! Arrow columns to the `feast.types.Value` bytes Feast stores, for the columns whose
//! Arrow type is the natural one for the feature's dtype. The results equal what
//! Feast's `_convert_arrow_to_proto` makes of the same columns (through numpy and
//! `python_values_to_proto_values`); any other column is `None`, for the caller to
//! hand to Feast's own conversion.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit};
use prost::Message;

use super::{FeatureType, ScalarType, BYTES_VAL, NULL_TIMESTAMP, STRING_VAL};
use crate::encoding::proto::{
    BoolList, BytesList, DoubleList, FloatList, Int32List, Int64List, StringList, Val, Value,
};

/// Seconds of an Arrow timestamp value, as numpy's `astype("datetime64[s]")` gives
/// them (floor).
fn seconds(value: i64, unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => value,
        TimeUnit::Millisecond => value.div_euclid(1_000),
        TimeUnit::Microsecond => value.div_euclid(1_000_000),
        TimeUnit::Nanosecond => value.div_euclid(1_000_000_000),
    }
}

/// Microseconds of an Arrow timestamp value, as pandas' `to_pydatetime` keeps them
/// (floor), for event times.
pub fn micros(value: i64, unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => value.saturating_mul(1_000_000),
        TimeUnit::Millisecond => value.saturating_mul(1_000),
        TimeUnit::Microsecond => value,
        TimeUnit::Nanosecond => value.div_euclid(1_000),
    }
}

/// The raw values of a timestamp column, in its unit.
pub fn timestamp_values(column: &ArrayRef, unit: &TimeUnit) -> Vec<i64> {
    match unit {
        TimeUnit::Second => column.as_primitive::<TimestampSecondType>().values().to_vec(),
        TimeUnit::Millisecond => column
            .as_primitive::<TimestampMillisecondType>()
            .values()
            .to_vec(),
        TimeUnit::Microsecond => column
            .as_primitive::<TimestampMicrosecondType>()
            .values()
            .to_vec(),
        TimeUnit::Nanosecond => column.as_primitive::<TimestampNanosecondType>().values().to_vec(),
    }
}

/// The stored bytes of a column's values, one after another in one buffer.
#[derive(Default)]
pub struct EncodedColumn {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl EncodedColumn {
    fn with_capacity(len: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(len * 8),
            ends: Vec::with_capacity(len),
        }
    }

    /// The bytes of value `row`.
    pub fn get(&self, row: usize) -> &[u8] {
        let start = row.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.bytes[start..self.ends[row]]
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn push(&mut self, val: Option<Val>) {
        Value { val }
            .encode(&mut self.bytes)
            .expect("a Vec grows as needed");
        self.ends.push(self.bytes.len());
    }

    /// A `Value` whose one field, with tag byte `tag`, is length-delimited `payload`: the
    /// bytes prost writes for a string or bytes value, without copying it into one.
    fn push_delimited(&mut self, tag: u8, payload: &[u8]) {
        self.bytes.push(tag);
        prost::encoding::encode_varint(payload.len() as u64, &mut self.bytes);
        self.bytes.extend_from_slice(payload);
        self.ends.push(self.bytes.len());
    }
}

/// The stored bytes of every value of `column` for a feature of type `ty`, or `None`
/// when this column's Arrow type is not the one this path maps for `ty`.
pub fn encode_column(ty: FeatureType, column: &ArrayRef) -> Option<EncodedColumn> {
    if ty.list {
        return encode_lists(ty.scalar, column);
    }
    let len = column.len();
    let mut out = EncodedColumn::with_capacity(len);
    let mut each = |f: &dyn Fn(usize) -> Option<Val>| {
        for i in 0..len {
            out.push(if column.is_null(i) { None } else { f(i) });
        }
    };
    match (ty.scalar, column.data_type()) {
        (ScalarType::Int64, DataType::Int64) => {
            let a = column.as_primitive::<Int64Type>();
            each(&|i| Some(Val::Int64Val(a.value(i))))
        }
        (ScalarType::Int32, DataType::Int32) => {
            let a = column.as_primitive::<Int32Type>();
            each(&|i| Some(Val::Int32Val(a.value(i))))
        }
        // `pd.isnull` makes NaN a null, as it does a missing value.
        (ScalarType::Float64, DataType::Float64) => {
            let a = column.as_primitive::<Float64Type>();
            each(&|i| (!a.value(i).is_nan()).then(|| Val::DoubleVal(a.value(i))))
        }
        (ScalarType::Float32, DataType::Float32) => {
            let a = column.as_primitive::<Float32Type>();
            each(&|i| (!a.value(i).is_nan()).then(|| Val::FloatVal(a.value(i))))
        }
        (ScalarType::String, DataType::Utf8) => {
            let a = column.as_string::<i32>();
            for i in 0..len {
                match column.is_null(i) {
                    true => out.push(None),
                    false => out.push_delimited(STRING_VAL, a.value(i).as_bytes()),
                }
            }
        }
        (ScalarType::Bytes, DataType::Binary) => {
            let a = column.as_binary::<i32>();
            for i in 0..len {
                match column.is_null(i) {
                    true => out.push(None),
                    false => out.push_delimited(BYTES_VAL, a.value(i)),
                }
            }
        }
        (ScalarType::Bool, DataType::Boolean) => {
            let a = column.as_boolean();
            each(&|i| Some(Val::BoolVal(a.value(i))))
        }
        // A missing timestamp goes through numpy as NaT, which Feast stores as its
        // NULL_TIMESTAMP_INT_VALUE rather than as an empty Value.
        (ScalarType::UnixTimestamp, DataType::Timestamp(unit, _)) => {
            let values = timestamp_values(column, unit);
            for (i, &value) in values.iter().enumerate() {
                let v = if column.is_null(i) {
                    NULL_TIMESTAMP
                } else {
                    seconds(value, unit)
                };
                out.push(Some(Val::UnixTimestampVal(v)));
            }
        }
        _ => return None,
    }
    Some(out)
}

fn encode_lists(scalar: ScalarType, column: &ArrayRef) -> Option<EncodedColumn> {
    let DataType::List(item) = column.data_type() else {
        return None;
    };
    let lists = column.as_list::<i32>();
    let mut out = EncodedColumn::with_capacity(lists.len());
    for i in 0..lists.len() {
        if lists.is_null(i) {
            out.push(None);
            continue;
        }
        let items = lists.value(i);
        // Feast replaces missing items with per-type defaults: left to its conversion.
        if items.null_count() > 0 {
            return None;
        }
        let val = match (scalar, item.data_type()) {
            (ScalarType::Int64, DataType::Int64) => Val::Int64ListVal(Int64List {
                val: items.as_primitive::<Int64Type>().values().to_vec(),
            }),
            (ScalarType::Int32, DataType::Int32) => Val::Int32ListVal(Int32List {
                val: items.as_primitive::<Int32Type>().values().to_vec(),
            }),
            (ScalarType::Float64, DataType::Float64) => Val::DoubleListVal(DoubleList {
                val: items.as_primitive::<Float64Type>().values().to_vec(),
            }),
            (ScalarType::Float32, DataType::Float32) => Val::FloatListVal(FloatList {
                val: items.as_primitive::<Float32Type>().values().to_vec(),
            }),
            (ScalarType::String, DataType::Utf8) => Val::StringListVal(StringList {
                val: items
                    .as_string::<i32>()
                    .iter()
                    .map(|s| s.unwrap_or_default().to_owned())
                    .collect(),
            }),
            (ScalarType::Bytes, DataType::Binary) => Val::BytesListVal(BytesList {
                val: items
                    .as_binary::<i32>()
                    .iter()
                    .map(|b| b.unwrap_or_default().to_vec())
                    .collect(),
            }),
            (ScalarType::Bool, DataType::Boolean) => Val::BoolListVal(BoolList {
                val: items.as_boolean().iter().map(|b| b.unwrap_or_default()).collect(),
            }),
            _ => return None,
        };
        out.push(Some(val));
    }
    Some(out)
}
