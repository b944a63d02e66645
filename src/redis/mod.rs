//! Talking to Redis: connection settings today; the clients for standalone, cluster
//! and sentinel deployments build on them. Knows nothing of Feast.

mod settings;

pub use settings::{ConnectionSettings, Secret, SettingsError, TlsSettings, Topology};
