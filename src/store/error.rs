use thiserror::Error;

use crate::encoding::EncodingError;
use crate::redis::ClientError;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error(transparent)]
    Client(#[from] ClientError),

    #[error(transparent)]
    Encoding(#[from] EncodingError),

    #[error("feature '{feature}' of view '{view}' holds bytes that are not a feast.types.Value for Redis key {key}: {reason}")]
    CorruptValue {
        view: String,
        feature: String,
        key: String,
        reason: String,
    },

    #[error(
        "field _ts:{view} holds bytes that are not a google.protobuf.Timestamp for Redis key {key}: {reason}"
    )]
    CorruptTimestamp {
        view: String,
        key: String,
        reason: String,
    },

    #[error("{redis} answered {command} with {reply}, not what Redis sends for it")]
    UnexpectedReply {
        /// The deployment, as `RedisClient::description` names it.
        redis: String,
        command: &'static str,
        reply: String,
    },

    #[error("{0}")]
    InvalidRequest(String),
}

/// A Redis key as printable text for error messages (keys are binary).
pub fn printable_key(key: &[u8]) -> String {
    format!("b\"{}\"", key.escape_ascii())
}
