//! Lua scripts run by `EVALSHA`: loaded on every master the first time a node does not
//! know one (`NOSCRIPT`), and given up on, for good, where the server refuses scripting
//! (an ACL without `@scripting`, a proxy without `EVAL`): callers then take another way.

use std::sync::atomic::Ordering;

use super::client::{Batch, RedisClient};
use super::error::ClientError;
use super::resp::{Command, Pipeline};

pub struct Script {
    source: &'static str,
    sha: String,
}

impl Script {
    pub fn new(source: &'static str) -> Self {
        Self {
            source,
            sha: sha1_smol::Sha1::from(source).digest().to_string(),
        }
    }

    /// `EVALSHA <sha> <count> <keys...>`, to which the caller adds the script's
    /// arguments. In a cluster every key of one call must be in the same slot.
    pub fn call<'a>(&self, keys: impl ExactSizeIterator<Item = &'a [u8]>) -> Command {
        let mut command = Command::new("EVALSHA");
        command.arg(&self.sha).arg(itoa::Buffer::new().format(keys.len()));
        for key in keys {
            command.arg(key);
        }
        command
    }
}

/// Whether a server error means scripting is not allowed here (rather than a script's
/// own failure or a wrong password).
fn refuses_scripting(err: &ClientError) -> bool {
    let message = match err {
        ClientError::Server { message, .. } | ClientError::Auth { reason: message, .. } => message,
        _ => return false,
    };
    let lower = message.to_ascii_lowercase();
    (lower.starts_with("noperm") || lower.starts_with("err unknown command") || lower.contains("disabled"))
        && (lower.contains("eval") || lower.contains("script"))
}

impl RedisClient {
    /// Whether a server refused scripting before: scripts are not tried again.
    pub fn scripting_refused(&self) -> bool {
        self.scripting_refused.load(Ordering::Relaxed)
    }

    /// Runs `batch`, made of `script.call(...)` commands, loading the script on every
    /// master when a node does not know it and running the batch again. A refusal of
    /// scripting is `ClientError::ScriptingRefused`, remembered by the client.
    pub async fn execute_script(
        &self,
        script: &Script,
        batch: &Batch,
    ) -> Result<Vec<super::Reply>, ClientError> {
        let result = match self.execute(batch).await {
            Err(err) if err.server_code() == Some("NOSCRIPT") => {
                self.load_script(script).await?;
                self.execute(batch).await
            }
            other => other,
        };
        result.map_err(|err| self.refusal(err))
    }

    fn refusal(&self, err: ClientError) -> ClientError {
        if !refuses_scripting(&err) {
            return err;
        }
        self.scripting_refused.store(true, Ordering::Relaxed);
        ClientError::ScriptingRefused(err.to_string())
    }

    async fn load_script(&self, script: &Script) -> Result<(), ClientError> {
        let mut pipeline = Pipeline::new();
        pipeline.push(Command::new("SCRIPT").arg("LOAD").arg(script.source));
        for master in self.masters().await? {
            let replies = self.send_with_retries(&master, &pipeline).await?;
            if let Some(err) = replies
                .first()
                .and_then(|reply| super::client::server_error(&master, reply))
            {
                return Err(self.refusal(err));
            }
        }
        Ok(())
    }
}
