//! `RedisStoreClient`: the store operations of `crate::store` for the Python adapter.
//! Rows and entity columns arrive as serialized protos and bytes; nothing here walks
//! Python objects value by value beyond extracting the arguments.

use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::{PyConnectionError, PyRuntimeError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyList, PyString, PyTuple};

use super::columns::ColumnarAnswer;
use super::runtime::block_on;
use crate::columns::FeatureType;
use crate::encoding::{self, feature_field, timestamp_field, EntityKeyLayout, KeySerializationVersion};
use crate::redis::{
    ClientError, ConnectionSettings, RedisClient, RetryPolicy, SettingsError, Timeouts, Topology,
};
use crate::store::{
    self, ArrowRows, ColumnarView, HashRead, NativeColumn, ProtoRow, StoreError, ViewRequest, WriteOptions,
};
use pyo3_arrow::PyRecordBatch;

/// A row of `write`: entity key proto, feature names, value protos, event time in µs.
type PyWriteRow = (Vec<u8>, Vec<String>, Vec<Vec<u8>>, i64);
/// A group of `hmget_count`: Redis keys, and the hash fields to read from each.
type KeysAndFields = (Vec<Vec<u8>>, Vec<Vec<u8>>);
/// A view of `read_response`: name, features, join keys, join-key columns.
type PyViewRead = (String, Vec<String>, Vec<String>, Vec<Vec<u8>>);
/// A view of `read_columns`: name, features, their ValueType names, join keys, the
/// join keys' ValueType names, and their values as Python lists.
type PyColumnarView<'py> = (
    String,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<String>,
    Vec<Bound<'py, PyList>>,
);

/// The values of a join key when every one is a plain Python value of its type;
/// `None` sends the request down Feast's own conversion.
fn native_column(value_type: &str, values: &Bound<'_, PyList>) -> PyResult<Option<NativeColumn>> {
    macro_rules! exact {
        ($py_type:ty, $rust_type:ty, $variant:ident) => {{
            let mut out = Vec::with_capacity(values.len());
            for item in values.iter() {
                if !item.is_exact_instance_of::<$py_type>() {
                    return Ok(None);
                }
                out.push(item.extract::<$rust_type>()?);
            }
            NativeColumn::$variant(out)
        }};
    }
    Ok(Some(match value_type {
        "INT64" => exact!(PyInt, i64, Int64),
        "INT32" => exact!(PyInt, i32, Int32),
        "STRING" => exact!(PyString, String, String),
        "BYTES" => exact!(PyBytes, Vec<u8>, Bytes),
        _ => return Ok(None),
    }))
}

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

impl From<ClientError> for PyErr {
    fn from(err: ClientError) -> PyErr {
        let message = err.to_string();
        match err {
            ClientError::Timeout { .. } => PyTimeoutError::new_err(message),
            ClientError::Server { .. } | ClientError::Protocol { .. } => PyRuntimeError::new_err(message),
            ClientError::TlsConfig { .. } => PyValueError::new_err(message),
            _ => PyConnectionError::new_err(message),
        }
    }
}

impl From<StoreError> for PyErr {
    fn from(err: StoreError) -> PyErr {
        match err {
            StoreError::Client(err) => err.into(),
            StoreError::UnexpectedReply { .. } => PyRuntimeError::new_err(err.to_string()),
            other => PyValueError::new_err(other.to_string()),
        }
    }
}

impl From<SettingsError> for PyErr {
    fn from(err: SettingsError) -> PyErr {
        PyValueError::new_err(err.to_string())
    }
}

fn topology(redis_type: &str, sentinel_master: &str) -> PyResult<Topology> {
    match redis_type {
        "redis" => Ok(Topology::Standalone),
        "redis_cluster" => Ok(Topology::Cluster),
        "redis_sentinel" => Ok(Topology::Sentinel {
            master_name: sentinel_master.to_owned(),
        }),
        other => Err(PyValueError::new_err(format!(
            "redis_type '{other}' is not one of redis, redis_cluster, redis_sentinel"
        ))),
    }
}

fn seconds(name: &str, value: Option<f64>) -> PyResult<Option<Duration>> {
    value
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    PyValueError::new_err(format!("{name} must be a number of seconds greater than 0"))
                })
        })
        .transpose()
}

/// Checks a connection string the way the client will read it (for config validation).
#[pyfunction]
#[pyo3(signature = (connection_string, redis_type = "redis", sentinel_master = "mymaster"))]
fn check_connection_string(connection_string: &str, redis_type: &str, sentinel_master: &str) -> PyResult<()> {
    ConnectionSettings::parse(connection_string, topology(redis_type, sentinel_master)?)?;
    Ok(())
}

fn version(number: i64) -> PyResult<KeySerializationVersion> {
    Ok(KeySerializationVersion::from_config(number)?)
}

#[pyclass(frozen, module = "feast_redis_rs._native")]
pub struct RedisStoreClient {
    client: Arc<RedisClient>,
    description: String,
}

#[pymethods]
impl RedisStoreClient {
    #[new]
    #[pyo3(signature = (
        connection_string,
        redis_type = "redis",
        sentinel_master = "mymaster",
        *,
        connect_timeout = None,
        command_timeout = None,
        retries = 3,
        retry_backoff = 0.05,
        tls_ca_file = None,
        tls_cert_file = None,
        tls_key_file = None,
        tls_check_hostname = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        connection_string: &str,
        redis_type: &str,
        sentinel_master: &str,
        connect_timeout: Option<f64>,
        command_timeout: Option<f64>,
        retries: u32,
        retry_backoff: f64,
        tls_ca_file: Option<String>,
        tls_cert_file: Option<String>,
        tls_key_file: Option<String>,
        tls_check_hostname: Option<bool>,
    ) -> PyResult<Self> {
        let mut settings =
            ConnectionSettings::parse(connection_string, topology(redis_type, sentinel_master)?)?;
        let tls_given = [
            ("tls_ca_file", tls_ca_file.is_some()),
            ("tls_cert_file", tls_cert_file.is_some()),
            ("tls_key_file", tls_key_file.is_some()),
            ("tls_check_hostname", tls_check_hostname.is_some()),
        ];
        match settings.tls.as_mut() {
            Some(tls) => {
                if let Some(path) = tls_ca_file {
                    tls.ca_file = Some(path.into());
                }
                if let Some(path) = tls_cert_file {
                    tls.client_cert_file = Some(path.into());
                }
                if let Some(path) = tls_key_file {
                    tls.client_key_file = Some(path.into());
                }
                if let Some(check) = tls_check_hostname {
                    tls.check_hostname = check;
                }
            }
            None => {
                if let Some((name, _)) = tls_given.iter().find(|(_, given)| *given) {
                    return Err(PyValueError::new_err(format!(
                        "{name} is set but TLS is off: add ssl=true to connection_string"
                    )));
                }
            }
        }
        let timeouts = Timeouts {
            connect: seconds("connect_timeout_seconds", connect_timeout)?
                .or(settings.connect_timeout)
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            command: seconds("command_timeout_seconds", command_timeout)?
                .or(settings.command_timeout)
                .unwrap_or(DEFAULT_COMMAND_TIMEOUT),
        };
        let backoff = seconds("retry_backoff_seconds", Some(retry_backoff))?.unwrap_or_default();
        let description = format!(
            "{redis_type} at {}",
            settings
                .nodes
                .iter()
                .map(|(host, port)| format!("{host}:{port}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let client = RedisClient::new(&settings, timeouts, RetryPolicy { retries, backoff })?;
        Ok(Self {
            client: Arc::new(client),
            description,
        })
    }

    fn __repr__(&self) -> String {
        format!("RedisStoreClient({})", self.description)
    }

    /// Writes rows `(entity_key_proto, feature_names, value_protos, event_time_micros)`;
    /// returns `(written, skipped)`.
    #[pyo3(signature = (project, view, entity_key_serialization_version, rows, key_ttl_seconds, skip_dedup))]
    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        py: Python<'_>,
        project: &str,
        view: &str,
        entity_key_serialization_version: i64,
        rows: Vec<PyWriteRow>,
        key_ttl_seconds: Option<i64>,
        skip_dedup: bool,
    ) -> PyResult<(usize, usize)> {
        let version = version(entity_key_serialization_version)?;
        let rows: Vec<ProtoRow> = rows.into_iter().map(ProtoRow::from).collect();
        let options = WriteOptions::new(view, key_ttl_seconds, skip_dedup);
        let client = &self.client;
        let summary = block_on(py, async {
            let rows = store::rows_from_protos(project, version, view, rows)?;
            store::write_rows(client, &rows, &options).await
        })??;
        Ok((summary.written, summary.skipped))
    }

    /// Writes an Arrow record batch of a feature view (join-key columns, feature
    /// columns, event-time column) with `write`'s semantics; returns `(written,
    /// skipped)`, or `None` when a column's Arrow type is not one this path maps for its
    /// dtype, so the caller converts the batch the way Feast does instead.
    #[pyo3(signature = (project, view, entity_key_serialization_version, batch, join_keys, features, timestamp_field, key_ttl_seconds, skip_dedup))]
    #[allow(clippy::too_many_arguments)]
    fn write_arrow(
        &self,
        py: Python<'_>,
        project: &str,
        view: &str,
        entity_key_serialization_version: i64,
        batch: PyRecordBatch,
        join_keys: Vec<(String, String)>,
        features: Vec<(String, String)>,
        timestamp_field: &str,
        key_ttl_seconds: Option<i64>,
        skip_dedup: bool,
    ) -> PyResult<Option<(usize, usize)>> {
        let version = version(entity_key_serialization_version)?;
        let batch = batch.into_inner();
        let column = |name: &str| {
            batch.column_by_name(name).cloned().ok_or_else(|| {
                PyValueError::new_err(format!("the batch has no column '{name}' of view '{view}'"))
            })
        };
        let mut feature_columns = Vec::with_capacity(features.len());
        for (name, value_type) in features {
            let Some(ty) = FeatureType::from_value_type(&value_type) else {
                return Ok(None);
            };
            let values = column(&name)?;
            feature_columns.push((name, ty, values));
        }
        let join_key_columns = join_keys
            .iter()
            .map(|(name, value_type)| Ok((name.clone(), value_type.as_str(), column(name)?)))
            .collect::<PyResult<Vec<_>>>()?;
        let rows = ArrowRows {
            join_keys: join_key_columns,
            features: feature_columns,
            event_times: column(timestamp_field)?,
        };
        let options = WriteOptions::new(view, key_ttl_seconds, skip_dedup);
        let client = &self.client;
        let summary = block_on(py, async {
            match store::rows_from_arrow(project, version, view, &rows)? {
                Some(rows) => store::write_rows(client, &rows, &options).await.map(Some),
                None => Ok(None),
            }
        })??;
        Ok(summary.map(|s| (s.written, s.skipped)))
    }

    /// `online_read`: for each entity key proto, `(None | (seconds, nanos), [value
    /// bytes or None per feature])`.
    fn read<'py>(
        &self,
        py: Python<'py>,
        project: &str,
        view: &str,
        entity_key_serialization_version: i64,
        features: Vec<String>,
        entity_keys: Vec<Vec<u8>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let version = version(entity_key_serialization_version)?;
        let keys = entity_keys
            .iter()
            .map(|proto| {
                let entity_key = encoding::decode_entity_key_proto(proto)?;
                encoding::redis_key(project, &entity_key, version)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut fields: Vec<Vec<u8>> = features.iter().map(|f| feature_field(view, f).to_vec()).collect();
        fields.push(timestamp_field(view));
        let read = HashRead {
            fields: &fields,
            keys: &keys,
        };
        let client = &self.client;
        let hashes = block_on(py, store::read_hashes(client, &[read]))??
            .pop()
            .unwrap_or_default();
        let rows = PyList::empty(py);
        for (key, mut hash) in keys.iter().zip(hashes) {
            let stored_ts = hash.pop().flatten();
            let ts = match stored_ts {
                Some(bytes) => {
                    let ts =
                        encoding::decode_timestamp(&bytes).map_err(|err| StoreError::CorruptTimestamp {
                            view: view.to_owned(),
                            key: format!("b\"{}\"", key.escape_ascii()),
                            reason: err.to_string(),
                        })?;
                    (ts.seconds, ts.nanos).into_pyobject(py)?.into_any()
                }
                None => py.None().into_bound(py),
            };
            let values = PyList::new(py, hash.iter().map(|v| v.as_deref().map(|b| PyBytes::new(py, b))))?;
            rows.append(PyTuple::new(py, [ts, values.into_any()])?)?;
        }
        Ok(rows)
    }

    /// The serialized `FeatureVector`s (response field 2) of a whole
    /// `get_online_features` request: `views` holds, per feature view,
    /// `(view_name, features, join_keys, join_key_columns)`, each column a serialized
    /// `feast.types.RepeatedValue` of the request rows' values.
    fn read_response<'py>(
        &self,
        py: Python<'py>,
        project: &str,
        entity_key_serialization_version: i64,
        views: Vec<PyViewRead>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let version = version(entity_key_serialization_version)?;
        let views: Vec<ViewRequest> = views.into_iter().map(ViewRequest::from).collect();
        let client = &self.client;
        let out = block_on(py, store::read_response(client, project, version, &views))??;
        Ok(PyBytes::new(py, &out))
    }

    /// `get_online_features` as Arrow columns: `None` when the request needs Feast's
    /// proto path (a dtype or entity value this path does not map).
    fn read_columns<'py>(
        &self,
        py: Python<'py>,
        project: &str,
        entity_key_serialization_version: i64,
        views: Vec<PyColumnarView<'py>>,
    ) -> PyResult<Option<ColumnarAnswer>> {
        let version = version(entity_key_serialization_version)?;
        let mut requests = Vec::with_capacity(views.len());
        for (view, features, types, join_keys, entity_types, values) in views {
            let Some(types) = types
                .iter()
                .map(|t| FeatureType::from_value_type(t))
                .collect::<Option<Vec<_>>>()
            else {
                return Ok(None);
            };
            let mut columns = Vec::with_capacity(values.len());
            for (entity_type, column) in entity_types.iter().zip(&values) {
                match native_column(entity_type, column)? {
                    Some(column) => columns.push(column),
                    None => return Ok(None),
                }
            }
            requests.push(ColumnarView {
                view,
                features,
                types,
                join_keys,
                columns,
            });
        }
        let client = &self.client;
        let Some(response) = block_on(py, store::read_columnar(client, project, version, &requests))?? else {
            return Ok(None);
        };
        Ok(Some(ColumnarAnswer::new(response)))
    }

    /// The floor `make bench` compares with: for each `(keys, fields)` group, one HMGET
    /// of `fields` per key, all in one batch, nothing decoded. Returns how many fields
    /// were found.
    fn hmget_count(&self, py: Python<'_>, reads: Vec<KeysAndFields>) -> PyResult<usize> {
        let client = &self.client;
        let hashes = block_on(py, async {
            let reads: Vec<HashRead<'_>> = reads
                .iter()
                .map(|(keys, fields)| HashRead { fields, keys })
                .collect();
            store::read_hashes(client, &reads).await
        })??;
        Ok(hashes.iter().flatten().flatten().filter(|v| v.is_some()).count())
    }

    /// Removes a view's fields from every entity hash of its join keys (the whole
    /// hash when it holds only this view). Returns how many hashes held the view.
    fn delete_table(
        &self,
        py: Python<'_>,
        project: &str,
        entity_key_serialization_version: i64,
        join_keys: Vec<String>,
        view: &str,
        features: Vec<String>,
    ) -> PyResult<usize> {
        let layout = EntityKeyLayout::new(&join_keys, version(entity_key_serialization_version)?)?;
        let pattern = store::scan_pattern(layout.prefix(), project);
        let mut fields: Vec<Vec<u8>> = features.iter().map(|f| feature_field(view, f).to_vec()).collect();
        let ts_field = timestamp_field(view);
        fields.push(ts_field.clone());
        let client = &self.client;
        Ok(block_on(
            py,
            store::delete_table(client, &pattern, &ts_field, &fields),
        )??)
    }

    /// Every key matching the glob `match` on every master, like redis-py's
    /// `scan_iter` (Feast's `precompute_feature_service` scans entities with it).
    fn scan_iter<'py>(&self, py: Python<'py>, r#match: Vec<u8>) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let client = &self.client;
        let keys = block_on(py, client.scan(&r#match))??;
        Ok(keys.iter().map(|k| PyBytes::new(py, k)).collect())
    }

    /// Deletes every hash of entities with these join keys. Returns how many.
    fn delete_entity_values(
        &self,
        py: Python<'_>,
        project: &str,
        entity_key_serialization_version: i64,
        join_keys: Vec<String>,
    ) -> PyResult<usize> {
        let layout = EntityKeyLayout::new(&join_keys, version(entity_key_serialization_version)?)?;
        let pattern = store::scan_pattern(layout.prefix(), project);
        let client = &self.client;
        Ok(block_on(py, store::delete_entity_values(client, &pattern))??)
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RedisStoreClient>()?;
    m.add_function(wrap_pyfunction!(check_connection_string, m)?)?;
    Ok(())
}
