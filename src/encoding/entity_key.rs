//! Feast's entity-key serialization (`feast.infra.key_encoding_utils`) and the Redis key
//! built from it (`feast.infra.online_stores.helpers._redis_key`).

use super::error::EncodingError;
use super::proto::{value_type, EntityKey, Val, Value};

/// `entity_key_serialization_version` of Feast's `RepoConfig`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeySerializationVersion {
    /// Versions 0 and 1: like version 2, but int64 values are written as 4 bytes.
    V1,
    /// No join-key count and no name lengths (older Feast, the AWS guidance).
    V2,
    /// Feast's default: a join-key count and a length before every name.
    V3,
}

impl KeySerializationVersion {
    pub fn from_config(version: i64) -> Result<Self, EncodingError> {
        match version {
            0 | 1 => Ok(Self::V1),
            2 => Ok(Self::V2),
            3 => Ok(Self::V3),
            other => Err(EncodingError::UnsupportedVersion(other)),
        }
    }

    fn records_lengths(self) -> bool {
        self == Self::V3
    }
}

/// One entity value, borrowed from wherever it lives (a proto, an Arrow column).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntityValue<'a> {
    Bytes(&'a [u8]),
    String(&'a str),
    Int32(i32),
    Int64(i64),
    UnixTimestamp(i64),
}

impl<'a> EntityValue<'a> {
    /// The entity value held in a `feast.types.Value`, or an error naming the join key
    /// and the type Feast refuses in entity keys.
    pub fn from_proto(value: &'a Value, join_key: &str) -> Result<Self, EncodingError> {
        match &value.val {
            Some(Val::BytesVal(v)) => Ok(Self::Bytes(v)),
            Some(Val::StringVal(v)) => Ok(Self::String(v)),
            Some(Val::Int32Val(v)) => Ok(Self::Int32(*v)),
            Some(Val::Int64Val(v)) => Ok(Self::Int64(*v)),
            Some(Val::UnixTimestampVal(v)) => Ok(Self::UnixTimestamp(*v)),
            Some(other) => Err(EncodingError::UnsupportedEntityValue {
                join_key: join_key.to_owned(),
                value_type: other.field_name(),
            }),
            None => Err(EncodingError::EmptyEntityValue {
                join_key: join_key.to_owned(),
            }),
        }
    }

    fn write(
        self,
        version: KeySerializationVersion,
        join_key: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodingError> {
        let mut put = |type_number: u32, bytes: &[u8]| {
            out.extend_from_slice(&type_number.to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
        };
        match self {
            Self::Bytes(v) => put(value_type::BYTES, v),
            Self::String(v) => put(value_type::STRING, v.as_bytes()),
            Self::Int32(v) => put(value_type::INT32, &v.to_le_bytes()),
            Self::Int64(v) if version == KeySerializationVersion::V1 => {
                let narrow = i32::try_from(v).map_err(|_| EncodingError::Int64TooLargeForV1 {
                    join_key: join_key.to_owned(),
                    value: v,
                })?;
                put(value_type::INT64, &narrow.to_le_bytes())
            }
            Self::Int64(v) => put(value_type::INT64, &v.to_le_bytes()),
            Self::UnixTimestamp(v) => put(value_type::UNIX_TIMESTAMP, &v.to_le_bytes()),
        }
        Ok(())
    }
}

/// The fixed part of the keys of one set of join keys: names sorted, prefix bytes
/// written once. Serializing many keys of the same entity through one layout costs
/// only the values.
#[derive(Clone, Debug)]
pub struct EntityKeyLayout {
    version: KeySerializationVersion,
    /// Positions in the caller's join-key order, in the order Feast writes them (by name).
    sorted_positions: Vec<usize>,
    join_keys: Vec<String>,
    prefix: Vec<u8>,
}

impl EntityKeyLayout {
    pub fn new<S: AsRef<str>>(
        join_keys: &[S],
        version: KeySerializationVersion,
    ) -> Result<Self, EncodingError> {
        let join_keys: Vec<String> = join_keys.iter().map(|k| k.as_ref().to_owned()).collect();
        let mut sorted_positions: Vec<usize> = (0..join_keys.len()).collect();
        // Rust orders `str` by UTF-8 bytes, which is code-point order: the order of
        // Python's `sorted` over the names.
        sorted_positions.sort_by(|&a, &b| join_keys[a].cmp(&join_keys[b]));
        if let Some(pair) = sorted_positions
            .windows(2)
            .find(|p| join_keys[p[0]] == join_keys[p[1]])
        {
            return Err(EncodingError::DuplicateJoinKey(join_keys[pair[0]].clone()));
        }
        let mut prefix = Vec::new();
        if version.records_lengths() {
            prefix.extend_from_slice(&(join_keys.len() as u32).to_le_bytes());
        }
        for &position in &sorted_positions {
            let name = join_keys[position].as_bytes();
            prefix.extend_from_slice(&value_type::STRING.to_le_bytes());
            if version.records_lengths() {
                prefix.extend_from_slice(&(name.len() as u32).to_le_bytes());
            }
            prefix.extend_from_slice(name);
        }
        Ok(Self {
            version,
            sorted_positions,
            join_keys,
            prefix,
        })
    }

    /// What Feast's `serialize_entity_key_prefix` returns: every key of these join keys
    /// starts with it, so `SCAN MATCH prefix*` finds them.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// Appends the serialized entity key of `values` (given in the join-key order this
    /// layout was built with) to `out`. On error `out` may hold a partial key.
    pub fn write_entity_key(
        &self,
        values: &[EntityValue<'_>],
        out: &mut Vec<u8>,
    ) -> Result<(), EncodingError> {
        if values.len() != self.join_keys.len() {
            return Err(EncodingError::CountMismatch {
                join_keys: self.join_keys.len(),
                values: values.len(),
            });
        }
        out.extend_from_slice(&self.prefix);
        for &position in &self.sorted_positions {
            values[position].write(self.version, &self.join_keys[position], out)?;
        }
        Ok(())
    }

    /// Whether `key` is the Redis key of values of exactly these join keys in exactly
    /// `project`: this prefix, one (type, length, bytes) value per join key, then the
    /// project and nothing else. `SCAN MATCH prefix*project` alone also matches projects
    /// whose names end in this one (`preprod` for `prod`).
    pub fn is_redis_key_of(&self, key: &[u8], project: &str) -> bool {
        let Some(values) = key
            .strip_prefix(self.prefix.as_slice())
            .and_then(|rest| rest.strip_suffix(project.as_bytes()))
        else {
            return false;
        };
        let mut at = 0usize;
        for _ in 0..self.join_keys.len() {
            let Some(length) = values.get(at + 4..at + 8) else {
                return false;
            };
            let length = u32::from_le_bytes(length.try_into().expect("4 bytes")) as usize;
            at = match (at + 8).checked_add(length) {
                Some(end) if end <= values.len() => end,
                _ => return false,
            };
        }
        at == values.len()
    }

    /// Appends the Redis key of `values`: the serialized entity key, then the project.
    pub fn write_redis_key(
        &self,
        values: &[EntityValue<'_>],
        project: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodingError> {
        self.write_entity_key(values, out)?;
        out.extend_from_slice(project.as_bytes());
        Ok(())
    }
}

/// `serialize_entity_key(entity_key, version)` of a whole `EntityKey` proto.
pub fn serialize_entity_key(
    entity_key: &EntityKey,
    version: KeySerializationVersion,
) -> Result<Vec<u8>, EncodingError> {
    let layout = EntityKeyLayout::new(&entity_key.join_keys, version)?;
    if entity_key.entity_values.len() != entity_key.join_keys.len() {
        return Err(EncodingError::CountMismatch {
            join_keys: entity_key.join_keys.len(),
            values: entity_key.entity_values.len(),
        });
    }
    let values = entity_key
        .entity_values
        .iter()
        .zip(&entity_key.join_keys)
        .map(|(value, join_key)| EntityValue::from_proto(value, join_key))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(layout.prefix().len() + 16 * values.len());
    layout.write_entity_key(&values, &mut out)?;
    Ok(out)
}

/// `helpers._redis_key(project, entity_key, version)`.
pub fn redis_key(
    project: &str,
    entity_key: &EntityKey,
    version: KeySerializationVersion,
) -> Result<Vec<u8>, EncodingError> {
    let mut key = serialize_entity_key(entity_key, version)?;
    key.extend_from_slice(project.as_bytes());
    Ok(key)
}

/// The inverse of `serialize_entity_key` for version 3 keys (`deserialize_entity_key`).
/// Like Feast, it strips trailing NUL characters from join-key names.
pub fn deserialize_entity_key(
    bytes: &[u8],
    version: KeySerializationVersion,
) -> Result<EntityKey, EncodingError> {
    if version != KeySerializationVersion::V3 {
        let number = if version == KeySerializationVersion::V2 {
            2
        } else {
            1
        };
        return Err(EncodingError::NotDeserializable(number));
    }
    let mut reader = Reader { bytes, offset: 0 };
    let count = reader.u32("the join-key count")?;
    let mut join_keys = Vec::new();
    for _ in 0..count {
        let type_offset = reader.offset;
        let key_type = reader.u32("a join-key type")?;
        let length = reader.u32("a join-key length")? as usize;
        if key_type != value_type::STRING {
            return Err(EncodingError::BadJoinKeyType(key_type, type_offset));
        }
        let name = reader.utf8(length, "join-key name")?;
        join_keys.push(name.trim_end_matches('\0').to_owned());
    }
    let mut entity_values = Vec::new();
    while reader.offset < bytes.len() {
        let type_offset = reader.offset;
        let type_number = reader.u32("a value type")?;
        let length = reader.u32("a value length")? as usize;
        let value_offset = reader.offset;
        let val = match type_number {
            value_type::BYTES => Val::BytesVal(reader.take(length, "a bytes value")?.to_vec()),
            value_type::STRING => Val::StringVal(reader.utf8(length, "string value")?.to_owned()),
            value_type::INT32 => {
                Val::Int32Val(i32::from_le_bytes(reader.fixed(length, "INT32", value_offset)?))
            }
            value_type::INT64 => {
                Val::Int64Val(i64::from_le_bytes(reader.fixed(length, "INT64", value_offset)?))
            }
            value_type::UNIX_TIMESTAMP => Val::UnixTimestampVal(i64::from_le_bytes(reader.fixed(
                length,
                "UNIX_TIMESTAMP",
                value_offset,
            )?)),
            other => return Err(EncodingError::BadEntityValueType(other, type_offset)),
        };
        entity_values.push(Value { val: Some(val) });
    }
    Ok(EntityKey {
        join_keys,
        entity_values,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, needed: usize, what: &'static str) -> Result<&'a [u8], EncodingError> {
        let end = self
            .offset
            .checked_add(needed)
            .filter(|&end| end <= self.bytes.len());
        let end = end.ok_or(EncodingError::Truncated {
            what,
            needed,
            offset: self.offset,
            len: self.bytes.len(),
        })?;
        let slice = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(slice)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, EncodingError> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn utf8(&mut self, length: usize, what: &'static str) -> Result<&'a str, EncodingError> {
        let offset = self.offset;
        let bytes = self.take(length, what)?;
        std::str::from_utf8(bytes).map_err(|_| EncodingError::InvalidUtf8 { what, offset })
    }

    fn fixed<const N: usize>(
        &mut self,
        length: usize,
        value_type: &'static str,
        offset: usize,
    ) -> Result<[u8; N], EncodingError> {
        if length != N {
            return Err(EncodingError::BadEntityValueLength {
                value_type,
                len: length,
                offset,
                expected: N,
            });
        }
        let bytes = self.take(N, "a fixed-size value")?;
        Ok(bytes.try_into().expect("take returned exactly N bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use KeySerializationVersion::{V1, V2, V3};

    fn key(join_keys: &[&str], values: Vec<Val>) -> EntityKey {
        EntityKey {
            join_keys: join_keys.iter().map(|k| k.to_string()).collect(),
            entity_values: values.into_iter().map(|v| Value { val: Some(v) }).collect(),
        }
    }

    #[test]
    fn redis_key_matches_feast_unit_test_vector() {
        let entity = key(&["entity"], vec![Val::Int32Val(1)]);
        let expected = b"\x01\x00\x00\x00\x02\x00\x00\x00\x06\x00\x00\x00entity\x03\x00\x00\x00\x04\x00\x00\x00\x01\x00\x00\x00test";
        assert_eq!(redis_key("test", &entity, V3).unwrap(), expected);
    }

    #[test]
    fn v2_has_no_count_and_no_name_length() {
        let entity = key(&["driver_id"], vec![Val::Int64Val(1001)]);
        let mut expected = Vec::new();
        expected.extend_from_slice(&2u32.to_le_bytes());
        expected.extend_from_slice(b"driver_id");
        expected.extend_from_slice(&4u32.to_le_bytes());
        expected.extend_from_slice(&8u32.to_le_bytes());
        expected.extend_from_slice(&1001i64.to_le_bytes());
        assert_eq!(serialize_entity_key(&entity, V2).unwrap(), expected);
    }

    #[test]
    fn v1_writes_int64_as_four_bytes_and_refuses_wider_values() {
        let entity = key(&["id"], vec![Val::Int64Val(-7)]);
        let bytes = serialize_entity_key(&entity, V1).unwrap();
        assert_eq!(&bytes[bytes.len() - 8..], &[4, 0, 0, 0, 0xf9, 0xff, 0xff, 0xff]);
        let too_wide = key(&["id"], vec![Val::Int64Val(1 << 40)]);
        let err = serialize_entity_key(&too_wide, V1).unwrap_err();
        assert!(err.to_string().contains("'id'"), "{err}");
    }

    #[test]
    fn every_entity_value_type_has_its_number_and_width() {
        let cases: Vec<(Val, u32, Vec<u8>)> = vec![
            (Val::BytesVal(vec![0, 255]), 1, vec![0, 255]),
            (Val::StringVal("é".into()), 2, "é".as_bytes().to_vec()),
            (Val::Int32Val(-2), 3, (-2i32).to_le_bytes().to_vec()),
            (Val::Int64Val(i64::MIN), 4, i64::MIN.to_le_bytes().to_vec()),
            (
                Val::UnixTimestampVal(1_700_000_000),
                8,
                1_700_000_000i64.to_le_bytes().to_vec(),
            ),
        ];
        for (val, type_number, payload) in cases {
            let bytes = serialize_entity_key(&key(&["k"], vec![val]), V3).unwrap();
            let tail = &bytes[4 + 4 + 4 + 1..];
            assert_eq!(&tail[..4], &type_number.to_le_bytes());
            assert_eq!(&tail[4..8], &(payload.len() as u32).to_le_bytes());
            assert_eq!(&tail[8..], &payload[..]);
        }
    }

    #[test]
    fn join_keys_are_sorted_with_their_values() {
        let unsorted = key(
            &["zip", "applicant"],
            vec![Val::Int64Val(76104), Val::StringVal("a".into())],
        );
        let sorted = key(
            &["applicant", "zip"],
            vec![Val::StringVal("a".into()), Val::Int64Val(76104)],
        );
        assert_eq!(
            serialize_entity_key(&unsorted, V3).unwrap(),
            serialize_entity_key(&sorted, V3).unwrap()
        );
        let bytes = serialize_entity_key(&sorted, V3).unwrap();
        assert_eq!(&bytes[..4], &2u32.to_le_bytes());
        assert_eq!(&bytes[12..21], b"applicant");
    }

    #[test]
    fn prefix_is_the_start_of_every_key() {
        let layout = EntityKeyLayout::new(&["b", "a"], V3).unwrap();
        let mut out = Vec::new();
        layout
            .write_entity_key(&[EntityValue::Int32(1), EntityValue::String("x")], &mut out)
            .unwrap();
        assert!(out.starts_with(layout.prefix()));
        assert_eq!(
            layout.prefix(),
            b"\x02\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00a\x02\x00\x00\x00\x01\x00\x00\x00b"
        );
    }

    #[test]
    fn empty_entity_key() {
        let empty = key(&[], vec![]);
        assert_eq!(serialize_entity_key(&empty, V3).unwrap(), 0u32.to_le_bytes());
        assert_eq!(serialize_entity_key(&empty, V2).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn bad_entity_keys_name_the_problem() {
        let double = key(&["rate"], vec![Val::DoubleVal(1.5)]);
        let err = serialize_entity_key(&double, V3).unwrap_err().to_string();
        assert!(err.contains("'rate'") && err.contains("double_val"), "{err}");

        let mismatch = key(&["a", "b"], vec![Val::Int32Val(1)]);
        let err = serialize_entity_key(&mismatch, V3).unwrap_err();
        assert_eq!(
            err,
            EncodingError::CountMismatch {
                join_keys: 2,
                values: 1
            }
        );

        let duplicate = key(&["a", "a"], vec![Val::Int32Val(1), Val::Int32Val(2)]);
        assert_eq!(
            serialize_entity_key(&duplicate, V3).unwrap_err(),
            EncodingError::DuplicateJoinKey("a".into())
        );

        let empty_value = EntityKey {
            join_keys: vec!["a".into()],
            entity_values: vec![Value::default()],
        };
        assert!(serialize_entity_key(&empty_value, V3)
            .unwrap_err()
            .to_string()
            .contains("'a'"));

        assert_eq!(
            KeySerializationVersion::from_config(4).unwrap_err(),
            EncodingError::UnsupportedVersion(4)
        );
    }

    #[test]
    fn deserialize_inverts_serialize() {
        let entity = key(
            &["b", "a", "c", "d", "e"],
            vec![
                Val::Int64Val(-1),
                Val::StringVal("ü".into()),
                Val::BytesVal(vec![1, 2]),
                Val::Int32Val(3),
                Val::UnixTimestampVal(4),
            ],
        );
        let bytes = serialize_entity_key(&entity, V3).unwrap();
        let back = deserialize_entity_key(&bytes, V3).unwrap();
        assert_eq!(back.join_keys, vec!["a", "b", "c", "d", "e"]);
        assert_eq!(back.entity_values[0].val, Some(Val::StringVal("ü".into())));
        assert_eq!(back.entity_values[1].val, Some(Val::Int64Val(-1)));
        assert_eq!(serialize_entity_key(&back, V3).unwrap(), bytes);
    }

    #[test]
    fn deserialize_rejects_malformed_keys() {
        let good = serialize_entity_key(&key(&["id"], vec![Val::Int64Val(5)]), V3).unwrap();
        for cut in 0..good.len() {
            let err = deserialize_entity_key(&good[..cut], V3);
            // Cutting exactly after the names leaves a valid key with no values.
            if cut != 4 + 8 + 2 {
                assert!(
                    matches!(err, Err(EncodingError::Truncated { .. })),
                    "cut {cut}: {err:?}"
                );
            }
        }
        let mut bad_type = good.clone();
        bad_type[4] = 9;
        assert_eq!(
            deserialize_entity_key(&bad_type, V3).unwrap_err(),
            EncodingError::BadJoinKeyType(9, 4)
        );
        let mut bad_utf8 = good.clone();
        bad_utf8[12] = 0xff;
        assert!(matches!(
            deserialize_entity_key(&bad_utf8, V3),
            Err(EncodingError::InvalidUtf8 { .. })
        ));
        let mut bad_len = good[..14].to_vec();
        bad_len.extend_from_slice(&4u32.to_le_bytes());
        bad_len.extend_from_slice(&3u32.to_le_bytes());
        bad_len.extend_from_slice(&[1, 2, 3]);
        assert!(matches!(
            deserialize_entity_key(&bad_len, V3),
            Err(EncodingError::BadEntityValueLength {
                expected: 8,
                len: 3,
                ..
            })
        ));
        assert_eq!(
            deserialize_entity_key(&good, V2).unwrap_err(),
            EncodingError::NotDeserializable(2)
        );
    }

    #[test]
    fn trailing_nuls_in_names_are_stripped_like_feast() {
        let bytes = serialize_entity_key(&key(&["id\0"], vec![Val::Int32Val(1)]), V3).unwrap();
        assert_eq!(deserialize_entity_key(&bytes, V3).unwrap().join_keys, vec!["id"]);
    }
}
