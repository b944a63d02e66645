//! The part of a `feast.serving.GetOnlineFeaturesResponse` that a read of one feature
//! view adds: one `FeatureVector` per requested feature (field 2 of the response),
//! serialized here so Python merges a whole request's vectors with one
//! `MergeFromString`. Values are the stored bytes, checked and embedded as they are.

use std::collections::HashMap;

use prost::encoding::{encode_varint, encoded_len_varint};
use prost::Message;

use super::error::{printable_key, StoreError};
use super::read::{read_hashes, HashRead};
use crate::encoding::proto::RepeatedValue;
use crate::encoding::{
    self, feature_field, timestamp_field, EncodingError, EntityKeyLayout, EntityValue,
    KeySerializationVersion, Timestamp, Value,
};
use crate::redis::RedisClient;

/// One feature view of a `get_online_features` request.
pub struct ViewRequest {
    pub view: String,
    pub features: Vec<String>,
    pub join_keys: Vec<String>,
    /// Per join key, the request rows' values as a serialized `feast.types.RepeatedValue`.
    pub columns: Vec<Vec<u8>>,
}

impl From<(String, Vec<String>, Vec<String>, Vec<Vec<u8>>)> for ViewRequest {
    fn from((view, features, join_keys, columns): (String, Vec<String>, Vec<String>, Vec<Vec<u8>>)) -> Self {
        Self {
            view,
            features,
            join_keys,
            columns,
        }
    }
}

/// Reads every view of a request in one batch (one pipeline per node) and returns the
/// serialized `FeatureVector`s of all of them, in order (response field 2).
pub async fn read_response(
    client: &RedisClient,
    project: &str,
    version: KeySerializationVersion,
    views: &[ViewRequest],
) -> Result<Vec<u8>, StoreError> {
    let mut plans = Vec::with_capacity(views.len());
    for request in views {
        let columns = request
            .columns
            .iter()
            .map(|bytes| {
                RepeatedValue::decode(bytes.as_slice())
                    .map(|r| r.val)
                    .map_err(|err| {
                        StoreError::InvalidRequest(format!("entity values of view '{}': {err}", request.view))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        plans.push(ViewRead::plan(
            &request.view,
            &request.features,
            &request.join_keys,
            &columns,
            version,
            project,
        )?);
    }
    let hashes = read_views(client, &plans).await?;
    let mut out = Vec::new();
    for ((request, plan), hashes) in views.iter().zip(&plans).zip(&hashes) {
        feature_vectors(
            &request.view,
            &request.features,
            &plan.rows.unique_keys,
            hashes,
            &plan.rows.row_to_unique,
            true,
            &mut out,
        )?;
    }
    Ok(out)
}

/// `feast.serving.FieldStatus` values.
const PRESENT: u8 = 1;
const NOT_FOUND: u8 = 3;

/// The Redis key of every request row, each distinct key once.
#[derive(Debug, Default)]
pub struct RowKeys {
    pub unique_keys: Vec<Vec<u8>>,
    pub row_to_unique: Vec<u32>,
}

/// What a view's read needs: the request rows' keys and the hash fields to read
/// (the features, then `_ts:{view}`).
pub struct ViewRead {
    pub rows: RowKeys,
    pub fields: Vec<Vec<u8>>,
}

impl ViewRead {
    pub fn plan<C: EntityColumn>(
        view: &str,
        features: &[String],
        join_keys: &[String],
        columns: &[C],
        version: KeySerializationVersion,
        project: &str,
    ) -> Result<Self, StoreError> {
        let rows = entity_keys_of_rows(join_keys, columns, version, project)?;
        let mut fields: Vec<Vec<u8>> = features.iter().map(|f| feature_field(view, f).to_vec()).collect();
        fields.push(timestamp_field(view));
        Ok(Self { rows, fields })
    }
}

/// Every view's HMGETs in one batch: per view, per unique key, the fields' values.
pub async fn read_views(
    client: &RedisClient,
    plans: &[ViewRead],
) -> Result<Vec<Vec<Vec<Option<Vec<u8>>>>>, StoreError> {
    let reads: Vec<HashRead<'_>> = plans
        .iter()
        .map(|plan| HashRead {
            fields: &plan.fields,
            keys: &plan.rows.unique_keys,
        })
        .collect();
    read_hashes(client, &reads).await
}

/// One join key's values for every request row.
pub trait EntityColumn {
    fn len(&self) -> usize;
    fn value(&self, row: usize, join_key: &str) -> Result<EntityValue<'_>, EncodingError>;
}

impl EntityColumn for Vec<Value> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn value(&self, row: usize, join_key: &str) -> Result<EntityValue<'_>, EncodingError> {
        EntityValue::from_proto(&self[row], join_key)
    }
}

/// Entity values taken from plain Python values, by the entity's declared type.
pub enum NativeColumn {
    Int64(Vec<i64>),
    Int32(Vec<i32>),
    String(Vec<String>),
    Bytes(Vec<Vec<u8>>),
}

impl EntityColumn for NativeColumn {
    fn len(&self) -> usize {
        match self {
            Self::Int64(v) => v.len(),
            Self::Int32(v) => v.len(),
            Self::String(v) => v.len(),
            Self::Bytes(v) => v.len(),
        }
    }

    fn value(&self, row: usize, _join_key: &str) -> Result<EntityValue<'_>, EncodingError> {
        Ok(match self {
            Self::Int64(v) => EntityValue::Int64(v[row]),
            Self::Int32(v) => EntityValue::Int32(v[row]),
            Self::String(v) => EntityValue::String(&v[row]),
            Self::Bytes(v) => EntityValue::Bytes(&v[row]),
        })
    }
}

/// The Redis keys of the request rows whose join-key values are `columns` (one column
/// per name in `join_keys`), deduplicated.
pub fn entity_keys_of_rows<C: EntityColumn>(
    join_keys: &[String],
    columns: &[C],
    version: KeySerializationVersion,
    project: &str,
) -> Result<RowKeys, StoreError> {
    let Some(first) = columns.first() else {
        return Ok(RowKeys::default());
    };
    let rows = first.len();
    if let Some((name, column)) = join_keys.iter().zip(columns).find(|(_, c)| c.len() != rows) {
        return Err(StoreError::InvalidRequest(format!(
            "join key '{name}' has {} values but '{}' has {rows}; give every join key one value per row",
            column.len(),
            join_keys[0]
        )));
    }
    let layout = EntityKeyLayout::new(join_keys, version)?;
    let mut index: HashMap<Vec<u8>, u32> = HashMap::with_capacity(rows);
    let mut keys = RowKeys {
        unique_keys: Vec::new(),
        row_to_unique: Vec::with_capacity(rows),
    };
    let mut values: Vec<EntityValue<'_>> = Vec::with_capacity(columns.len());
    let mut key = Vec::new();
    for row in 0..rows {
        values.clear();
        for (name, column) in join_keys.iter().zip(columns) {
            values.push(column.value(row, name)?);
        }
        key.clear();
        layout.write_redis_key(&values, project, &mut key)?;
        let next = keys.unique_keys.len() as u32;
        let unique = *index.entry(key.clone()).or_insert_with(|| {
            keys.unique_keys.push(key.clone());
            next
        });
        keys.row_to_unique.push(unique);
    }
    Ok(keys)
}

/// The event timestamp stock Feast reports for a stored `_ts:` value: it goes through
/// `datetime.fromtimestamp(seconds + nanos / 1e9)`, so it is rounded (half to even)
/// to microseconds through a float; an absent value is the epoch.
pub fn response_timestamp(stored: Option<&[u8]>) -> Result<Timestamp, EncodingError> {
    let stored = match stored {
        Some(bytes) => encoding::decode_timestamp(bytes)?,
        None => Timestamp::default(),
    };
    let total = stored.seconds as f64 + f64::from(stored.nanos) / 1e9;
    let mut seconds = total.trunc();
    let mut micros = ((total - seconds) * 1e6).round_ties_even();
    if micros >= 1e6 {
        micros -= 1e6;
        seconds += 1.0;
    } else if micros < 0.0 {
        micros += 1e6;
        seconds -= 1.0;
    }
    Ok(Timestamp {
        seconds: seconds as i64,
        nanos: micros as i32 * 1000,
    })
}

fn length_delimited_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

fn put_length_delimited(tag_byte: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(tag_byte);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// Appends to `out` the `FeatureVector`s of a view read (response field 2):
/// `hashes[u]` holds the fields read for unique key `u` (the features, then
/// `_ts:{view}`), and `row_to_unique` fans them out to the request rows. Like stock
/// Feast, every requested feature is PRESENT (a missing one with an empty `Value`),
/// and, with `with_timestamp_column`, a last vector for the `_ts:{view}` column is
/// NOT_FOUND throughout (stock Feast adds it; `get_online_features` drops it).
pub fn feature_vectors(
    view: &str,
    features: &[String],
    keys: &[Vec<u8>],
    hashes: &[Vec<Option<Vec<u8>>>],
    row_to_unique: &[u32],
    with_timestamp_column: bool,
    out: &mut Vec<u8>,
) -> Result<(), StoreError> {
    let mut timestamps = Vec::with_capacity(hashes.len());
    for (key, hash) in keys.iter().zip(hashes) {
        for (feature, value) in features.iter().zip(hash) {
            if let Some(bytes) = value {
                Value::decode(bytes.as_slice()).map_err(|err| StoreError::CorruptValue {
                    view: view.to_owned(),
                    feature: feature.clone(),
                    key: printable_key(key),
                    reason: err.to_string(),
                })?;
            }
        }
        let stored_ts = hash.get(features.len()).and_then(Option::as_deref);
        let timestamp = response_timestamp(stored_ts).map_err(|err| StoreError::CorruptTimestamp {
            view: view.to_owned(),
            key: printable_key(key),
            reason: err.to_string(),
        })?;
        timestamps.push(timestamp.encode_to_vec());
    }
    let rows = row_to_unique.len();
    let timestamps_len: usize = row_to_unique
        .iter()
        .map(|&u| length_delimited_len(timestamps[u as usize].len()))
        .sum();
    let statuses_len = if rows == 0 { 0 } else { length_delimited_len(rows) };
    let mut vector = Vec::new();
    // The features' columns, then the `_ts:{view}` column (None).
    let timestamp_column = with_timestamp_column.then_some(None);
    for column in (0..features.len()).map(Some).chain(timestamp_column) {
        let status = if column.is_some() { PRESENT } else { NOT_FOUND };
        let value_of = |u: u32| -> &[u8] {
            match column {
                Some(c) => hashes[u as usize][c].as_deref().unwrap_or_default(),
                None => &[],
            }
        };
        let values_len: usize = row_to_unique
            .iter()
            .map(|&u| length_delimited_len(value_of(u).len()))
            .sum();
        vector.clear();
        vector.reserve(values_len + statuses_len + timestamps_len);
        for &u in row_to_unique {
            put_length_delimited(0x0a, value_of(u), &mut vector);
        }
        if rows > 0 {
            vector.push(0x12);
            encode_varint(rows as u64, &mut vector);
            vector.resize(vector.len() + rows, status);
        }
        for &u in row_to_unique {
            put_length_delimited(0x1a, &timestamps[u as usize], &mut vector);
        }
        put_length_delimited(0x12, &vector, out);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::proto::Val;

    fn ts(seconds: i64, nanos: i32) -> Vec<u8> {
        Timestamp { seconds, nanos }.encode_to_vec()
    }

    #[test]
    fn timestamps_round_like_python_fromtimestamp() {
        let round = |s, n| response_timestamp(Some(&ts(s, n))).unwrap();
        assert_eq!(response_timestamp(None).unwrap(), Timestamp::default());
        assert_eq!(
            round(1_700_000_000, 123_456_000),
            Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_456_000
            }
        );
        // Sub-microsecond parts are rounded through a float, as stock Feast does.
        assert_eq!(
            round(1_700_000_000, 999_999_999),
            Timestamp {
                seconds: 1_700_000_001,
                nanos: 0
            }
        );
        assert_eq!(
            round(0, 1_499),
            Timestamp {
                seconds: 0,
                nanos: 1_000
            }
        );
        assert_eq!(
            round(-1, 500_000_000),
            Timestamp {
                seconds: -1,
                nanos: 500_000_000
            }
        );
        assert!(response_timestamp(Some(b"\xff\xff")).is_err());
    }

    #[test]
    fn rows_share_keys_and_keep_their_order() {
        let column = |ids: &[i64]| {
            ids.iter()
                .map(|&id| Value {
                    val: Some(Val::Int64Val(id)),
                })
                .collect::<Vec<_>>()
        };
        let keys = entity_keys_of_rows(
            &["driver_id".to_owned()],
            &[column(&[7, 3, 7, 7])],
            KeySerializationVersion::V3,
            "p",
        )
        .unwrap();
        assert_eq!(keys.unique_keys.len(), 2);
        assert_eq!(keys.row_to_unique, vec![0, 1, 0, 0]);
        assert!(keys.unique_keys[0].ends_with(b"p"));

        let mismatch = entity_keys_of_rows(
            &["a".to_owned(), "b".to_owned()],
            &[column(&[1, 2]), column(&[1])],
            KeySerializationVersion::V3,
            "p",
        );
        assert!(matches!(mismatch, Err(StoreError::InvalidRequest(m)) if m.contains("'b' has 1 values")));
    }

    #[test]
    fn corrupt_values_name_the_feature() {
        let hashes = vec![vec![Some(b"\x0a\xff".to_vec()), None]];
        let err = feature_vectors(
            "fv",
            &["f".into()],
            &[b"k".to_vec()],
            &hashes,
            &[0],
            true,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("feature 'f' of view 'fv'"), "{err}");
    }
}
