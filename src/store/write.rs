//! `online_write_batch` and `write_arrow`: rows to HSETs (and EXPIREs) of Feast's
//! format, after the event-time check that keeps the newest row.

use std::collections::HashMap;

use futures_util::StreamExt;

use prost::Message;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;

use super::error::{printable_key, StoreError};
use super::plan::{EntityColumn, EntityType, Keys, NativeColumn, ViewPlan};
use super::read::{read_hashes, stored_timestamp, HashRead};
use crate::columns::{encode_column, micros, timestamp_values, EncodedColumn};
use crate::encoding::{self, Timestamp};
use std::sync::OnceLock;

use crate::redis::{Batch, ClientError, Command, RedisClient, Reply, Script};

/// A row as `online_write_batch` gets it: the serialized `EntityKey`, the feature names
/// with their serialized `Value`s, the event time in microseconds since the epoch.
pub struct ProtoRow {
    pub entity_key: Vec<u8>,
    pub features: Vec<String>,
    pub values: Vec<Vec<u8>>,
    pub event_time_micros: i64,
}

fn timestamp_of_micros(micros: i64) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

fn entity_column(entity_type: EntityType, column: &ArrayRef) -> Option<NativeColumn> {
    if column.null_count() > 0 {
        return None;
    }
    Some(match (entity_type, column.data_type()) {
        (EntityType::Int64, DataType::Int64) => {
            NativeColumn::Int64(column.as_primitive::<Int64Type>().values().to_vec())
        }
        (EntityType::Int32, DataType::Int32) => {
            NativeColumn::Int32(column.as_primitive::<Int32Type>().values().to_vec())
        }
        (EntityType::String, DataType::Utf8) => NativeColumn::String(
            column
                .as_string::<i32>()
                .iter()
                .map(|s| s.unwrap_or_default().to_owned())
                .collect(),
        ),
        (EntityType::Bytes, DataType::Binary) => NativeColumn::Bytes(
            column
                .as_binary::<i32>()
                .iter()
                .map(|b| b.unwrap_or_default().to_vec())
                .collect(),
        ),
        _ => return None,
    })
}

/// The column `name` of `batch`, or an error naming it and the view.
fn column_of(plan: &ViewPlan, batch: &RecordBatch, name: &str) -> Result<ArrayRef, StoreError> {
    batch.column_by_name(name).cloned().ok_or_else(|| {
        StoreError::InvalidRequest(format!(
            "the batch has no column '{name}' of view '{}'",
            plan.view
        ))
    })
}

/// The rows of an Arrow batch (the plan's join-key, feature and event-time columns),
/// as `online_write_batch` would get them from Feast's `_convert_arrow_to_proto`, their
/// values held in `values`; `None` when a column is not of the Arrow type this path
/// maps for its dtype (the caller then uses Feast's conversion).
fn rows_from_arrow<'a>(
    plan: &ViewPlan,
    batch: &RecordBatch,
    values: &'a mut Vec<EncodedColumn>,
) -> Result<Option<Vec<WriteRow<'a>>>, StoreError> {
    let Some(timestamp_column) = plan.timestamp_column.as_deref() else {
        return Err(StoreError::InvalidRequest(format!(
            "view '{}' has no event-time column to write Arrow batches with",
            plan.view
        )));
    };
    let mut entities = Vec::with_capacity(plan.join_keys.len());
    for (name, &entity_type) in plan.join_keys.iter().zip(&plan.entity_types) {
        match entity_column(entity_type, &column_of(plan, batch, name)?) {
            Some(column) => entities.push(column),
            None => return Ok(None),
        }
    }
    for feature in &plan.features {
        let column = column_of(plan, batch, &feature.name)?;
        match feature.dtype.and_then(|dtype| encode_column(dtype, &column)) {
            Some(encoded) => values.push(encoded),
            None => return Ok(None),
        }
    }
    let event_times = column_of(plan, batch, timestamp_column)?;
    let DataType::Timestamp(unit, _) = event_times.data_type() else {
        return Ok(None);
    };
    if event_times.null_count() > 0 {
        return Ok(None);
    }
    let event_times = timestamp_values(&event_times, unit);
    let values: &'a [EncodedColumn] = values;
    let mut rows = Vec::with_capacity(event_times.len());
    let mut entity = Vec::with_capacity(entities.len());
    for (row, &event_time) in event_times.iter().enumerate() {
        entity.clear();
        for (column, name) in entities.iter().zip(&plan.join_keys) {
            entity.push(column.value(row, name)?);
        }
        let mut key = Vec::new();
        plan.layout.write_redis_key(&entity, &plan.project, &mut key)?;
        rows.push(WriteRow {
            key,
            fields: plan
                .features
                .iter()
                .zip(values)
                .map(|(feature, v)| (feature.field, v.get(row)))
                .collect(),
            event_time: timestamp_of_micros(micros(event_time, unit)),
        });
    }
    Ok(Some(rows))
}

/// The Redis key and hash fields of each row.
fn rows_from_protos<'a>(plan: &ViewPlan, rows: &'a [ProtoRow]) -> Result<Vec<WriteRow<'a>>, StoreError> {
    let mut fields: HashMap<String, [u8; 4]> =
        plan.features.iter().map(|f| (f.name.clone(), f.field)).collect();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        if row.features.len() != row.values.len() {
            return Err(StoreError::InvalidRequest(format!(
                "a row of view '{}' has {} feature names but {} values",
                plan.view,
                row.features.len(),
                row.values.len()
            )));
        }
        let entity_key = encoding::decode_entity_key_proto(&row.entity_key)?;
        let key = encoding::redis_key(&plan.project, &entity_key, plan.version)?;
        let row_fields = row
            .features
            .iter()
            .map(|name| {
                *fields
                    .entry(name.clone())
                    .or_insert_with(|| encoding::feature_field(&plan.view, name))
            })
            .zip(row.values.iter().map(Vec::as_slice))
            .collect();
        out.push(WriteRow {
            key,
            fields: row_fields,
            event_time: timestamp_of_micros(row.event_time_micros),
        });
    }
    Ok(out)
}

/// `online_write_batch`: rows given as protos, written with `write_rows`' semantics.
pub async fn write_protos(
    client: &RedisClient,
    plan: &ViewPlan,
    rows: Vec<ProtoRow>,
) -> Result<WriteSummary, StoreError> {
    let rows = rows_from_protos(plan, &rows)?;
    write_rows(client, plan, &rows).await
}

/// `write_arrow`: an Arrow batch written with `write_rows`' semantics; `None` (nothing
/// written) when a column's Arrow type is not one this path maps for its dtype.
pub async fn write_arrow(
    client: &RedisClient,
    plan: &ViewPlan,
    batch: &RecordBatch,
) -> Result<Option<WriteSummary>, StoreError> {
    let mut values = Vec::with_capacity(plan.features.len());
    match rows_from_arrow(plan, batch, &mut values)? {
        Some(rows) => write_rows(client, plan, &rows).await.map(Some),
        None => Ok(None),
    }
}

/// One row of `online_write_batch`: an entity's Redis key, its feature fields with
/// their serialized `Value`s, and the row's event time.
struct WriteRow<'a> {
    key: Vec<u8>,
    fields: Vec<([u8; 4], &'a [u8])>,
    event_time: Timestamp,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteSummary {
    pub written: usize,
    pub skipped: usize,
}

fn total_nanos(ts: Timestamp) -> i128 {
    i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos)
}

/// Writes rows whose event time is newer than their hash's stored `_ts:` field, each
/// check and write one step on the server, so that concurrent writers cannot leave an
/// older row behind. KEYS: the rows' hashes, in order. ARGV: the `_ts:` field, the TTL
/// (0: none), then per row its `_ts` bytes, seconds, nanos, the count of field/value
/// arguments and those. Returns per row 1 (written), 0 (the stored row is as new or
/// newer) or -1 (the stored `_ts` is not a `google.protobuf.Timestamp`: varints under
/// tags 8, seconds, negative as 10-byte two's complement, and 16, nanos). Fields go in
/// slices: Lua's `unpack` holds at most ~8,000 values. Materialization runs this once per
/// row, so it is written for Redis' time: no tables, one `HSET` per row (`_ts` with the
/// fields), and a stored `_ts` equal to the row's (not the epoch's, which is written
/// over) needs no decoding.
const NEWEST_WINS: &str = r#"
local byte = string.byte
local function varint(stored, i, n)
  local value, scale, start, b = 0, 1, i, 128
  while b >= 128 do
    if i > n or i - start == 10 then return nil end
    b = byte(stored, i)
    value = value + (b % 128) * scale
    scale = scale * 128
    i = i + 1
  end
  if i - start == 10 then
    value = 0
    for j = start + 8, start, -1 do value = value * 128 + (127 - byte(stored, j) % 128) end
    value = -(value + 1)
  end
  return value, i
end
local function decode(stored)
  local seconds, nanos, i, n = 0, 0, 1, #stored
  while i <= n do
    local tag, value = byte(stored, i), nil
    value, i = varint(stored, i + 1, n)
    if value == nil then return nil end
    if tag == 8 then seconds = value elseif tag == 16 then nanos = value else return nil end
  end
  return seconds, nanos
end

local field, ttl, against_before, a, verdicts = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1', 4, {}
local before = {}
for k = 1, #KEYS do
  local key, ts = KEYS[k], ARGV[a]
  local count = tonumber(ARGV[a + 3])
  local first = a + 4
  local last = first + count - 1
  local verdict = 1
  local stored
  if against_before then
    stored = before[key]
    if stored == nil then
      stored = redis.call('HGET', key, field)
      before[key] = stored
    end
  else
    stored = redis.call('HGET', key, field)
  end
  if stored then
    if stored == ts and ts ~= '' then
      verdict = 0
    else
      local seconds, nanos = decode(stored)
      if seconds == nil then
        verdict = -1
      elseif seconds ~= 0 or nanos ~= 0 then
        local new_seconds, new_nanos = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
        if new_seconds < seconds or (new_seconds == seconds and new_nanos <= nanos) then
          verdict = 0
        end
      end
    end
  end
  if verdict == 1 then
    redis.call('HSET', key, field, ts, unpack(ARGV, first, math.min(first + 6997, last)))
    for s = first + 6998, last, 7000 do
      redis.call('HSET', key, unpack(ARGV, s, math.min(s + 6999, last)))
    end
    if ttl > 0 then redis.call('EXPIRE', key, ttl) end
  end
  verdicts[k] = verdict
  a = last + 1
end
return verdicts
"#;

/// Rows are written in pipelines of about this many, two in flight when no key repeats,
/// so that building one pipeline (and reading its replies) overlaps Redis running the
/// other.
const PIPELINE_ROWS: usize = 2048;
const PIPELINES_IN_FLIGHT: usize = 2;

/// Whether two of `rows` are of one key: their writes must then run in order.
fn repeats_a_key(rows: &[&WriteRow<'_>]) -> bool {
    let mut seen = hashbrown::HashSet::with_capacity(rows.len());
    !rows.iter().all(|row| seen.insert(row.key.as_slice()))
}

/// The replies of `batches`, in order, as one list (running `script` when given). When
/// `in_order` is false, the first runs alone (a script it runs is then loaded before any
/// batch runs beside it: a batch that meets NOSCRIPT partway is run again whole) and
/// the others `PIPELINES_IN_FLIGHT` at a time, each on a connection of its own; else one
/// after another. A batch is built when its turn comes.
async fn overlapped(
    client: &RedisClient,
    script: Option<&Script>,
    mut batches: impl Iterator<Item = Batch>,
    in_order: bool,
) -> Result<Vec<Reply>, ClientError> {
    let run = |batch: Batch| async move {
        match script {
            Some(script) => client.execute_script(script, &batch).await,
            None => client.execute(&batch).await,
        }
    };
    let Some(first) = batches.next() else {
        return Ok(Vec::new());
    };
    let mut replies = run(first).await?;
    let in_flight = if in_order { 1 } else { PIPELINES_IN_FLIGHT };
    let mut rest = futures_util::stream::iter(batches.map(run)).buffered(in_flight);
    while let Some(more) = rest.next().await {
        replies.extend(more?);
    }
    Ok(replies)
}

/// Rows per script call, and field arguments per call, outside a cluster (where each
/// call holds one row: a call's keys must share a slot).
const ROWS_PER_CALL: usize = 64;
const FIELD_ARGS_PER_CALL: usize = 65_536;

fn newest_wins() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(NEWEST_WINS))
}

/// Writes `rows` with Feast's rule: unless `skip_dedup`, a row is skipped when its event
/// time is not newer than the stored `_ts:{view}` of its key and (`in_batch_ordering`,
/// Feast 0.66 on) than every earlier row of `rows` with the same key; before 0.66 each
/// row is checked against what was stored before the batch only, and those that pass
/// are written in order. The stored check runs on the server, atomically with the
/// write (`NEWEST_WINS`); where the server refuses scripts it is a read before the write,
/// as in stock Feast. Each written row sets its fields and `_ts:{view}`, and the TTL
/// when one is set. Callers bound memory by passing rows in chunks.
async fn write_rows(
    client: &RedisClient,
    plan: &ViewPlan,
    rows: &[WriteRow<'_>],
) -> Result<WriteSummary, StoreError> {
    if plan.skip_dedup {
        let rows: Vec<&WriteRow<'_>> = rows.iter().collect();
        let key_repeats = repeats_a_key(&rows);
        return write_unchecked(client, plan, rows, key_repeats).await;
    }
    let Newest {
        rows: newest,
        skipped: skipped_in_batch,
        key_repeats,
    } = if plan.in_batch_ordering {
        newest_in_batch(rows)
    } else {
        grouped_by_key(rows)
    };
    if !client.scripting_refused() {
        match write_newest_atomically(client, plan, &newest, key_repeats).await {
            Err(StoreError::Client(ClientError::ScriptingRefused(_))) => {}
            Ok(mut summary) => {
                summary.skipped += skipped_in_batch;
                return Ok(summary);
            }
            Err(err) => return Err(err),
        }
    }
    let stored = stored_event_times(client, plan, &newest).await?;
    let (mut written, mut skipped) = (Vec::with_capacity(newest.len()), skipped_in_batch);
    for row in newest {
        match stored.get(row.key.as_slice()) {
            Some(&seen) if seen != 0 && total_nanos(row.event_time) <= seen => skipped += 1,
            _ => written.push(row),
        }
    }
    let mut summary = write_unchecked(client, plan, written, key_repeats).await?;
    summary.skipped += skipped;
    Ok(summary)
}

/// The rows of a batch that are newer than every earlier row of the same key, in order.
struct Newest<'r, 'a> {
    rows: Vec<&'r WriteRow<'a>>,
    /// How many rows are not.
    skipped: usize,
    /// Whether two of `rows` are of one key.
    key_repeats: bool,
}

fn newest_in_batch<'r, 'a>(rows: &'r [WriteRow<'a>]) -> Newest<'r, 'a> {
    let mut latest: hashbrown::HashMap<&[u8], i128> = hashbrown::HashMap::with_capacity(rows.len());
    let mut newest = Vec::with_capacity(rows.len());
    for row in rows {
        let new = total_nanos(row.event_time);
        match latest.get(row.key.as_slice()) {
            Some(&seen) if seen != 0 && new <= seen => continue,
            _ => {
                latest.insert(&row.key, new);
                newest.push(row);
            }
        }
    }
    Newest {
        skipped: rows.len() - newest.len(),
        key_repeats: latest.len() < newest.len(),
        rows: newest,
    }
}

/// Every row of a batch, those of one key together (in the batch's order), so that
/// one script call checks them all against what was stored before it.
fn grouped_by_key<'r, 'a>(rows: &'r [WriteRow<'a>]) -> Newest<'r, 'a> {
    let mut first_seen: hashbrown::HashMap<&[u8], usize> = hashbrown::HashMap::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        first_seen.entry(row.key.as_slice()).or_insert(index);
    }
    let key_repeats = first_seen.len() < rows.len();
    let mut grouped: Vec<&WriteRow<'a>> = rows.iter().collect();
    if key_repeats {
        grouped.sort_by_key(|row| first_seen[row.key.as_slice()]);
    }
    Newest {
        rows: grouped,
        skipped: 0,
        key_repeats,
    }
}

/// `ts` as stored, encoded into `buffer` (reused from row to row).
fn encoded_timestamp(ts: Timestamp, buffer: &mut Vec<u8>) -> &[u8] {
    buffer.clear();
    ts.encode(buffer).expect("a Vec grows as needed");
    buffer
}

/// One `NEWEST_WINS` call per group of rows.
fn newest_wins_batch(script: &Script, plan: &ViewPlan, ttl: &str, groups: &[&[&WriteRow<'_>]]) -> Batch {
    let mut batch = Batch::with_capacity(groups.len());
    let mut event_time = Vec::new();
    for group in groups {
        let mut call = script.call(group.iter().map(|row| row.key.as_slice()));
        call.arg(&plan.timestamp_field)
            .arg(ttl)
            .arg(if plan.in_batch_ordering { "0" } else { "1" });
        for row in *group {
            call.arg(encoded_timestamp(row.event_time, &mut event_time))
                .arg(itoa::Buffer::new().format(row.event_time.seconds))
                .arg(itoa::Buffer::new().format(row.event_time.nanos))
                .arg(itoa::Buffer::new().format(2 * row.fields.len()));
            for (field, value) in &row.fields {
                call.arg(field).arg(value);
            }
        }
        batch.push(&call);
    }
    batch
}

async fn write_newest_atomically(
    client: &RedisClient,
    plan: &ViewPlan,
    rows: &[&WriteRow<'_>],
    key_repeats: bool,
) -> Result<WriteSummary, StoreError> {
    let script = newest_wins();
    let ttl = itoa::Buffer::new()
        .format(plan.key_ttl_seconds.unwrap_or(0))
        .to_owned();
    let rows_per_call = if client.is_cluster() { 1 } else { ROWS_PER_CALL };
    let mut calls: Vec<&[&WriteRow<'_>]> = Vec::new();
    let (mut start, mut field_args) = (0, 0);
    for (index, row) in rows.iter().enumerate() {
        // Checked against what was stored before the batch, a key's rows share a call.
        let same_key = !plan.in_batch_ordering && index > start && rows[index - 1].key == row.key;
        let full = index - start >= rows_per_call
            || (index > start && field_args + 2 * row.fields.len() > FIELD_ARGS_PER_CALL);
        if full && !same_key {
            calls.push(&rows[start..index]);
            (start, field_args) = (index, 0);
        }
        field_args += 2 * row.fields.len();
    }
    if start < rows.len() {
        calls.push(&rows[start..]);
    }
    let calls_per_pipeline = (PIPELINE_ROWS / rows_per_call).max(1);
    // Boxed: a closure over borrowed rows held across an await trips rustc's check that
    // the future is Send (rust-lang/rust#64552).
    let batches: Box<dyn Iterator<Item = Batch> + Send + '_> = Box::new(
        calls
            .chunks(calls_per_pipeline)
            .map(|pipeline| newest_wins_batch(script, plan, &ttl, pipeline)),
    );
    let replies = overlapped(client, Some(script), batches, key_repeats).await?;
    let mut verdicts = Vec::with_capacity(rows.len());
    for (group, reply) in calls.iter().zip(&replies) {
        match reply {
            Reply::Array(items) if items.len() == group.len() => {
                verdicts.extend(items.iter().map(Reply::integer))
            }
            _ => {
                return Err(StoreError::UnexpectedReply {
                    redis: client.description().to_owned(),
                    command: "EVALSHA",
                    reply: format!("{reply:?}"),
                })
            }
        }
    }
    if let Some(index) = verdicts.iter().position(|v| *v == Some(-1)) {
        return Err(StoreError::CorruptTimestamp {
            view: plan.view.clone(),
            key: printable_key(&rows[index].key),
            reason: "checked on the server; the row was not written".into(),
        });
    }
    let written = verdicts.iter().filter(|v| **v == Some(1)).count();
    Ok(WriteSummary {
        written,
        skipped: rows.len() - written,
    })
}

/// One HSET per row (its fields and `_ts:{view}`), plus EXPIRE when a TTL is set.
fn unchecked_batch(plan: &ViewPlan, rows: &[&WriteRow<'_>]) -> Batch {
    let commands_per_row = if plan.key_ttl_seconds.is_some() { 2 } else { 1 };
    let mut batch = Batch::with_capacity(rows.len() * commands_per_row);
    let mut event_time = Vec::new();
    for row in rows {
        let mut hset = Command::new("HSET");
        hset.arg(&row.key)
            .arg(&plan.timestamp_field)
            .arg(encoded_timestamp(row.event_time, &mut event_time));
        for (field, value) in &row.fields {
            hset.arg(field).arg(value);
        }
        batch.push(&hset);
        if let Some(ttl) = plan.key_ttl_seconds {
            batch.push(
                Command::new("EXPIRE")
                    .arg(&row.key)
                    .arg(itoa::Buffer::new().format(ttl)),
            );
        }
    }
    batch
}

/// Writes every row, newer or not than what is stored; in order when `key_repeats`
/// (two rows of one key).
async fn write_unchecked(
    client: &RedisClient,
    plan: &ViewPlan,
    rows: Vec<&WriteRow<'_>>,
    key_repeats: bool,
) -> Result<WriteSummary, StoreError> {
    // Boxed for the reason `write_newest_atomically` gives.
    let batches: Box<dyn Iterator<Item = Batch> + Send + '_> = Box::new(
        rows.chunks(PIPELINE_ROWS)
            .map(|pipeline| unchecked_batch(plan, pipeline)),
    );
    overlapped(client, None, batches, key_repeats).await?;
    Ok(WriteSummary {
        written: rows.len(),
        skipped: 0,
    })
}

/// The stored `_ts:{view}` of every distinct key of `rows`, in nanoseconds.
async fn stored_event_times(
    client: &RedisClient,
    plan: &ViewPlan,
    rows: &[&WriteRow<'_>],
) -> Result<HashMap<Vec<u8>, i128>, StoreError> {
    let mut distinct: Vec<Vec<u8>> = rows.iter().map(|row| row.key.clone()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let fields = [plan.timestamp_field.clone()];
    let keys: Keys = distinct.iter().collect();
    let read = HashRead::uncached(&fields, &keys);
    let hashes = read_hashes(client, &[read]).await?.pop().unwrap_or_default();
    let mut stored = HashMap::with_capacity(distinct.len());
    for (key, hash) in distinct.into_iter().zip(hashes) {
        let Some(bytes) = hash.get(0) else {
            continue;
        };
        let ts = stored_timestamp(&plan.view, &key, bytes)?;
        stored.insert(key, total_nanos(ts));
    }
    Ok(stored)
}
