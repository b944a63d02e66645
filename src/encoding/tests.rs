//! Wire-format checks of the prost messages and fuzzing of every decoder.

use super::proto::*;
use super::*;
use proptest::prelude::*;
use prost::Message;

fn value(val: Val) -> Value {
    Value { val: Some(val) }
}

#[test]
fn scalars_have_python_protobuf_bytes() {
    // Bytes written by Python's protobuf for the same messages.
    assert_eq!(value(Val::Int32Val(1)).encode_to_vec(), b"\x18\x01");
    assert_eq!(
        value(Val::Int64Val(-1)).encode_to_vec(),
        b"\x20\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"
    );
    assert_eq!(value(Val::StringVal(String::new())).encode_to_vec(), b"\x12\x00");
    assert_eq!(value(Val::BoolVal(false)).encode_to_vec(), b"\x38\x00");
    assert_eq!(
        value(Val::DoubleVal(1.0)).encode_to_vec(),
        b"\x29\x00\x00\x00\x00\x00\x00\xf0\x3f"
    );
    assert_eq!(value(Val::NullVal(0)).encode_to_vec(), b"\x98\x01\x00");
    assert_eq!(Value::default().encode_to_vec(), b"");
}

#[test]
fn repeated_numbers_are_packed() {
    let list = value(Val::Int32ListVal(Int32List { val: vec![1, 2, 300] }));
    assert_eq!(list.encode_to_vec(), b"\x6a\x06\x0a\x04\x01\x02\xac\x02");
}

#[test]
fn map_entries_keep_an_empty_key_and_their_order() {
    // Python's protobuf writes map entries in hash order, with the key even when empty.
    let python = b"\xa2\x01\x11\n\x07\n\x01c\x12\x02\x18\x01\n\x06\n\x00\x12\x02\x18\x02";
    let decoded = decode_value(python).unwrap();
    let Some(Val::MapVal(map)) = &decoded.val else {
        panic!("not a map: {decoded:?}")
    };
    assert_eq!(map.val[0].key.as_deref(), Some("c"));
    assert_eq!(map.val[1].key.as_deref(), Some(""));
    assert_eq!(decoded.encode_to_vec(), python);
}

#[test]
fn timestamp_wire_format() {
    let ts = Timestamp {
        seconds: 1_600_000_000,
        nanos: 5,
    };
    let bytes = ts.encode_to_vec();
    assert_eq!(bytes, b"\x08\x80\xa0\xf8\xfa\x05\x10\x05");
    assert_eq!(decode_timestamp(&bytes).unwrap(), ts);
    assert_eq!(decode_timestamp(b"").unwrap(), Timestamp::default());
}

#[test]
fn field_names_follow_python_which_oneof() {
    assert_eq!(
        Val::UnixTimestampListVal(Int64List::default()).field_name(),
        "unix_timestamp_list_val"
    );
    assert_eq!(
        Val::ZonedTimestampVal(ZonedTimestamp::default()).field_name(),
        "zoned_timestamp_val"
    );
    assert_eq!(
        Val::ScalarMapVal(ScalarMap::default()).field_name(),
        "scalar_map_val"
    );
}

#[test]
fn decoders_reject_garbage_with_the_message_name() {
    let err = decode_value(b"\x12\x05ab").unwrap_err().to_string();
    assert!(err.contains("feast.types.Value"), "{err}");
    let err = decode_value(b"\x12\x02\xff\xfe").unwrap_err().to_string();
    assert!(err.contains("feast.types.Value"), "{err}");
    assert!(decode_timestamp(b"\x08").is_err());
    assert!(decode_entity_key_proto(b"\x0a\x09abc").is_err());
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let mut bytes: Vec<u8> = Vec::new();
    for _ in 0..10_000 {
        // list_val (tag 42, length-delimited) wrapping the previous level as its one element.
        let mut element = vec![0x0a];
        push_varint(&mut element, bytes.len() as u64);
        element.extend_from_slice(&bytes);
        let mut level = vec![0xd2, 0x02];
        push_varint(&mut level, element.len() as u64);
        level.extend_from_slice(&element);
        bytes = level;
    }
    assert!(decode_value(&bytes).is_err());
}

fn push_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn scalar_val() -> impl Strategy<Value = Val> {
    prop_oneof![
        any::<Vec<u8>>().prop_map(Val::BytesVal),
        any::<String>().prop_map(Val::StringVal),
        any::<i32>().prop_map(Val::Int32Val),
        any::<i64>().prop_map(Val::Int64Val),
        any::<f64>().prop_map(Val::DoubleVal),
        any::<f32>().prop_map(Val::FloatVal),
        any::<bool>().prop_map(Val::BoolVal),
        any::<i64>().prop_map(Val::UnixTimestampVal),
        Just(Val::NullVal(0)),
        any::<Vec<Vec<u8>>>().prop_map(|val| Val::BytesSetVal(BytesList { val })),
        any::<Vec<String>>().prop_map(|val| Val::UuidListVal(StringList { val })),
        any::<Vec<i32>>().prop_map(|val| Val::Int32ListVal(Int32List { val })),
        any::<Vec<i64>>().prop_map(|val| Val::UnixTimestampSetVal(Int64List { val })),
        any::<Vec<f64>>().prop_map(|val| Val::DoubleListVal(DoubleList { val })),
        any::<Vec<f32>>().prop_map(|val| Val::FloatSetVal(FloatList { val })),
        any::<Vec<bool>>().prop_map(|val| Val::BoolListVal(BoolList { val })),
        (any::<i64>(), any::<String>()).prop_map(|(unix_timestamp, zone)| Val::ZonedTimestampVal(
            ZonedTimestamp { unix_timestamp, zone }
        )),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![Just(Value::default()), scalar_val().prop_map(value)];
    leaf.prop_recursive(4, 32, 4, |inner| {
        let entries = prop::collection::vec(
            (prop::option::of(any::<String>()), prop::option::of(inner.clone())),
            0..4,
        )
        .prop_map(|entries| Map {
            val: entries
                .into_iter()
                .map(|(key, value)| MapEntry { key, value })
                .collect(),
        });
        let map_key = prop_oneof![
            any::<i64>().prop_map(MapKeyVal::Int64Key),
            any::<Vec<u8>>().prop_map(MapKeyVal::BytesKey),
            any::<String>().prop_map(MapKeyVal::DecimalKey),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|val| value(Val::ListVal(RepeatedValue { val }))),
            prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|val| value(Val::SetVal(RepeatedValue { val }))),
            entries.clone().prop_map(|m| value(Val::StructVal(m))),
            prop::collection::vec(entries, 0..3).prop_map(|val| value(Val::MapListVal(MapList { val }))),
            prop::collection::vec((prop::option::of(map_key), prop::option::of(inner)), 0..3).prop_map(
                |entries| {
                    value(Val::ScalarMapVal(ScalarMap {
                        val: entries
                            .into_iter()
                            .map(|(key, value)| ScalarMapEntry {
                                key: key.map(|key| MapKey { key: Some(key) }),
                                value,
                            })
                            .collect(),
                    }))
                }
            ),
        ]
    })
}

fn same_bits(a: &Value, b: &Value) -> bool {
    // NaN != NaN, so compare what the wire carries.
    a.encode_to_vec() == b.encode_to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn values_round_trip(v in arb_value()) {
        let bytes = v.encode_to_vec();
        let back = decode_value(&bytes).unwrap();
        prop_assert!(same_bits(&v, &back));
        prop_assert_eq!(back.encode_to_vec(), bytes);
    }

    #[test]
    fn decoders_never_panic_on_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_value(&bytes);
        let _ = decode_timestamp(&bytes);
        let _ = decode_entity_key_proto(&bytes);
        let _ = deserialize_entity_key(&bytes, KeySerializationVersion::V3);
    }

    #[test]
    fn decoders_never_panic_on_mutated_valid_bytes(
        v in arb_value(),
        join_keys in prop::collection::vec("[a-z_]{0,6}", 1..4),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut join_keys = join_keys;
        join_keys.sort();
        join_keys.dedup();
        let values: Vec<EntityValue> = (0..join_keys.len()).map(|i| EntityValue::Int64(i as i64)).collect();
        let layout = EntityKeyLayout::new(&join_keys, KeySerializationVersion::V3).unwrap();
        let mut key = Vec::new();
        layout.write_entity_key(&values, &mut key).unwrap();
        for mut bytes in [v.encode_to_vec(), key] {
            if bytes.is_empty() { continue; }
            for (index, byte) in &edits {
                let i = index.index(bytes.len());
                bytes[i] = *byte;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            let _ = decode_value(&bytes);
            let _ = deserialize_entity_key(&bytes, KeySerializationVersion::V3);
        }
    }

    #[test]
    fn entity_keys_round_trip(
        pairs in prop::collection::btree_map(any::<String>(), prop_oneof![
            any::<i32>().prop_map(Val::Int32Val),
            any::<i64>().prop_map(Val::Int64Val),
            any::<i64>().prop_map(Val::UnixTimestampVal),
            any::<String>().prop_map(Val::StringVal),
            any::<Vec<u8>>().prop_map(Val::BytesVal),
        ], 0..5)
    ) {
        // Names ending in NUL lose it on the way back, as in Feast.
        let pairs: Vec<(String, Val)> = pairs.into_iter().filter(|(k, _)| !k.ends_with('\0')).collect();
        let entity = EntityKey {
            join_keys: pairs.iter().map(|(k, _)| k.clone()).rev().collect(),
            entity_values: pairs.iter().map(|(_, v)| value(v.clone())).rev().collect(),
        };
        let bytes = serialize_entity_key(&entity, KeySerializationVersion::V3).unwrap();
        let back = deserialize_entity_key(&bytes, KeySerializationVersion::V3).unwrap();
        prop_assert_eq!(back.join_keys, pairs.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>());
        prop_assert_eq!(back.entity_values, pairs.into_iter().map(|(_, v)| value(v)).collect::<Vec<_>>());
    }
}

#[test]
fn a_project_is_matched_whole_not_as_a_suffix() {
    for version in [KeySerializationVersion::V2, KeySerializationVersion::V3] {
        let layout = EntityKeyLayout::new(&["driver", "city"], version).unwrap();
        let values = [EntityValue::Int64(7), EntityValue::String("prod*")];
        let mut key = Vec::new();
        layout.write_redis_key(&values, "preprod", &mut key).unwrap();
        assert!(layout.is_redis_key_of(&key, "preprod"));
        assert!(!layout.is_redis_key_of(&key, "prod"), "{version:?}");
        assert!(!layout.is_redis_key_of(&key, "reprod"));
        assert!(!layout.is_redis_key_of(&key[..key.len() - 1], "preprod"));
        let other = EntityKeyLayout::new(&["driver"], version).unwrap();
        assert!(!other.is_redis_key_of(&key, "preprod"), "{version:?}");
    }
}

proptest! {
    #[test]
    fn only_keys_of_the_layout_and_project_are_matched(
        id in any::<i64>(), name in ".{0,12}", project in "[a-z_]{1,8}", other in "[a-z_]{1,8}",
    ) {
        let layout = EntityKeyLayout::new(&["id", "name"], KeySerializationVersion::V3).unwrap();
        let mut key = Vec::new();
        layout
            .write_redis_key(&[EntityValue::Int64(id), EntityValue::String(&name)], &project, &mut key)
            .unwrap();
        prop_assert!(layout.is_redis_key_of(&key, &project));
        prop_assert_eq!(layout.is_redis_key_of(&key, &other), other == project);
    }
}
