//! The Rust core of feast-redis-rs. Layers, from the bottom: `encoding` (Feast's Redis
//! format), `redis` (connection settings and the client), `store` (Feast's online-store
//! operations as Redis commands), `server` (Feast's HTTP feature server contract) and,
//! with the `python` feature, `python` (the `_native` extension module).

pub mod columns;
pub mod encoding;
pub mod redis;
pub mod server;
pub mod store;

#[cfg(feature = "python")]
mod python;
