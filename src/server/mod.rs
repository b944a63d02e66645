//! `feast-redis-rs serve`: Feast's HTTP feature server contract answered in Rust. The
//! catalog of served views comes from Python (built from Feast's registry); requests
//! are parsed, read from Redis and answered as JSON without Python, and whatever this
//! server does not answer itself goes to Feast's own app through a `Fallback`.

mod http;
mod json;
mod metrics;
mod online;

pub use http::{Fallback, FallbackRequest, FallbackResponse, Server, ServerError, ServerOptions};
pub use online::{Catalog, ServedProjection, ServedView};
