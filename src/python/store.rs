//! `RedisStoreClient`: the operations of `crate::store` for the Python adapter. The
//! client is built from the store's config; every call takes a `ViewPlan` and data
//! (serialized protos, bytes, plain values, an Arrow batch) and only converts them.

use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::import_exception;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyList, PyString, PyTuple};
use pyo3_arrow::PyRecordBatch;

use super::columns::ColumnarAnswer;
use super::plan::ViewPlan;
use super::runtime::block_on;
use crate::redis::{self, ClientError, Overrides, RedisClient, RetryPolicy};
use crate::store::{self, ColumnarView, EntityType, NativeColumn, ProtoRow, StoreError, WriteSummary};

// Each both the built-in exception and redis-py's (see errors.py).
import_exception!(feast_redis_rs.errors, RedisConnectionError);
import_exception!(feast_redis_rs.errors, RedisTimeoutError);
import_exception!(feast_redis_rs.errors, RedisAuthenticationError);
import_exception!(feast_redis_rs.errors, RedisResponseError);
import_exception!(feast_redis_rs.errors, RedisProtocolError);

impl From<ClientError> for PyErr {
    fn from(err: ClientError) -> PyErr {
        let message = err.to_string();
        match err {
            ClientError::Timeout { .. } => RedisTimeoutError::new_err(message),
            ClientError::Auth { .. } => RedisAuthenticationError::new_err(message),
            ClientError::Server { .. } | ClientError::TrackingRefused { .. } => {
                RedisResponseError::new_err(message)
            }
            ClientError::Protocol { .. } => RedisProtocolError::new_err(message),
            ClientError::TlsConfig { .. } | ClientError::Settings(_) => PyValueError::new_err(message),
            _ => RedisConnectionError::new_err(message),
        }
    }
}

impl From<StoreError> for PyErr {
    fn from(err: StoreError) -> PyErr {
        match err {
            StoreError::Client(err) => err.into(),
            StoreError::UnexpectedReply { .. } => RedisProtocolError::new_err(err.to_string()),
            other => PyValueError::new_err(other.to_string()),
        }
    }
}

/// The attributes of `RedisOnlineStoreConfig` that shape the client.
#[derive(FromPyObject)]
struct PyClientConfig {
    #[pyo3(attribute)]
    connection_string: String,
    #[pyo3(attribute)]
    redis_type: String,
    #[pyo3(attribute)]
    sentinel_master: String,
    #[pyo3(attribute)]
    connect_timeout_seconds: Option<f64>,
    #[pyo3(attribute)]
    command_timeout_seconds: Option<f64>,
    #[pyo3(attribute)]
    retries: u32,
    #[pyo3(attribute)]
    retry_backoff_seconds: f64,
    #[pyo3(attribute)]
    tls_ca_file: Option<String>,
    #[pyo3(attribute)]
    tls_cert_file: Option<String>,
    #[pyo3(attribute)]
    tls_key_file: Option<String>,
    #[pyo3(attribute)]
    tls_check_hostname: Option<bool>,
    #[pyo3(attribute)]
    spin_wait: bool,
    #[pyo3(attribute)]
    near_cache: Option<PyNearCacheConfig>,
    #[pyo3(attribute)]
    auto_pipelining: bool,
}

/// The attributes of `NearCacheConfig` that shape the cache (its `feature_views` shape
/// the plans).
#[derive(FromPyObject)]
struct PyNearCacheConfig {
    #[pyo3(attribute)]
    max_entries: Option<usize>,
    #[pyo3(attribute)]
    max_bytes: usize,
    #[pyo3(attribute)]
    max_staleness_seconds: f64,
    #[pyo3(attribute)]
    invalidation: String,
}

impl PyNearCacheConfig {
    fn convert(self) -> PyResult<redis::NearCacheConfig> {
        let invalidation = match self.invalidation.as_str() {
            "tracking" => redis::Invalidation::Tracking,
            "ttl_only" => redis::Invalidation::TtlOnly,
            other => {
                return Err(PyValueError::new_err(format!(
                    "near_cache.invalidation is '{other}'; give tracking or ttl_only"
                )))
            }
        };
        Ok(redis::NearCacheConfig {
            max_entries: self.max_entries,
            max_bytes: self.max_bytes,
            max_staleness: seconds("near_cache.max_staleness_seconds", self.max_staleness_seconds)?,
            invalidation,
        })
    }
}

fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| PyValueError::new_err(format!("{name} must be a number of seconds greater than 0")))
}

impl PyClientConfig {
    fn convert(self) -> PyResult<redis::ClientConfig> {
        let optional = |name, value: Option<f64>| value.map(|v| seconds(name, v)).transpose();
        Ok(redis::ClientConfig {
            overrides: Overrides {
                connect_timeout: optional("connect_timeout_seconds", self.connect_timeout_seconds)?,
                command_timeout: optional("command_timeout_seconds", self.command_timeout_seconds)?,
                tls_ca_file: self.tls_ca_file.map(Into::into),
                tls_cert_file: self.tls_cert_file.map(Into::into),
                tls_key_file: self.tls_key_file.map(Into::into),
                tls_check_hostname: self.tls_check_hostname,
            },
            retry: RetryPolicy {
                retries: self.retries,
                backoff: seconds("retry_backoff_seconds", self.retry_backoff_seconds)?,
            },
            near_cache: self.near_cache.map(PyNearCacheConfig::convert).transpose()?,
            auto_pipelining: self.auto_pipelining,
            connection_string: self.connection_string,
            redis_type: self.redis_type,
            sentinel_master: self.sentinel_master,
        })
    }
}

/// Checks a store config the way the client will read it (for config validation).
#[pyfunction]
fn check_config(config: PyClientConfig) -> PyResult<()> {
    config.convert()?.settings().map_err(ClientError::from)?;
    Ok(())
}

/// A row of `online_write_batch`: `(entity_key_proto, feature_names, value_protos,
/// event_time_micros)`.
#[derive(FromPyObject)]
struct PyProtoRow(Vec<u8>, Vec<String>, Vec<Vec<u8>>, i64);

fn summary(summary: WriteSummary) -> (usize, usize) {
    (summary.written, summary.skipped)
}

/// A join key's request values when every one is a plain Python value of its declared
/// type; `None` sends the request down Feast's own conversion. A value out of its type's
/// range (`2**63` for INT64) is a `ValueError` naming the join key and the row.
fn native_column(
    join_key: &str,
    entity_type: EntityType,
    values: &Bound<'_, PyList>,
) -> PyResult<Option<NativeColumn>> {
    macro_rules! exact {
        ($py_type:ty, $rust_type:ty, $variant:ident) => {{
            let mut out = Vec::with_capacity(values.len());
            for (row, item) in values.iter().enumerate() {
                if !item.is_exact_instance_of::<$py_type>() {
                    return Ok(None);
                }
                out.push(item.extract::<$rust_type>().map_err(|err| {
                    PyValueError::new_err(format!(
                        "join key '{join_key}', entity row {row}: {item} does not fit {:?}: {err}",
                        entity_type
                    ))
                })?);
            }
            NativeColumn::$variant(out)
        }};
    }
    Ok(Some(match entity_type {
        EntityType::Int64 => exact!(PyInt, i64, Int64),
        EntityType::Int32 => exact!(PyInt, i32, Int32),
        EntityType::String => exact!(PyString, String, String),
        EntityType::Bytes => exact!(PyBytes, Vec<u8>, Bytes),
        EntityType::Other => return Ok(None),
    }))
}

#[pyclass(frozen, module = "feast_redis_rs._native")]
pub struct RedisStoreClient {
    client: Arc<RedisClient>,
    /// Whether a calling thread may wait for replies by spinning (`redis::spin_wait`).
    spin_wait: bool,
}

impl RedisStoreClient {
    pub(super) fn client(&self) -> &RedisClient {
        &self.client
    }

    pub(super) fn shared(&self) -> Arc<RedisClient> {
        Arc::clone(&self.client)
    }
}

#[pymethods]
impl RedisStoreClient {
    /// Builds the client of a `RedisOnlineStoreConfig`; it connects on first use.
    #[new]
    fn new(config: PyClientConfig) -> PyResult<Self> {
        let spin_wait = config.spin_wait;
        let client = RedisClient::from_config(&config.convert()?)?;
        Ok(Self {
            client: Arc::new(client),
            spin_wait,
        })
    }

    fn __repr__(&self) -> String {
        format!("RedisStoreClient({})", self.client.description())
    }

    /// Starts the near cache's invalidation listeners and checks that every master
    /// accepts `CLIENT TRACKING`; nothing to do without a near cache or with
    /// `invalidation: ttl_only`.
    fn start_near_cache(&self, py: Python<'_>) -> PyResult<()> {
        Ok(block_on(py, self.spin_wait, self.client.start_near_cache())??)
    }

    /// The near cache's counters (`hits`, `misses`, `evictions`, `invalidations`,
    /// `flushes`) and size (`entries`, `bytes`); `None` without a near cache.
    fn near_cache_stats(&self) -> Option<std::collections::HashMap<&'static str, u64>> {
        let stats = self.client.near_cache()?.stats();
        Some(
            [
                ("hits", stats.hits),
                ("misses", stats.misses),
                ("evictions", stats.evictions),
                ("invalidations", stats.invalidations),
                ("flushes", stats.flushes),
                ("entries", stats.entries),
                ("bytes", stats.bytes),
            ]
            .into(),
        )
    }

    /// What auto-pipelining shared: `pipelines` sent on connections shared by requests
    /// in flight together (threads, async tasks), and the `writes` that carried them.
    fn pipelining_stats(&self) -> std::collections::HashMap<&'static str, u64> {
        let (pipelines, writes) = self.client.pipelining();
        [("pipelines", pipelines), ("writes", writes)].into()
    }

    /// `online_write_batch`: rows `(entity_key_proto, feature_names, value_protos,
    /// event_time_micros)`; returns `(written, skipped)`.
    fn write(&self, py: Python<'_>, plan: &ViewPlan, rows: Vec<PyProtoRow>) -> PyResult<(usize, usize)> {
        let rows: Vec<ProtoRow> = rows
            .into_iter()
            .map(
                |PyProtoRow(entity_key, features, values, event_time_micros)| ProtoRow {
                    entity_key,
                    features,
                    values,
                    event_time_micros,
                },
            )
            .collect();
        let (client, plan) = (&self.client, &plan.0);
        Ok(summary(block_on(
            py,
            self.spin_wait,
            store::write_protos(client, plan, rows),
        )??))
    }

    /// Writes an Arrow record batch (the plan's join-key, feature and event-time
    /// columns) with `write`'s semantics; returns `(written, skipped)`, or `None` when a
    /// column's Arrow type is not one this path maps for its dtype.
    fn write_arrow(
        &self,
        py: Python<'_>,
        plan: &ViewPlan,
        batch: PyRecordBatch,
    ) -> PyResult<Option<(usize, usize)>> {
        let batch = batch.into_inner();
        let (client, plan) = (&self.client, &plan.0);
        Ok(block_on(py, self.spin_wait, store::write_arrow(client, plan, &batch))??.map(summary))
    }

    /// `online_read`: for each entity key proto, `(None | (seconds, nanos), [value
    /// bytes or None per planned feature])`.
    fn read<'py>(
        &self,
        py: Python<'py>,
        plan: &ViewPlan,
        entity_keys: Vec<Vec<u8>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let (client, plan) = (&self.client, &plan.0);
        let rows = block_on(py, self.spin_wait, store::read_rows(client, plan, &entity_keys))??;
        let out = PyList::empty(py);
        for row in rows {
            let ts = match row.event_time {
                Some(ts) => (ts.seconds, ts.nanos).into_pyobject(py)?.into_any(),
                None => py.None().into_bound(py),
            };
            let values = PyList::new(py, row.values.iter().map(|v| v.map(|b| PyBytes::new(py, b))))?;
            out.append(PyTuple::new(py, [ts, values.into_any()])?)?;
        }
        Ok(out)
    }

    /// The serialized `FeatureVector`s (response field 2) of a `get_online_features`
    /// request on Feast's proto path: `columns` holds, per plan, each join key's request
    /// values as a serialized `feast.types.RepeatedValue`.
    fn read_response<'py>(
        &self,
        py: Python<'py>,
        plans: Vec<PyRef<'py, ViewPlan>>,
        columns: Vec<Vec<Vec<u8>>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let plans: Vec<Arc<store::ViewPlan>> = plans.iter().map(|p| p.0.clone()).collect();
        let plan_refs: Vec<&store::ViewPlan> = plans.iter().map(Arc::as_ref).collect();
        let client = &self.client;
        let out = block_on(
            py,
            self.spin_wait,
            store::read_response(client, &plan_refs, &columns),
        )??;
        Ok(PyBytes::new(py, &out))
    }

    /// `get_online_features` as Arrow columns: `entity_columns` holds, per plan, each
    /// join key's request values as a list. `None` when the request needs Feast's proto
    /// path (a dtype or entity value this path does not map).
    fn read_columnar<'py>(
        &self,
        py: Python<'py>,
        plans: Vec<PyRef<'py, ViewPlan>>,
        entity_columns: Vec<Vec<Bound<'py, PyList>>>,
    ) -> PyResult<Option<ColumnarAnswer>> {
        let mut views = Vec::with_capacity(plans.len());
        for (plan, values) in plans.iter().zip(&entity_columns) {
            let mut columns = Vec::with_capacity(values.len());
            let join_keys = plan.0.join_keys.iter();
            for ((&entity_type, values), join_key) in plan.0.entity_types.iter().zip(values).zip(join_keys) {
                match native_column(join_key, entity_type, values)? {
                    Some(column) => columns.push(column),
                    None => return Ok(None),
                }
            }
            views.push(ColumnarView {
                plan: plan.0.clone(),
                columns,
            });
        }
        let client = &self.client;
        let response = block_on(py, self.spin_wait, store::read_columnar(client, views))??;
        Ok(response.map(ColumnarAnswer::new))
    }

    /// Removes the plan's view from every entity hash of its join keys (the whole hash
    /// when it holds only this view). Returns how many hashes held the view.
    fn delete(&self, py: Python<'_>, plan: &ViewPlan) -> PyResult<usize> {
        let (client, plan) = (&self.client, &plan.0);
        Ok(block_on(py, self.spin_wait, store::delete_view(client, plan))??)
    }

    /// Deletes every hash of entities with the plan's join keys. Returns how many.
    fn delete_entities(&self, py: Python<'_>, plan: &ViewPlan) -> PyResult<usize> {
        let (client, plan) = (&self.client, &plan.0);
        Ok(block_on(
            py,
            self.spin_wait,
            store::delete_entities(client, plan),
        )??)
    }

    /// Every key matching the glob `match` on every master, like redis-py's
    /// `scan_iter` (Feast's `precompute_feature_service` scans entities with it).
    fn scan_iter<'py>(&self, py: Python<'py>, r#match: Vec<u8>) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let client = &self.client;
        let keys = block_on(py, self.spin_wait, store::scan_keys(client, &r#match))??;
        Ok(keys.iter().map(|k| PyBytes::new(py, k)).collect())
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<RedisStoreClient>()?;
    m.add_class::<ViewPlan>()?;
    m.add_function(wrap_pyfunction!(check_config, m)?)?;
    Ok(())
}
