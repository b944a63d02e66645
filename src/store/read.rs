//! HMGETs of feature hashes, and `online_read`'s answer per entity key.

use std::time::Duration;

use super::error::{printable_key, StoreError};
use super::plan::{Keys, RowKeys, ViewPlan};
use crate::encoding::{self, Timestamp};
use crate::redis::{
    Batch, Command, EntryStamp, Fill, Invalidation, NearCache, RedisClient, Reply, ReplyObserver, Strings,
};

/// The fields read from one hash, in the order asked for (`None` when absent), held in
/// the bytes Redis sent.
pub type Hash = Strings;

/// The hash fields to read from each of a view's keys.
pub struct HashRead<'a> {
    pub fields: &'a [Vec<u8>],
    pub keys: &'a Keys,
    /// Whether the client's near cache may answer (and keep) these fields.
    pub cached: bool,
    /// Whether the keys carry an EXPIRE (`key_ttl_seconds`): a cached entry must not
    /// outlive its key.
    pub expiring: bool,
}

impl<'a> HashRead<'a> {
    /// A read straight from Redis, never from the near cache (what a write's dedup
    /// needs).
    pub fn uncached(fields: &'a [Vec<u8>], keys: &'a Keys) -> Self {
        Self {
            fields,
            keys,
            cached: false,
            expiring: false,
        }
    }

    /// A read of `plan`'s view, through the near cache when the config caches the view.
    pub fn of_view(plan: &ViewPlan, fields: &'a [Vec<u8>], keys: &'a Keys) -> Self {
        Self {
            fields,
            keys,
            cached: plan.near_cached,
            expiring: plan.key_ttl_seconds.is_some_and(|ttl| ttl > 0),
        }
    }
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
    match client.near_cache() {
        Some(cache) if reads.iter().any(|read| read.cached) => {
            Ok(read_through(client, cache, reads, false).await?.0)
        }
        _ => read_from_redis(client, reads, observe).await,
    }
}

/// `read_hashes`, with a stamp of each near-cache entry the hashes were read from (see
/// `NearCache::current`) when every key was: `None` when some came from Redis alone
/// (an uncached view, no near cache, a fill refused).
pub async fn read_hashes_stamped(
    client: &RedisClient,
    reads: &[HashRead<'_>],
) -> Result<(Vec<Vec<Hash>>, Option<Vec<EntryStamp>>), StoreError> {
    match client.near_cache() {
        Some(cache) if reads.iter().any(|read| read.cached) => read_through(client, cache, reads, true).await,
        _ => Ok((read_from_redis(client, reads, &mut |_, _| {}).await?, None)),
    }
}

async fn read_from_redis(
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
            rows.push(hmget_reply(client, replies.next(), read.fields.len())?);
        }
        out.push(rows);
    }
    Ok(out)
}

/// `read_from_redis` answering what it can from the near cache: the misses are read in
/// one batch (with each cached key's PTTL when keys expire) and fill the cache where
/// their keys are now tracked. Replies are not streamed to an observer here: the
/// caller decodes them once all are in.
async fn read_through(
    client: &RedisClient,
    cache: &NearCache,
    reads: &[HashRead<'_>],
    stamped: bool,
) -> Result<(Vec<Vec<Hash>>, Option<Vec<EntryStamp>>), StoreError> {
    let mut fill: Fill<'_> = cache.begin();
    if stamped {
        fill.stamp();
    }
    let mut found: Vec<Vec<Option<Hash>>> = reads
        .iter()
        .map(|read| match read.cached {
            true => fill.lookup(read.keys.iter(), read.fields),
            false => vec![None; read.keys.len()],
        })
        .collect();
    let mut batch = Batch::new();
    batch.parse_strings_flat();
    let mut command = Command::default();
    let mut fills = false;
    for (read, found) in reads.iter().zip(&found) {
        if found.iter().all(Option::is_some) {
            continue;
        }
        let mut fields = Command::default();
        for field in read.fields {
            fields.arg(field);
        }
        for (key, _) in read.keys.iter().zip(found).filter(|(_, hit)| hit.is_none()) {
            batch.push(command.restart("HMGET").arg(key).args_of(&fields));
            if read.cached && read.expiring {
                batch.push(command.restart("PTTL").arg(key));
            }
            fills |= read.cached;
        }
    }
    let (replies, tracked) = match fills && cache.invalidation() == Invalidation::Tracking {
        true => client.execute_tracked(&batch).await?,
        false => {
            let replies = client.execute(&batch).await?;
            let fillable = vec![true; replies.len()];
            (replies, fillable)
        }
    };
    let mut replies = replies.into_iter().zip(tracked);
    let mut out = Vec::with_capacity(reads.len());
    for (read, found) in reads.iter().zip(&mut found) {
        let mut rows = Vec::with_capacity(read.keys.len());
        for (key, hit) in read.keys.iter().zip(found) {
            if let Some(hash) = hit.take() {
                rows.push(hash);
                continue;
            }
            let (reply, tracked) = replies.next().unzip();
            let hash = hmget_reply(client, reply, read.fields.len())?;
            if read.cached {
                let key_ttl = match read.expiring {
                    true => match replies.next() {
                        Some((Reply::Int(ms), _)) if ms >= 0 => Some(Duration::from_millis(ms as u64)),
                        // -1: no EXPIRE; -2: no key (nothing to outlive).
                        Some((Reply::Int(_), _)) => None,
                        reply => return Err(unexpected(client, "PTTL", reply.map(|(reply, _)| reply))),
                    },
                    false => None,
                };
                if tracked == Some(true) {
                    fill.complete(key, read.fields, &hash, key_ttl);
                }
            }
            rows.push(hash);
        }
        out.push(rows);
    }
    let keys: usize = reads.iter().map(|read| read.keys.len()).sum();
    let stamps = fill.take_stamps().filter(|stamps| stamps.len() == keys);
    Ok((out, stamps))
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
        .map(|(plan, rows)| HashRead::of_view(plan, &plan.read_fields, &rows.unique_keys))
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
    let read = HashRead::of_view(plan, &plan.read_fields, &keys);
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
fn hmget_reply(client: &RedisClient, reply: Option<Reply>, fields: usize) -> Result<Hash, StoreError> {
    let wrong = match reply {
        Some(Reply::Strings(values)) if values.len() == fields => return Ok(values),
        Some(Reply::Strings(_)) => "a different number of fields than asked for",
        Some(Reply::Array(_)) => "a field that is neither bytes nor nil",
        _ => "a non-array",
    };
    Err(unexpected_reply(client, "HMGET", wrong))
}

fn unexpected(client: &RedisClient, command: &'static str, reply: Option<Reply>) -> StoreError {
    let wrong = match reply {
        None => "no reply",
        Some(Reply::Error(_)) => "an error",
        Some(_) => "a reply of another type",
    };
    unexpected_reply(client, command, wrong)
}

fn unexpected_reply(client: &RedisClient, command: &'static str, wrong: &str) -> StoreError {
    StoreError::UnexpectedReply {
        redis: client.description().to_owned(),
        command,
        reply: wrong.to_owned(),
    }
}
