use std::collections::HashMap;

use prost::Message;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;

use super::error::{printable_key, StoreError};
use super::read::{read_hashes, HashRead};
use super::response::{EntityColumn, NativeColumn};
use crate::columns::{encode_column, micros, timestamp_values, FeatureType};
use crate::encoding::{self, feature_field, EntityKeyLayout, KeySerializationVersion, Timestamp};
use crate::redis::{Batch, RedisClient};

/// A row as `online_write_batch` gets it: the serialized `EntityKey`, the feature names
/// with their serialized `Value`s, the event time in microseconds since the epoch.
pub struct ProtoRow {
    pub entity_key: Vec<u8>,
    pub features: Vec<String>,
    pub values: Vec<Vec<u8>>,
    pub event_time_micros: i64,
}

impl From<(Vec<u8>, Vec<String>, Vec<Vec<u8>>, i64)> for ProtoRow {
    fn from(
        (entity_key, features, values, event_time_micros): (Vec<u8>, Vec<String>, Vec<Vec<u8>>, i64),
    ) -> Self {
        Self {
            entity_key,
            features,
            values,
            event_time_micros,
        }
    }
}

/// One Arrow record batch of a feature view: its join-key columns with their declared
/// entity types (Feast `ValueType` names), its feature columns with their dtypes, and
/// its event-time column.
pub struct ArrowRows<'a> {
    pub join_keys: Vec<(String, &'a str, ArrayRef)>,
    pub features: Vec<(String, FeatureType, ArrayRef)>,
    pub event_times: ArrayRef,
}

fn entity_column(value_type: &str, column: &ArrayRef) -> Option<NativeColumn> {
    if column.null_count() > 0 {
        return None;
    }
    Some(match (value_type, column.data_type()) {
        ("INT64", DataType::Int64) => {
            NativeColumn::Int64(column.as_primitive::<Int64Type>().values().to_vec())
        }
        ("INT32", DataType::Int32) => {
            NativeColumn::Int32(column.as_primitive::<Int32Type>().values().to_vec())
        }
        ("STRING", DataType::Utf8) => NativeColumn::String(
            column
                .as_string::<i32>()
                .iter()
                .map(|s| s.unwrap_or_default().to_owned())
                .collect(),
        ),
        ("BYTES", DataType::Binary) => NativeColumn::Bytes(
            column
                .as_binary::<i32>()
                .iter()
                .map(|b| b.unwrap_or_default().to_vec())
                .collect(),
        ),
        _ => return None,
    })
}

/// The rows of an Arrow batch, as `online_write_batch` would get them from Feast's
/// `_convert_arrow_to_proto`; `None` when a column is not of the Arrow type this path
/// maps for its dtype (the caller then uses Feast's conversion).
pub fn rows_from_arrow(
    project: &str,
    version: KeySerializationVersion,
    view: &str,
    batch: &ArrowRows<'_>,
) -> Result<Option<Vec<WriteRow>>, StoreError> {
    let Some(entities) = batch
        .join_keys
        .iter()
        .map(|(_, value_type, column)| entity_column(value_type, column))
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    let DataType::Timestamp(unit, _) = batch.event_times.data_type() else {
        return Ok(None);
    };
    if batch.event_times.null_count() > 0 {
        return Ok(None);
    }
    let Some(values) = batch
        .features
        .iter()
        .map(|(_, ty, column)| encode_column(*ty, column))
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    let names: Vec<String> = batch.join_keys.iter().map(|(name, _, _)| name.clone()).collect();
    let layout = EntityKeyLayout::new(&names, version)?;
    let fields: Vec<[u8; 4]> = batch
        .features
        .iter()
        .map(|(name, _, _)| feature_field(view, name))
        .collect();
    let event_times = timestamp_values(&batch.event_times, unit);
    let mut rows = Vec::with_capacity(event_times.len());
    let mut entity = Vec::with_capacity(entities.len());
    for (row, &event_time) in event_times.iter().enumerate() {
        entity.clear();
        for (column, name) in entities.iter().zip(&names) {
            entity.push(column.value(row, name)?);
        }
        let mut key = Vec::new();
        layout.write_redis_key(&entity, project, &mut key)?;
        let micros = micros(event_time, unit);
        rows.push(WriteRow {
            key,
            fields: fields
                .iter()
                .zip(&values)
                .map(|(f, v)| (*f, v[row].clone()))
                .collect(),
            event_time: Timestamp {
                seconds: micros.div_euclid(1_000_000),
                nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
            },
        });
    }
    Ok(Some(rows))
}

/// The Redis key and hash fields of each row.
pub fn rows_from_protos(
    project: &str,
    version: KeySerializationVersion,
    view: &str,
    rows: Vec<ProtoRow>,
) -> Result<Vec<WriteRow>, StoreError> {
    let mut fields = HashMap::<String, [u8; 4]>::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if row.features.len() != row.values.len() {
            return Err(StoreError::InvalidRequest(format!(
                "a row of view '{view}' has {} feature names but {} values",
                row.features.len(),
                row.values.len()
            )));
        }
        let entity_key = encoding::decode_entity_key_proto(&row.entity_key)?;
        let key = encoding::redis_key(project, &entity_key, version)?;
        let row_fields = row
            .features
            .iter()
            .map(|name| {
                *fields
                    .entry(name.clone())
                    .or_insert_with(|| feature_field(view, name))
            })
            .zip(row.values)
            .collect();
        let micros = row.event_time_micros;
        out.push(WriteRow {
            key,
            fields: row_fields,
            event_time: Timestamp {
                seconds: micros.div_euclid(1_000_000),
                nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
            },
        });
    }
    Ok(out)
}

/// One row of `online_write_batch`: an entity's Redis key, its feature fields with
/// their serialized `Value`s, and the row's event time.
pub struct WriteRow {
    pub key: Vec<u8>,
    pub fields: Vec<([u8; 4], Vec<u8>)>,
    pub event_time: Timestamp,
}

pub struct WriteOptions<'a> {
    pub view: &'a str,
    /// `_ts:{view}`.
    pub timestamp_field: Vec<u8>,
    pub key_ttl_seconds: Option<i64>,
    pub skip_dedup: bool,
}

impl<'a> WriteOptions<'a> {
    pub fn new(view: &'a str, key_ttl_seconds: Option<i64>, skip_dedup: bool) -> Self {
        Self {
            view,
            timestamp_field: encoding::timestamp_field(view),
            key_ttl_seconds,
            skip_dedup,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteSummary {
    pub written: usize,
    pub skipped: usize,
}

fn total_nanos(ts: Timestamp) -> i128 {
    i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos)
}

/// Writes `rows` as stock Feast does: unless `skip_dedup`, a row is skipped when its
/// event time is not newer than the stored `_ts:{view}` of its key and than every
/// earlier row of `rows` with the same key; each written row is one HSET of its fields
/// and `_ts:{view}`, plus EXPIRE when a TTL is set. Callers bound memory by passing
/// rows in chunks: a later chunk's check reads what the earlier chunks wrote.
pub async fn write_rows(
    client: &RedisClient,
    rows: &[WriteRow],
    options: &WriteOptions<'_>,
) -> Result<WriteSummary, StoreError> {
    let latest_stored = if options.skip_dedup {
        HashMap::new()
    } else {
        stored_event_times(client, rows, options).await?
    };
    let mut latest_in_batch: HashMap<&[u8], i128> = HashMap::new();
    let commands_per_row = if options.key_ttl_seconds.is_some() { 2 } else { 1 };
    let mut batch = Batch::with_capacity(rows.len() * commands_per_row);
    let mut summary = WriteSummary::default();
    for row in rows {
        let new = total_nanos(row.event_time);
        if !options.skip_dedup {
            let stored = latest_stored.get(row.key.as_slice()).copied().unwrap_or(0);
            let seen = stored.max(latest_in_batch.get(row.key.as_slice()).copied().unwrap_or(0));
            if seen != 0 && new <= seen {
                summary.skipped += 1;
                continue;
            }
            latest_in_batch.insert(&row.key, new);
        }
        let mut hset = ::redis::cmd("HSET");
        hset.arg(row.key.as_slice())
            .arg(options.timestamp_field.as_slice())
            .arg(row.event_time.encode_to_vec());
        for (field, value) in &row.fields {
            hset.arg(field.as_slice()).arg(value.as_slice());
        }
        batch.push(&row.key, hset);
        if let Some(ttl) = options.key_ttl_seconds {
            let mut expire = ::redis::cmd("EXPIRE");
            expire.arg(row.key.as_slice()).arg(ttl);
            batch.push(&row.key, expire);
        }
        summary.written += 1;
    }
    client.execute(&batch).await?;
    Ok(summary)
}

/// The stored `_ts:{view}` of every distinct key of `rows`, in nanoseconds.
async fn stored_event_times(
    client: &RedisClient,
    rows: &[WriteRow],
    options: &WriteOptions<'_>,
) -> Result<HashMap<Vec<u8>, i128>, StoreError> {
    let mut distinct: Vec<Vec<u8>> = rows.iter().map(|row| row.key.clone()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let fields = [options.timestamp_field.clone()];
    let read = HashRead {
        fields: &fields,
        keys: &distinct,
    };
    let hashes = read_hashes(client, &[read]).await?.pop().unwrap_or_default();
    let mut stored = HashMap::with_capacity(distinct.len());
    for (key, hash) in distinct.into_iter().zip(hashes) {
        let Some(Some(bytes)) = hash.into_iter().next() else {
            continue;
        };
        let ts = encoding::decode_timestamp(&bytes).map_err(|err| StoreError::CorruptTimestamp {
            view: options.view.to_owned(),
            key: printable_key(&key),
            reason: err.to_string(),
        })?;
        stored.insert(key, total_nanos(ts));
    }
    Ok(stored)
}
