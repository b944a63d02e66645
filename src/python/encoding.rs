//! Python functions over `crate::encoding`. Entity keys cross the boundary as serialized
//! `feast.types.EntityKey` protos, so no Python object is walked value by value here.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::encoding::{self, EncodingError, EntityKeyLayout, KeySerializationVersion};
use prost::Message;

impl From<EncodingError> for PyErr {
    fn from(err: EncodingError) -> PyErr {
        PyValueError::new_err(err.to_string())
    }
}

fn version(number: i64) -> PyResult<KeySerializationVersion> {
    Ok(KeySerializationVersion::from_config(number)?)
}

#[pyfunction]
#[pyo3(signature = (entity_key_proto, entity_key_serialization_version = 3))]
fn serialize_entity_key<'py>(
    py: Python<'py>,
    entity_key_proto: &[u8],
    entity_key_serialization_version: i64,
) -> PyResult<Bound<'py, PyBytes>> {
    let entity_key = encoding::decode_entity_key_proto(entity_key_proto)?;
    let bytes = encoding::serialize_entity_key(&entity_key, version(entity_key_serialization_version)?)?;
    Ok(PyBytes::new(py, &bytes))
}

#[pyfunction]
#[pyo3(signature = (project, entity_key_proto, entity_key_serialization_version = 3))]
fn redis_key<'py>(
    py: Python<'py>,
    project: &str,
    entity_key_proto: &[u8],
    entity_key_serialization_version: i64,
) -> PyResult<Bound<'py, PyBytes>> {
    let entity_key = encoding::decode_entity_key_proto(entity_key_proto)?;
    let bytes = encoding::redis_key(project, &entity_key, version(entity_key_serialization_version)?)?;
    Ok(PyBytes::new(py, &bytes))
}

#[pyfunction]
#[pyo3(signature = (join_keys, entity_key_serialization_version = 3))]
fn entity_key_prefix<'py>(
    py: Python<'py>,
    join_keys: Vec<String>,
    entity_key_serialization_version: i64,
) -> PyResult<Bound<'py, PyBytes>> {
    let layout = EntityKeyLayout::new(&join_keys, version(entity_key_serialization_version)?)?;
    Ok(PyBytes::new(py, layout.prefix()))
}

#[pyfunction]
#[pyo3(signature = (serialized_entity_key, entity_key_serialization_version = 3))]
fn deserialize_entity_key<'py>(
    py: Python<'py>,
    serialized_entity_key: &[u8],
    entity_key_serialization_version: i64,
) -> PyResult<Bound<'py, PyBytes>> {
    let entity_key =
        encoding::deserialize_entity_key(serialized_entity_key, version(entity_key_serialization_version)?)?;
    Ok(PyBytes::new(py, &entity_key.encode_to_vec()))
}

#[pyfunction]
fn mmh3_field<'py>(py: Python<'py>, name: &str) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &encoding::mmh3_field(name))
}

#[pyfunction]
fn timestamp_field<'py>(py: Python<'py>, feature_view: &str) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &encoding::timestamp_field(feature_view))
}

#[pyfunction]
fn value_kind(value_bytes: &[u8]) -> PyResult<Option<&'static str>> {
    Ok(encoding::decode_value(value_bytes)?
        .val
        .map(|val| val.field_name()))
}

#[pyfunction]
fn canonical_value<'py>(py: Python<'py>, value_bytes: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(
        py,
        &encoding::decode_value(value_bytes)?.encode_to_vec(),
    ))
}

#[pyfunction]
fn decode_timestamp(timestamp_bytes: &[u8]) -> PyResult<(i64, i32)> {
    let ts = encoding::decode_timestamp(timestamp_bytes)?;
    Ok((ts.seconds, ts.nanos))
}

#[pyfunction]
fn encode_timestamp<'py>(py: Python<'py>, seconds: i64, nanos: i32) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &encoding::Timestamp { seconds, nanos }.encode_to_vec())
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(serialize_entity_key, m)?)?;
    m.add_function(wrap_pyfunction!(redis_key, m)?)?;
    m.add_function(wrap_pyfunction!(entity_key_prefix, m)?)?;
    m.add_function(wrap_pyfunction!(deserialize_entity_key, m)?)?;
    m.add_function(wrap_pyfunction!(mmh3_field, m)?)?;
    m.add_function(wrap_pyfunction!(timestamp_field, m)?)?;
    m.add_function(wrap_pyfunction!(value_kind, m)?)?;
    m.add_function(wrap_pyfunction!(canonical_value, m)?)?;
    m.add_function(wrap_pyfunction!(decode_timestamp, m)?)?;
    m.add_function(wrap_pyfunction!(encode_timestamp, m)?)?;
    Ok(())
}
