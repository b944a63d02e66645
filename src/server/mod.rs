//! `feast-redis-rs serve`: Feast's HTTP feature server contract answered in Rust. The
//! catalog of served views comes from Python (built from Feast's registry); requests
//! are parsed, read from Redis and answered as JSON without Python, and whatever this
//! server does not answer itself goes to Feast's own app through a `Fallback`.

mod access;
mod admission;
mod budget;
mod connection;
mod grpc;
mod http;
mod json;
mod log;
mod memo;
mod metrics;
mod online;
mod precomputed;
mod push;
mod transform;

pub use access::{Asked, Decide};
pub use connection::Timeouts;
pub use http::{
    Fallback, FallbackLimits, FallbackReply, FallbackRequest, FallbackResponse, MetricsExposure, Server,
    ServerError, ServerOptions,
};
pub use online::{AnswerShape, Catalog, RequestLimits, ServedOnDemandView, ServedProjection, ServedView};
pub use precomputed::ServedPrecomputed;
pub use push::WritableView;
pub use transform::{ReadResponse, Rows, Transform};
