//! The part of a `feast.serving.GetOnlineFeaturesResponse` that the reads of a request
//! add: one `FeatureVector` per requested feature (field 2 of the response), serialized
//! here so Python merges a whole request's vectors with one `MergeFromString`. Values
//! are the stored bytes, embedded as they are.

use prost::encoding::{encode_varint, encoded_len_varint};
use prost::Message;

use super::error::{printable_key, StoreError};
use super::plan::{Keys, RowKeys, ViewPlan};
use super::read::{read_views, stored_timestamp, Hash};
use crate::encoding::proto::RepeatedValue;
use crate::encoding::{Timestamp, Value};
use crate::redis::RedisClient;

/// Reads every view of a request in one batch (one pipeline per node) and returns the
/// serialized `FeatureVector`s of all of them, in order (response field 2). `columns`
/// holds, per view, each join key's request values as a serialized
/// `feast.types.RepeatedValue`.
pub async fn read_response(
    client: &RedisClient,
    plans: &[&ViewPlan],
    columns: &[Vec<Vec<u8>>],
) -> Result<Vec<u8>, StoreError> {
    let mut rows = Vec::with_capacity(plans.len());
    for (plan, columns) in plans.iter().zip(columns) {
        let values = columns
            .iter()
            .map(|bytes| {
                RepeatedValue::decode(&bytes[..]).map(|r| r.val).map_err(|err| {
                    StoreError::InvalidRequest(format!("entity values of view '{}': {err}", plan.view))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        rows.push(plan.row_keys(&values)?);
    }
    let views: Vec<(&ViewPlan, &RowKeys)> = plans.iter().copied().zip(&rows).collect();
    let hashes = read_views(client, &views, &mut |_, _| {}).await?;
    let mut out = Vec::new();
    for ((plan, rows), hashes) in views.into_iter().zip(&hashes) {
        check_values(plan, &rows.unique_keys, hashes)?;
        feature_vectors(plan, rows, hashes, plan.features.len(), true, &mut out)?;
    }
    Ok(out)
}

/// Checks that every stored feature value is a `feast.types.Value`, naming the feature
/// and the key of one that is not.
fn check_values(plan: &ViewPlan, keys: &Keys, hashes: &[Hash]) -> Result<(), StoreError> {
    for (key, hash) in keys.iter().zip(hashes) {
        for (feature, value) in plan.features.iter().zip(hash.iter()) {
            if let Some(bytes) = value {
                Value::decode(bytes).map_err(|err| StoreError::CorruptValue {
                    view: plan.view.clone(),
                    feature: feature.name.clone(),
                    key: printable_key(key),
                    reason: err.to_string(),
                })?;
            }
        }
    }
    Ok(())
}

/// `feast.serving.FieldStatus` values.
const PRESENT: u8 = 1;
const NOT_FOUND: u8 = 3;

/// The event timestamp stock Feast reports for a stored `_ts:` value: it goes through
/// `datetime.fromtimestamp(seconds + nanos / 1e9)`, so it is rounded (half to even)
/// to microseconds through a float; an absent value is the epoch.
pub fn response_timestamp(stored: Option<Timestamp>) -> Timestamp {
    let stored = stored.unwrap_or_default();
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
    Timestamp {
        seconds: seconds as i64,
        nanos: micros as i32 * 1000,
    }
}

/// The event time stock Feast reports for the hash of `key` (whose last field is
/// `_ts:{view}`).
pub(super) fn hash_timestamp(plan: &ViewPlan, key: &[u8], hash: &Hash) -> Result<Timestamp, StoreError> {
    let stored = hash
        .last()
        .map(|bytes| stored_timestamp(&plan.view, key, bytes))
        .transpose()?;
    Ok(response_timestamp(stored))
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
/// `hashes[u]` holds the fields read for unique key `u` (`features_read` features,
/// then `_ts:{view}`), and the rows' keys fan them out to the request rows. Like stock
/// Feast, every requested feature is PRESENT (a missing one with an empty `Value`),
/// and, with `with_timestamp_column`, a last vector for the `_ts:{view}` column is
/// NOT_FOUND throughout (stock Feast adds it; `get_online_features` drops it).
pub fn feature_vectors(
    plan: &ViewPlan,
    rows: &RowKeys,
    hashes: &[Hash],
    features_read: usize,
    with_timestamp_column: bool,
    out: &mut Vec<u8>,
) -> Result<(), StoreError> {
    let timestamps = rows
        .unique_keys
        .iter()
        .zip(hashes)
        .map(|(key, hash)| Ok(hash_timestamp(plan, key, hash)?.encode_to_vec()))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let row_to_unique = &rows.row_to_unique;
    let rows = row_to_unique.len();
    // Every column repeats the rows' timestamps: written once, copied into each.
    let mut row_timestamps = Vec::new();
    for &u in row_to_unique {
        put_length_delimited(0x1a, &timestamps[u as usize], &mut row_timestamps);
    }
    let statuses_len = if rows == 0 { 0 } else { length_delimited_len(rows) };
    // The features' columns, then the `_ts:{view}` column (None).
    let timestamp_column = with_timestamp_column.then_some(None);
    for column in (0..features_read).map(Some).chain(timestamp_column) {
        let status = if column.is_some() { PRESENT } else { NOT_FOUND };
        let value_of = |u: u32| -> &[u8] {
            match column {
                Some(c) => hashes[u as usize].get(c).unwrap_or_default(),
                None => &[],
            }
        };
        let values_len: usize = row_to_unique
            .iter()
            .map(|&u| length_delimited_len(value_of(u).len()))
            .sum();
        // The vector is written in place, after its length.
        let vector_len = values_len + statuses_len + row_timestamps.len();
        out.reserve(length_delimited_len(vector_len));
        out.push(0x12);
        encode_varint(vector_len as u64, out);
        for &u in row_to_unique {
            put_length_delimited(0x0a, value_of(u), out);
        }
        if rows > 0 {
            out.push(0x12);
            encode_varint(rows as u64, out);
            out.resize(out.len() + rows, status);
        }
        out.extend_from_slice(&row_timestamps);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::Strings;
    use crate::store::plan::ViewSpec;

    fn ts(seconds: i64, nanos: i32) -> Timestamp {
        Timestamp { seconds, nanos }
    }

    #[test]
    fn timestamps_round_like_python_fromtimestamp() {
        let round = |s, n| response_timestamp(Some(ts(s, n)));
        assert_eq!(response_timestamp(None), Timestamp::default());
        assert_eq!(round(1_700_000_000, 123_456_000), ts(1_700_000_000, 123_456_000));
        // Sub-microsecond parts are rounded through a float, as stock Feast does.
        assert_eq!(round(1_700_000_000, 999_999_999), ts(1_700_000_001, 0));
        assert_eq!(round(0, 1_499), ts(0, 1_000));
        assert_eq!(round(-1, 500_000_000), ts(-1, 500_000_000));
    }

    fn plan() -> ViewPlan {
        ViewPlan::new(ViewSpec::of("fv", &[("id", "INT64")], &[("f", "INT64")])).unwrap()
    }

    #[test]
    fn corrupt_values_name_the_feature() {
        let hashes = [Strings::from_items([Some(&b"\x0a\xff"[..]), None])];
        let err = check_values(&plan(), &[b"k"].into_iter().collect(), &hashes).unwrap_err();
        assert!(err.to_string().contains("feature 'f' of view 'fv'"), "{err}");
    }

    #[test]
    fn corrupt_timestamps_name_the_key() {
        let rows = RowKeys {
            unique_keys: [b"k"].into_iter().collect(),
            row_to_unique: vec![0],
        };
        let hashes = [Strings::from_items([None, Some(&b"\xff\xff"[..])])];
        let err = feature_vectors(&plan(), &rows, &hashes, 1, true, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("_ts:fv") && err.to_string().contains("b\"k\""),
            "{err}"
        );
    }
}
