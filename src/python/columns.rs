//! `ColumnarAnswer`: the Arrow columns of a `get_online_features` answer, kept in
//! Rust. Python asks for them as lists (`to_dict`, built here value by value at native
//! speed, with the Python types Feast's own conversion gives) or as a pyarrow record
//! batch shared zero-copy through the Arrow PyCapsule interface.

use std::sync::{Arc, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type, TimestampSecondType};
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow_schema::{DataType, Field, Schema};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList};
use pyo3_arrow::PyRecordBatch;

use crate::store::ColumnarResponse;

#[pyclass(frozen, module = "feast_redis_rs._native")]
pub struct ColumnarAnswer {
    /// Every view's feature columns, then each view's event seconds.
    columns: Vec<ArrayRef>,
    /// How many of `columns` are features.
    features: usize,
    rows: usize,
    response: ColumnarResponse,
    vectors: OnceLock<Vec<u8>>,
}

impl ColumnarAnswer {
    pub fn new(mut response: ColumnarResponse) -> Self {
        let rows = response.event_seconds.first().map_or(0, |c| c.len());
        let features = response.columns.len();
        let columns = std::mem::take(&mut response.columns)
            .into_iter()
            .chain(std::mem::take(&mut response.event_seconds))
            .collect();
        Self {
            columns,
            features,
            rows,
            response,
            vectors: OnceLock::new(),
        }
    }
}

/// `datetime.fromtimestamp(seconds, tz=timezone.utc)`: what Feast returns for a unix
/// timestamp.
pub(crate) fn datetime_of<'py>(py: Python<'py>, seconds: i64) -> PyResult<Bound<'py, PyAny>> {
    static FROM_TIMESTAMP: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();
    let (from_timestamp, utc) = FROM_TIMESTAMP.get_or_try_init(py, || -> PyResult<_> {
        let datetime = py.import("datetime")?;
        Ok((
            datetime.getattr("datetime")?.getattr("fromtimestamp")?.unbind(),
            datetime.getattr("timezone")?.getattr("utc")?.unbind(),
        ))
    })?;
    from_timestamp.bind(py).call1((seconds, utc.bind(py)))
}

/// The Python value of each entry of `array` (None for nulls).
fn to_pylist<'py>(py: Python<'py>, array: &dyn Array) -> PyResult<Bound<'py, PyList>> {
    let len = array.len();
    macro_rules! each {
        ($convert:expr) => {{
            let convert = $convert;
            let nulls = array.nulls();
            let mut items: Vec<Bound<'py, PyAny>> = Vec::with_capacity(len);
            for i in 0..len {
                items.push(match nulls {
                    Some(nulls) if nulls.is_null(i) => py.None().into_bound(py),
                    _ => convert(i)?,
                });
            }
            PyList::new(py, items)
        }};
    }
    match array.data_type() {
        DataType::Int32 => {
            let a = array.as_primitive::<Int32Type>();
            each!(|i| a.value(i).into_pyobject(py).map(|v| v.into_any()))
        }
        DataType::Int64 => {
            let a = array.as_primitive::<Int64Type>();
            each!(|i| a.value(i).into_pyobject(py).map(|v| v.into_any()))
        }
        DataType::Float32 => {
            let a = array.as_primitive::<Float32Type>();
            each!(|i| f64::from(a.value(i)).into_pyobject(py).map(|v| v.into_any()))
        }
        DataType::Float64 => {
            let a = array.as_primitive::<Float64Type>();
            each!(|i| a.value(i).into_pyobject(py).map(|v| v.into_any()))
        }
        DataType::Boolean => {
            let a = array.as_boolean();
            each!(|i| Ok::<_, PyErr>(a.value(i).into_pyobject(py)?.to_owned().into_any()))
        }
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            each!(|i| a.value(i).into_pyobject(py).map(|v| v.into_any()))
        }
        DataType::Binary => {
            let a = array.as_binary::<i32>();
            each!(|i| Ok::<_, PyErr>(PyBytes::new(py, a.value(i)).into_any()))
        }
        DataType::Timestamp(_, _) => {
            let a = array.as_primitive::<TimestampSecondType>();
            each!(|i| datetime_of(py, a.value(i)))
        }
        DataType::List(_) => {
            let a = array.as_list::<i32>();
            each!(|i| to_pylist(py, a.value(i).as_ref()).map(|v| v.into_any()))
        }
        other => Err(PyTypeError::new_err(format!(
            "no Python conversion for Arrow type {other}"
        ))),
    }
}

#[pymethods]
impl ColumnarAnswer {
    /// Every feature column as a Python list, then, `with_event_seconds`, each view's
    /// event seconds.
    fn columns<'py>(&self, py: Python<'py>, with_event_seconds: bool) -> PyResult<Vec<Bound<'py, PyList>>> {
        let count = match with_event_seconds {
            true => self.columns.len(),
            false => self.features,
        };
        self.columns[..count]
            .iter()
            .map(|c| to_pylist(py, c.as_ref()))
            .collect()
    }

    /// The columns as a pyarrow record batch, shared without copying; columns are
    /// named by position.
    fn record_batch<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(i.to_string(), c.data_type().clone(), true))
            .collect();
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            self.columns.clone(),
            &RecordBatchOptions::new().with_row_count(Some(self.rows)),
        )
        .map_err(|err| PyRuntimeError::new_err(err.to_string()))?;
        PyRecordBatch::new(batch).into_pyarrow(py)
    }

    /// The serialized feature vectors (response field 2) for the response proto,
    /// built from the replies on first use.
    fn feature_vectors<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let vectors = match self.vectors.get() {
            Some(vectors) => vectors,
            None => {
                let built = self.response.feature_vectors()?;
                self.vectors.get_or_init(|| built)
            }
        };
        Ok(PyBytes::new(py, vectors))
    }

    #[getter]
    fn num_rows(&self) -> usize {
        self.rows
    }
}
