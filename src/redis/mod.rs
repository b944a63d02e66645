//! Talking to Redis: connection settings, connections, and one client for standalone,
//! cluster and sentinel deployments. Knows nothing of Feast.

mod client;
mod cluster;
mod connection;
mod error;
mod multiplex;
pub(crate) mod near_cache;
mod resp;
mod script;
mod settings;
mod tls;

pub use client::{Batch, RedisClient, RetryPolicy};
pub use cluster::key_slot;
pub use connection::{note_process_id, spin_wait, ConnectionGroup, NodeAddr, ReplyObserver, Timeouts};
pub use error::ClientError;
pub use near_cache::{EntryStamp, Fill, Invalidation, NearCache, NearCacheConfig, NearCacheStats};
pub use resp::{Command, Reply, Strings};
pub use script::Script;
pub use settings::{
    ClientConfig, ConnectionSettings, Overrides, Secret, SettingsError, TlsSettings, Topology,
};
