//! HMGETs of feature hashes, and `online_read`'s answer per entity key.

use super::error::{printable_key, StoreError};
use super::plan::{Keys, RowKeys, ViewPlan};
use crate::encoding::{self, Timestamp};
use crate::redis::{Batch, Command, RedisClient, Reply, ReplyObserver, Strings};

/// The fields read from one hash, in the order asked for (`None` when absent), held in
/// the bytes Redis sent.
pub type Hash = Strings;

/// The hash fields to read from each of a view's keys.
pub struct HashRead<'a> {
    pub fields: &'a [Vec<u8>],
    pub keys: &'a Keys,
}

/// One `HMGET` per key of every read, all in one batch (one pipeline per node).
/// Returns, per read and key, the value of each field.
pub async fn read_hashes(client: &RedisClient, reads: &[HashRead<'_>]) -> Result<Vec<Vec<Hash>>, StoreError> {
    read_hashes_observed(client, reads, &mut |_, _| {}).await
}

/// `read_hashes`, showing each HMGET's reply to `observe` as it arrives (see
/// `RedisClient::execute_observed`): reads in order, keys in order.
pub async fn read_hashes_observed(
    client: &RedisClient,
    reads: &[HashRead<'_>],
    observe: &mut ReplyObserver<'_>,
) -> Result<Vec<Vec<Hash>>, StoreError> {
    let mut batch = Batch::with_capacity(reads.iter().map(|r| r.keys.len()).sum());
    batch.parse_strings_flat();
    let mut command = Command::default();
    for read in reads {
        let mut fields = Command::default();
        for field in read.fields {
            fields.arg(field);
        }
        for key in read.keys.iter() {
            batch.push(command.restart("HMGET").arg(key).args_of(&fields));
        }
    }
    let mut replies = client.execute_observed(&batch, observe).await?.into_iter();
    let mut out = Vec::with_capacity(reads.len());
    for read in reads {
        let mut rows = Vec::with_capacity(read.keys.len());
        for _ in read.keys.iter() {
            let reply = replies.next().unwrap_or(Reply::Nil);
            rows.push(hmget_reply(reply, read.fields.len()).map_err(|reply| {
                StoreError::UnexpectedReply {
                    redis: client.description().to_owned(),
                    command: "HMGET",
                    reply: reply.to_owned(),
                }
            })?);
        }
        out.push(rows);
    }
    Ok(out)
}

/// Every view's features and `_ts:` of its rows' unique keys, in one batch, each
/// reply shown to `observe` as it arrives.
pub(super) async fn read_views(
    client: &RedisClient,
    views: &[(&ViewPlan, &RowKeys)],
    observe: &mut ReplyObserver<'_>,
) -> Result<Vec<Vec<Hash>>, StoreError> {
    let reads: Vec<HashRead<'_>> = views
        .iter()
        .map(|(plan, rows)| HashRead {
            fields: &plan.read_fields,
            keys: &rows.unique_keys,
        })
        .collect();
    read_hashes_observed(client, &reads, observe).await
}

/// A stored `_ts:{view}` value, or an error naming the view and the key holding it.
pub fn stored_timestamp(view: &str, key: &[u8], bytes: &[u8]) -> Result<Timestamp, StoreError> {
    encoding::decode_timestamp(bytes).map_err(|err| StoreError::CorruptTimestamp {
        view: view.to_owned(),
        key: printable_key(key),
        reason: err.to_string(),
    })
}

/// An entity's stored row: its `_ts:` (`None` when the hash has no data of the view)
/// and each planned feature's stored value.
pub struct StoredRow {
    pub event_time: Option<Timestamp>,
    pub values: Hash,
}

/// `online_read`: the stored row of each entity, given as serialized `EntityKey` protos.
pub async fn read_rows(
    client: &RedisClient,
    plan: &ViewPlan,
    entity_keys: &[Vec<u8>],
) -> Result<Vec<StoredRow>, StoreError> {
    let keys = entity_keys
        .iter()
        .map(|proto| {
            let entity_key = encoding::decode_entity_key_proto(proto)?;
            encoding::redis_key(&plan.project, &entity_key, plan.version)
        })
        .collect::<Result<Keys, _>>()?;
    let read = HashRead {
        fields: &plan.read_fields,
        keys: &keys,
    };
    let hashes = read_hashes(client, &[read]).await?.pop().unwrap_or_default();
    keys.iter()
        .zip(hashes)
        .map(|(key, mut values)| {
            let event_time = values
                .get(plan.features.len())
                .map(|bytes| stored_timestamp(&plan.view, key, bytes))
                .transpose()?;
            values.truncate(plan.features.len());
            Ok(StoredRow { event_time, values })
        })
        .collect()
}

/// An HMGET reply's fields (parsed flat: an array of anything but bulk strings and
/// nils stays a `Reply::Array`), or what is wrong with it.
fn hmget_reply(reply: Reply, fields: usize) -> Result<Hash, &'static str> {
    match reply {
        Reply::Strings(values) if values.len() == fields => Ok(values),
        Reply::Strings(_) => Err("a different number of fields than asked for"),
        Reply::Array(_) => Err("a field that is neither bytes nor nil"),
        _ => Err("a non-array"),
    }
}
