//! Deleting a view's data or an entity's keys, found by `SCAN` on every master.

use super::error::StoreError;
use super::plan::ViewPlan;
use crate::redis::{Batch, Command, RedisClient, Reply};

/// A `SCAN MATCH` pattern for keys that start with `prefix` and end with `project`.
/// Glob characters in either are escaped: entity-key prefixes hold length bytes that
/// can be `*`, `?`, `[` or `\`, which stock Feast leaves to match too much or nothing.
fn scan_pattern(prefix: &[u8], project: &str) -> Vec<u8> {
    let mut pattern = Vec::with_capacity(prefix.len() + project.len() + 8);
    let escaped = |bytes: &[u8], pattern: &mut Vec<u8>| {
        for &b in bytes {
            if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
                pattern.push(b'\\');
            }
            pattern.push(b);
        }
    };
    escaped(prefix, &mut pattern);
    pattern.push(b'*');
    escaped(project.as_bytes(), &mut pattern);
    pattern
}

/// The keys of the plan's join keys in its project, on every master.
async fn project_keys(client: &RedisClient, plan: &ViewPlan) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut keys = client
        .scan(&scan_pattern(plan.layout.prefix(), &plan.project))
        .await?;
    keys.retain(|key| plan.layout.is_redis_key_of(key, &plan.project));
    Ok(keys)
}

/// Every key matching the glob `pattern` on every master, like redis-py's `scan_iter`.
pub async fn scan_keys(client: &RedisClient, pattern: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
    Ok(client.scan(pattern).await?)
}

/// Deletes every key of the plan's join keys in its project (all of an entity's
/// views), on every master. Returns how many.
pub async fn delete_entities(client: &RedisClient, plan: &ViewPlan) -> Result<usize, StoreError> {
    let keys = project_keys(client, plan).await?;
    let mut batch = Batch::with_capacity(keys.len());
    for key in &keys {
        batch.push(Command::new("DEL").arg(key));
    }
    client.execute(&batch).await?;
    Ok(keys.len())
}

/// Deletes a view's data from the keys of its join keys: a hash that holds only this
/// view (its one `_ts:` field is the view's) is deleted, otherwise the plan's fields
/// and `_ts:` are removed from it. Returns how many hashes held the view.
pub async fn delete_view(client: &RedisClient, plan: &ViewPlan) -> Result<usize, StoreError> {
    let keys = project_keys(client, plan).await?;
    let mut hkeys = Batch::with_capacity(keys.len());
    for key in &keys {
        hkeys.push(Command::new("HKEYS").arg(key));
    }
    let replies = client.execute(&hkeys).await?;
    let mut deletes = Batch::new();
    for (key, reply) in keys.iter().zip(replies) {
        let Reply::Array(names) = reply else {
            return Err(StoreError::UnexpectedReply {
                redis: client.description().to_owned(),
                command: "HKEYS",
                reply: "a non-array".into(),
            });
        };
        let mut views = 0;
        let mut holds_view = false;
        for name in names.iter().filter_map(Reply::text) {
            if name.starts_with(b"_ts:") {
                views += 1;
                holds_view |= name == plan.timestamp_field;
            }
        }
        if !holds_view {
            continue;
        }
        let command = if views == 1 {
            let mut command = Command::new("DEL");
            command.arg(key);
            command
        } else {
            let mut command = Command::new("HDEL");
            command.arg(key);
            for field in &plan.read_fields {
                command.arg(field);
            }
            command
        };
        deletes.push(&command);
    }
    let deleted = deletes.len();
    client.execute(&deletes).await?;
    Ok(deleted)
}
