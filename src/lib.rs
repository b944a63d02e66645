//! The Rust core of feast-redis-rs. Layers, from the bottom: `encoding` (Feast's Redis
//! format), `redis` (connection settings and clients) and, with the `python` feature,
//! `python` (the `_native` extension module).

pub mod encoding;
pub mod redis;

#[cfg(feature = "python")]
mod python;
