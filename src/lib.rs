//! The Rust core of feast-redis-rs. Layers, from the bottom: `encoding` (Feast's Redis
//! format) and, with the `python` feature, `python` (the `_native` extension module).

pub mod encoding;

#[cfg(feature = "python")]
mod python;
