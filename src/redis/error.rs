use std::time::Duration;

use thiserror::Error;

use super::settings::SettingsError;

/// What went wrong talking to Redis. Every variant names the address it concerns; none
/// carries a password (Redis never puts one in its error replies, and neither do we).
#[derive(Debug, Error, Clone)]
pub enum ClientError {
    #[error("cannot connect to Redis at {addr}: {reason}")]
    Connect { addr: String, reason: String },

    #[error("Redis at {addr} did not answer within {timeout:?} (command_timeout_seconds / connect_timeout_seconds)")]
    Timeout { addr: String, timeout: Duration },

    #[error("lost the connection to Redis at {addr}: {reason}")]
    Io { addr: String, reason: String },

    #[error(
        "Redis at {addr} refused the credentials: {reason}; check password/username in connection_string"
    )]
    Auth { addr: String, reason: String },

    #[error("Redis at {addr} answered with an error: {message}")]
    Server { addr: String, message: String },

    #[error("unexpected reply from Redis at {addr} to {command}: {reply}")]
    Protocol {
        addr: String,
        command: &'static str,
        reply: String,
    },

    #[error("no sentinel among {sentinels} knows a master named '{master}' (sentinel_master)")]
    NoMaster { sentinels: String, master: String },

    #[error("Redis Cluster: no node among {nodes} answered CLUSTER SLOTS: {reason}")]
    NoClusterNodes { nodes: String, reason: String },

    #[error("Redis Cluster: slot {slot} is served by no node (cluster down or resharding)")]
    SlotUncovered { slot: u16 },

    #[error(
        "Redis Cluster: still redirected after {0} attempts; the cluster is resharding or misconfigured"
    )]
    TooManyRedirects(usize),

    #[error(
        "TLS with Redis at {addr} failed: {reason}; check ssl_ca_certs / tls_ca_file, ssl_check_hostname and the server's certificate"
    )]
    TlsHandshake { addr: String, reason: String },

    #[error("TLS setting {setting}: {reason}")]
    TlsConfig { setting: &'static str, reason: String },

    #[error(
        "the near cache needs CLIENT TRACKING and a subscription to __redis__:invalidate, which Redis at {addr} refuses ({message}); use Redis 6+ or Valkey, grant the user +client|tracking and &__redis__:invalidate, or set near_cache.invalidation: ttl_only to serve entries up to near_cache.max_staleness_seconds old"
    )]
    TrackingRefused { addr: String, message: String },

    #[error("Redis refuses Lua scripts here: {0}")]
    ScriptingRefused(String),

    #[error(transparent)]
    Settings(#[from] SettingsError),
}

impl ClientError {
    /// The code of a server's error reply (`NOSCRIPT`, `WRONGTYPE`), if this is one.
    pub fn server_code(&self) -> Option<&str> {
        match self {
            Self::Server { message, .. } | Self::Auth { reason: message, .. } => {
                message.split_whitespace().next()
            }
            _ => None,
        }
    }

    /// Failures after which a new connection (or a refreshed topology) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Io { .. })
    }
}
