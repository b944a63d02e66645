use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampSecondType};
use arrow_array::Array;
use arrow_schema::{DataType, TimeUnit};

use super::*;
use crate::encoding::proto::{Int64List, StringList};

fn stored(val: Option<Val>) -> Vec<u8> {
    Value { val }.encode_to_vec()
}

fn decode(ty: &str, values: &[Option<Vec<u8>>]) -> Option<ArrayRef> {
    let ty = FeatureType::from_value_type(ty).unwrap();
    decode_column(ty, values.iter().map(|v| v.as_deref())).unwrap()
}

#[test]
fn scalars_and_nulls() {
    let column = decode(
        "INT64",
        &[
            Some(stored(Some(Val::Int64Val(7)))),
            None,
            Some(stored(None)),
            Some(Vec::new()),
        ],
    )
    .unwrap();
    let ints = column.as_primitive::<Int64Type>();
    assert_eq!(ints.len(), 4);
    assert_eq!(ints.value(0), 7);
    assert_eq!(ints.null_count(), 3);
}

#[test]
fn lists_keep_empty_lists_apart_from_nulls() {
    let column = decode(
        "STRING_LIST",
        &[
            Some(stored(Some(Val::StringListVal(StringList {
                val: vec!["a".into(), "b".into()],
            })))),
            Some(stored(Some(Val::StringListVal(StringList { val: vec![] })))),
            None,
        ],
    )
    .unwrap();
    let lists = column.as_list::<i32>();
    assert_eq!(lists.value(0).len(), 2);
    assert!(lists.is_valid(1) && lists.value(1).is_empty());
    assert!(lists.is_null(2));
}

#[test]
fn timestamps_are_utc_seconds_with_feasts_null() {
    let column = decode(
        "UNIX_TIMESTAMP_LIST",
        &[Some(stored(Some(Val::UnixTimestampListVal(Int64List {
            val: vec![5, NULL_TIMESTAMP],
        }))))],
    )
    .unwrap();
    let item = column.as_list::<i32>().value(0);
    assert_eq!(
        item.data_type(),
        &DataType::Timestamp(TimeUnit::Second, Some(UTC.into()))
    );
    assert_eq!(item.as_primitive::<TimestampSecondType>().value(0), 5);
    assert!(item.is_null(1));
}

#[test]
fn another_type_than_declared_is_not_columnar() {
    assert!(decode("INT64", &[Some(stored(Some(Val::Int32Val(1))))]).is_none());
    assert!(decode("STRING", &[Some(stored(Some(Val::NullVal(0))))]).is_none());
    assert!(FeatureType::from_value_type("UUID").is_none());
    assert!(FeatureType::from_value_type("INT64_SET").is_none());
}

#[test]
fn corrupt_bytes_are_an_error() {
    let ty = FeatureType::from_value_type("INT64").unwrap();
    let values = [None, Some(&b"\x0a\xff"[..])];
    assert_eq!(decode_column(ty, values.into_iter()).unwrap_err().position, 1);
}

/// Values in the one-field wire form (read without prost) and in every other form
/// (read by prost) decode alike, with prost's errors.
#[test]
fn every_wire_form_of_a_scalar_decodes_as_prost_does() {
    use arrow_array::types::{Float64Type, Int32Type};

    let int64 = |v: i64| stored(Some(Val::Int64Val(v)));
    let twice = [int64(1), int64(-2)].concat();
    let column = decode("INT64", &[Some(int64(-1)), Some(int64(i64::MAX)), Some(twice)]).unwrap();
    let ints = column.as_primitive::<Int64Type>();
    assert_eq!(ints.values().to_vec(), vec![-1, i64::MAX, -2]);

    let column = decode("INT32", &[Some(stored(Some(Val::Int32Val(-5))))]).unwrap();
    assert_eq!(column.as_primitive::<Int32Type>().value(0), -5);

    let doubles = [
        Some(stored(Some(Val::DoubleVal(1.5)))),
        Some(stored(Some(Val::DoubleVal(f64::MIN)))),
    ];
    let column = decode("DOUBLE", &doubles).unwrap();
    assert_eq!(
        column.as_primitive::<Float64Type>().values().to_vec(),
        vec![1.5, f64::MIN]
    );

    let strings = [
        Some(stored(Some(Val::StringVal("é".repeat(100))))),
        Some(stored(Some(Val::StringVal(String::new())))),
    ];
    let column = decode("STRING", &strings).unwrap();
    assert_eq!(column.as_string::<i32>().value(0), "é".repeat(100));
    assert_eq!(column.as_string::<i32>().value(1), "");

    let column = decode(
        "UNIX_TIMESTAMP",
        &[
            Some(stored(Some(Val::UnixTimestampVal(NULL_TIMESTAMP)))),
            Some(stored(Some(Val::UnixTimestampVal(9)))),
        ],
    )
    .unwrap();
    assert!(column.is_null(0));
    assert_eq!(column.as_primitive::<TimestampSecondType>().value(1), 9);

    let column = decode("BOOL", &[Some(vec![0x38, 0x02]), Some(vec![0x38, 0x00])]).unwrap();
    assert!(column.as_boolean().value(0) && !column.as_boolean().value(1));

    let ty = FeatureType::from_value_type;
    let corrupt: [&[u8]; 4] = [
        b"\x12\x02\xff\xfe",                             // a string that is not UTF-8
        b"\x20\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", // a varint over 64 bits
        b"\x20",                                         // a varint cut short
        b"\x12\x05ab",                                   // a string cut short
    ];
    for (bytes, dtype) in corrupt.into_iter().zip(["STRING", "INT64", "INT64", "STRING"]) {
        let result = decode_column(ty(dtype).unwrap(), [Some(bytes)].into_iter());
        assert!(result.is_err(), "{bytes:?} must be an error, as prost makes it");
    }
}
