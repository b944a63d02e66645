use thiserror::Error;

/// Every way encoding or decoding Feast's Redis format can fail. Messages name the
/// offending join key, type, version or byte offset so a caller can act on them.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum EncodingError {
    #[error(
        "entity_key_serialization_version {0} is not supported: use 3 (Feast's default) or 2 \
         (older Feast and the AWS guidance)"
    )]
    UnsupportedVersion(i64),

    #[error("entity key has {join_keys} join keys but {values} values; give one value per join key")]
    CountMismatch { join_keys: usize, values: usize },

    #[error("join key '{0}' appears more than once in the entity key")]
    DuplicateJoinKey(String),

    #[error(
        "join key '{join_key}' has a value of type {value_type}, which Feast cannot use in an \
         entity key (supported: int32_val, int64_val, string_val, bytes_val, unix_timestamp_val)"
    )]
    UnsupportedEntityValue {
        join_key: String,
        value_type: &'static str,
    },

    #[error("join key '{join_key}' has an empty Value (no type set); entity values cannot be null")]
    EmptyEntityValue { join_key: String },

    #[error(
        "join key '{join_key}' has int64 value {value}, which does not fit in the 4 bytes that \
         entity_key_serialization_version 1 writes; use version 3"
    )]
    Int64TooLargeForV1 { join_key: String, value: i64 },

    #[error(
        "entity keys of entity_key_serialization_version {0} cannot be deserialized: they do \
         not record how many join keys they hold (only version 3 keys can)"
    )]
    NotDeserializable(i64),

    #[error("serialized entity key is truncated: {what} needs {needed} bytes at offset {offset}, but the key has {len}")]
    Truncated {
        what: &'static str,
        needed: usize,
        offset: usize,
        len: usize,
    },

    #[error("serialized entity key has join key type {0} at offset {1}; only STRING (2) is valid")]
    BadJoinKeyType(u32, usize),

    #[error("serialized entity key has value type {0} at offset {1}, which is not an entity value type")]
    BadEntityValueType(u32, usize),

    #[error("serialized entity key has a {value_type} value of {len} bytes at offset {offset}; it must be {expected}")]
    BadEntityValueLength {
        value_type: &'static str,
        len: usize,
        offset: usize,
        expected: usize,
    },

    #[error("serialized entity key has invalid UTF-8 in the {what} at offset {offset}")]
    InvalidUtf8 { what: &'static str, offset: usize },

    #[error("invalid {message} bytes: {reason}")]
    InvalidProto { message: &'static str, reason: String },
}
