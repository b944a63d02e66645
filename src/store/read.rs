use ::redis::Value;

use super::error::StoreError;
use crate::redis::{Batch, RedisClient};

/// The hash fields to read from each of a view's keys.
pub struct HashRead<'a> {
    pub fields: &'a [Vec<u8>],
    pub keys: &'a [Vec<u8>],
}

/// One `HMGET` per key of every read, all in one batch (one pipeline per node).
/// Returns, per read and key, the value of each field (`None` when absent).
pub async fn read_hashes(
    client: &RedisClient,
    reads: &[HashRead<'_>],
) -> Result<Vec<Vec<Vec<Option<Vec<u8>>>>>, StoreError> {
    let mut batch = Batch::with_capacity(reads.iter().map(|r| r.keys.len()).sum());
    for read in reads {
        for key in read.keys {
            let mut command = ::redis::cmd("HMGET");
            command.arg(key.as_slice());
            for field in read.fields {
                command.arg(field.as_slice());
            }
            batch.push(key, command);
        }
    }
    let mut replies = client.execute(&batch).await?.into_iter();
    let mut out = Vec::with_capacity(reads.len());
    for read in reads {
        let mut rows = Vec::with_capacity(read.keys.len());
        for _ in read.keys {
            let reply = replies.next().unwrap_or(Value::Nil);
            rows.push(hmget_reply(reply, read.fields.len())?);
        }
        out.push(rows);
    }
    Ok(out)
}

fn hmget_reply(reply: Value, fields: usize) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
    let unexpected = |reply: &str| StoreError::UnexpectedReply {
        command: "HMGET",
        reply: reply.to_owned(),
    };
    let Value::Array(values) = reply else {
        return Err(unexpected("a non-array"));
    };
    if values.len() != fields {
        return Err(unexpected("a different number of fields than asked for"));
    }
    values
        .into_iter()
        .map(|value| match value {
            Value::Nil => Ok(None),
            Value::BulkString(bytes) => Ok(Some(bytes)),
            _ => Err(unexpected("a field that is neither bytes nor nil")),
        })
        .collect()
}
