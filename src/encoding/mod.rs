//! Feast's Redis storage format, byte for byte: entity keys, Redis keys, hash field
//! names and the protobuf values stored in them. Pure functions: no I/O, no Python.

mod entity_key;
mod error;
mod field;
pub mod proto;

pub use entity_key::{
    deserialize_entity_key, redis_key, serialize_entity_key, EntityKeyLayout, EntityValue,
    KeySerializationVersion,
};
pub use error::EncodingError;
pub use field::{feature_field, mmh3_field, timestamp_field};
pub use proto::{EntityKey, Timestamp, Value};

use prost::Message;

fn decode<M: Message + Default>(bytes: &[u8], message: &'static str) -> Result<M, EncodingError> {
    M::decode(bytes).map_err(|err| EncodingError::InvalidProto {
        message,
        reason: err.to_string(),
    })
}

/// Parses a serialized `feast.types.Value`, as stored in a feature's hash field.
pub fn decode_value(bytes: &[u8]) -> Result<Value, EncodingError> {
    decode(bytes, "feast.types.Value")
}

/// Parses a serialized `google.protobuf.Timestamp`, as stored in a `_ts:{view}` field.
pub fn decode_timestamp(bytes: &[u8]) -> Result<Timestamp, EncodingError> {
    decode(bytes, "google.protobuf.Timestamp")
}

/// Parses a serialized `feast.types.EntityKey` proto (not Feast's Redis key format).
pub fn decode_entity_key_proto(bytes: &[u8]) -> Result<EntityKey, EncodingError> {
    decode(bytes, "feast.types.EntityKey")
}

#[cfg(test)]
mod tests;
