//! `FeatureServer`: the native server of `crate::server` for `feast-redis-rs serve`.
//! Python hands it the catalog of served views (again at every registry refresh) and
//! a dispatcher into Feast's own app for the requests the server leaves to Feast.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};

use super::columns::datetime_of;
use super::plan::ViewPlan;
use super::store::RedisStoreClient;
use crate::columns::NULL_TIMESTAMP;
use crate::encoding::proto::Val;
use crate::encoding::Value;
use crate::server::{
    AnswerShape, Asked, Catalog, Decide, Fallback, FallbackLimits, FallbackReply, FallbackRequest,
    FallbackResponse, MetricsExposure, ReadResponse, RequestLimits, Rows, ServedOnDemandView,
    ServedPrecomputed, ServedProjection, ServedView, Server, ServerError, ServerOptions, Timeouts, Transform,
    WritableView,
};

impl From<ServerError> for PyErr {
    fn from(err: ServerError) -> PyErr {
        match err {
            ServerError::Tls(_) => PyValueError::new_err(err.to_string()),
            _ => PyOSError::new_err(err.to_string()),
        }
    }
}

/// The attributes of `feast_redis_rs.server.ServerOptions`.
#[derive(FromPyObject)]
struct PyServerOptions {
    #[pyo3(attribute)]
    host: String,
    #[pyo3(attribute)]
    port: u16,
    #[pyo3(attribute)]
    tls_cert_path: Option<PathBuf>,
    #[pyo3(attribute)]
    tls_key_path: Option<PathBuf>,
    #[pyo3(attribute)]
    access_log: bool,
    #[pyo3(attribute)]
    metrics: bool,
    #[pyo3(attribute)]
    metrics_host: String,
    #[pyo3(attribute)]
    metrics_port: Option<u16>,
    #[pyo3(attribute)]
    max_body_bytes: usize,
    #[pyo3(attribute)]
    max_entity_rows: usize,
    #[pyo3(attribute)]
    max_values_per_request: usize,
    #[pyo3(attribute)]
    max_buffered_mb: usize,
    #[pyo3(attribute)]
    max_concurrent_reads: usize,
    #[pyo3(attribute)]
    read_queue_timeout: f64,
    #[pyo3(attribute)]
    transform_queue_timeout: f64,
    #[pyo3(attribute)]
    workers: usize,
    #[pyo3(attribute)]
    worker_connections: usize,
    #[pyo3(attribute)]
    keep_alive_timeout: f64,
    #[pyo3(attribute)]
    header_timeout: f64,
    #[pyo3(attribute)]
    body_timeout: f64,
    #[pyo3(attribute)]
    write_timeout: f64,
    #[pyo3(attribute)]
    tls_handshake_timeout: f64,
    #[pyo3(attribute)]
    stream_timeout: f64,
    #[pyo3(attribute)]
    fallback_concurrency: usize,
    #[pyo3(attribute)]
    fallback_queue: usize,
    #[pyo3(attribute)]
    fallback_queue_timeout: f64,
    #[pyo3(attribute)]
    shutdown_timeout: f64,
    #[pyo3(attribute)]
    auth_cache_seconds: f64,
}

/// `seconds` as a duration, or an error naming the option.
fn seconds(name: &str, seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "{name} must be a number of seconds above 0, not {seconds}"
            ))
        })
}

impl PyServerOptions {
    fn into_options(
        self,
        routes: Vec<String>,
        answer_shape: AnswerShape,
        serving_version: String,
    ) -> PyResult<ServerOptions> {
        let tls = match (self.tls_cert_path, self.tls_key_path) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(PyValueError::new_err("give both --cert and --key for HTTPS")),
        };
        for (name, count) in [
            ("--max-body-bytes", self.max_body_bytes),
            ("--max-entity-rows", self.max_entity_rows),
            ("--max-values-per-request", self.max_values_per_request),
            ("--worker-connections", self.worker_connections),
            ("--max-concurrent-reads", self.max_concurrent_reads),
            ("--fallback-concurrency", self.fallback_concurrency),
            ("--workers", self.workers),
        ] {
            if count == 0 {
                return Err(PyValueError::new_err(format!("{name} must be 1 or more")));
            }
        }
        let max_buffered_bytes = self.max_buffered_mb.saturating_mul(1 << 20);
        if max_buffered_bytes < self.max_body_bytes {
            return Err(PyValueError::new_err(format!(
                "--max-buffered-mb ({} MiB) must hold at least one body of --max-body-bytes ({} bytes)",
                self.max_buffered_mb, self.max_body_bytes
            )));
        }
        let metrics = match (self.metrics, self.metrics_port) {
            (false, _) => MetricsExposure::Off,
            (true, None) => MetricsExposure::SamePort,
            (true, Some(port)) => MetricsExposure::OwnPort {
                host: self.metrics_host,
                port,
            },
        };
        Ok(ServerOptions {
            host: self.host,
            port: self.port,
            tls,
            access_log: self.access_log,
            metrics,
            max_body_bytes: self.max_body_bytes,
            limits: RequestLimits {
                max_rows: self.max_entity_rows,
                max_cells: self.max_values_per_request,
            },
            max_buffered_bytes,
            max_concurrent_reads: self.max_concurrent_reads,
            read_queue_timeout: seconds("--read-queue-timeout", self.read_queue_timeout)?,
            transform_queue_timeout: seconds("--transform-queue-timeout", self.transform_queue_timeout)?,
            workers: self.workers,
            max_connections: self.worker_connections,
            timeouts: Timeouts {
                header_read: seconds("--header-timeout", self.header_timeout)?,
                keep_alive: seconds("--keep-alive-timeout", self.keep_alive_timeout)?,
                body_read: seconds("--body-timeout", self.body_timeout)?,
                write: seconds("--write-timeout", self.write_timeout)?,
                tls_handshake: seconds("--tls-handshake-timeout", self.tls_handshake_timeout)?,
                stream: seconds("--stream-timeout", self.stream_timeout)?,
            },
            fallback: FallbackLimits {
                concurrency: self.fallback_concurrency,
                queue: self.fallback_queue,
                queue_timeout: seconds("--fallback-queue-timeout", self.fallback_queue_timeout)?,
            },
            shutdown_timeout: seconds("--shutdown-timeout", self.shutdown_timeout)?,
            auth_cache: Duration::try_from_secs_f64(self.auth_cache_seconds).map_err(|_| {
                PyValueError::new_err(format!(
                    "--auth-cache-seconds must be a number of seconds, 0 or more, not {}",
                    self.auth_cache_seconds
                ))
            })?,
            routes,
            answer_shape,
            serving_version,
        })
    }
}

/// The attributes of `feast_redis_rs.server.ServedView`.
#[derive(FromPyObject)]
struct PyServedView {
    #[pyo3(attribute)]
    name: String,
    #[pyo3(attribute)]
    plan: Py<ViewPlan>,
    #[pyo3(attribute)]
    version: i64,
}

/// The attributes of `feast_redis_rs.server.ServedProjection`.
#[derive(FromPyObject)]
struct PyServedProjection {
    #[pyo3(attribute)]
    view: String,
    #[pyo3(attribute)]
    name: String,
    #[pyo3(attribute)]
    metadata_name: String,
    #[pyo3(attribute)]
    features: Vec<String>,
    #[pyo3(attribute)]
    join_key_map: HashMap<String, String>,
}

/// The attributes of `feast_redis_rs.server.ServedOnDemandView`.
#[derive(FromPyObject)]
struct PyServedOnDemandView {
    #[pyo3(attribute)]
    name: String,
    #[pyo3(attribute)]
    sources: Vec<(String, Vec<String>)>,
    #[pyo3(attribute)]
    features: Vec<String>,
    #[pyo3(attribute)]
    request_fields: Vec<String>,
}

/// The attributes of `feast_redis_rs.server.ServedPrecomputed`.
#[derive(FromPyObject)]
struct PyServedPrecomputed {
    #[pyo3(attribute)]
    service: String,
    #[pyo3(attribute)]
    plan: Py<ViewPlan>,
    #[pyo3(attribute)]
    ttls: Vec<(String, i64)>,
}

/// The attributes of `feast_redis_rs.server.WritableView`.
#[derive(FromPyObject)]
struct PyWritableView {
    #[pyo3(attribute)]
    name: String,
    #[pyo3(attribute)]
    plan: Py<ViewPlan>,
    #[pyo3(attribute)]
    created_column: Option<String>,
}

/// Sends a fallback's answer back to the waiting request; called once from Python.
/// Until then (or until it is dropped) it holds the request's place in Feast's app.
#[pyclass(frozen, module = "feast_redis_rs._native")]
struct Reply(Mutex<Option<FallbackReply>>);

#[pymethods]
impl Reply {
    fn __call__(&self, status: u16, headers: Vec<(String, Vec<u8>)>, body: Vec<u8>) {
        let reply = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(reply) = reply {
            reply.send(FallbackResponse {
                status,
                headers,
                body,
            });
        }
    }
}

enum Job {
    Submit(FallbackRequest),
    Cancel(u64),
}

/// Hands requests (and cancellations) to Python's `dispatch(id, method, path, headers,
/// body, client, scheme, reply)` and `cancel(id)` on a thread of its own: the server's
/// I/O threads never wait for the GIL.
struct PythonFallback(mpsc::Sender<Job>);

impl PythonFallback {
    fn start(dispatch: Py<PyAny>, cancel: Py<PyAny>) -> PyResult<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("feast-redis-rs-fallback".into())
            .spawn(move || {
                // The interpreter may be finalizing (`serve` failed to start and
                // the process is exiting): the jobs are then dropped, as is the thread.
                while let Ok(job) = queue.recv() {
                    let attached = Python::try_attach(|py| {
                        // Whatever else is queued goes in the same hold of the GIL.
                        for job in std::iter::once(job).chain(queue.try_iter()) {
                            let called = match job {
                                Job::Submit(request) => {
                                    let headers: Vec<(String, Bound<'_, PyBytes>)> = request
                                        .headers
                                        .iter()
                                        .map(|(name, value)| (name.clone(), PyBytes::new(py, value)))
                                        .collect();
                                    let client = (request.client.ip().to_string(), request.client.port());
                                    let body = PyBytes::new(py, &request.body);
                                    let reply = Reply(Mutex::new(Some(request.reply)));
                                    dispatch.call1(
                                        py,
                                        (
                                            request.id,
                                            request.method,
                                            request.path,
                                            headers,
                                            body,
                                            client,
                                            request.scheme,
                                            reply,
                                        ),
                                    )
                                }
                                Job::Cancel(id) => cancel.call1(py, (id,)),
                            };
                            if let Err(err) = called {
                                err.print(py);
                            }
                        }
                    });
                    if attached.is_none() {
                        break;
                    }
                }
                let mut callbacks = Some((dispatch, cancel));
                if Python::try_attach(|_| drop(callbacks.take())).is_none() {
                    // Without the interpreter their references cannot be given back.
                    std::mem::forget(callbacks.take());
                }
            })
            .map_err(|err| PyOSError::new_err(format!("cannot start the fallback thread: {err}")))?;
        Ok(Self(jobs))
    }
}

impl Fallback for PythonFallback {
    fn submit(&self, request: FallbackRequest) {
        // A send fails only once the thread is gone: the request's reply is dropped
        // with it and the client gets a 500.
        let _ = self.0.send(Job::Submit(request));
    }

    fn cancel(&self, id: u64) {
        let _ = self.0.send(Job::Cancel(id));
    }
}

/// Feast's auth decision through Python's `decide(authorization, feature_service,
/// features, written)`: the seconds it holds, or `None` (called on a blocking thread).
struct PythonDecide(Py<PyAny>);

impl Decide for PythonDecide {
    fn decide(&self, authorization: &str, asked: &Asked) -> Option<Duration> {
        Python::attach(|py| {
            let decided = self
                .0
                .call1(
                    py,
                    (
                        authorization,
                        asked.service.as_deref(),
                        &asked.features,
                        &asked.written,
                    ),
                )
                .and_then(|holds| holds.extract::<Option<f64>>(py));
            match decided {
                // Allowed: for the seconds given (none are negative; infinity for a
                // token without an expiry).
                Ok(holds) => holds
                    .map(|seconds| Duration::try_from_secs_f64(seconds.max(0.0)).unwrap_or(Duration::MAX)),
                Err(err) => {
                    // Not a decision: Feast's app answers the request.
                    err.print(py);
                    None
                }
            }
        })
    }
}

/// Feast's on-demand transformations through Python's `transform(features,
/// feature_service, full_feature_names, request_data, read, columns)` (called on a
/// blocking thread); `columns` are those of `read` as Python lists, when every value's
/// Python value is made here (`python_value`), else `None`.
struct PythonTransform(Py<PyAny>);

/// The Python value Feast's `feast_value_type_to_python_type` makes of `value` (in every
/// release from 0.60), for the scalar and list kinds with no type-dependent conversion;
/// `None` for the rest (sets, maps, JSON, UUIDs, decimals, `null_val`...).
fn python_value<'py>(py: Python<'py>, value: &Value) -> PyResult<Option<Bound<'py, PyAny>>> {
    fn listed<'py, T>(
        py: Python<'py>,
        items: &[T],
        convert: impl Fn(&T) -> PyResult<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let items = items.iter().map(convert).collect::<PyResult<Vec<_>>>()?;
        Ok(Some(PyList::new(py, items)?.into_any()))
    }
    fn timestamp(py: Python<'_>, seconds: i64) -> PyResult<Bound<'_, PyAny>> {
        match seconds {
            NULL_TIMESTAMP => Ok(py.None().into_bound(py)),
            seconds => datetime_of(py, seconds),
        }
    }
    let any = |object: Bound<'py, PyAny>| Ok(Some(object));
    match &value.val {
        None => any(py.None().into_bound(py)),
        Some(Val::BytesVal(v)) => any(PyBytes::new(py, v).into_any()),
        Some(Val::StringVal(v)) => any(PyString::new(py, v).into_any()),
        Some(Val::Int32Val(v)) => any(v.into_pyobject(py)?.into_any()),
        Some(Val::Int64Val(v)) => any(v.into_pyobject(py)?.into_any()),
        Some(Val::DoubleVal(v)) => any(v.into_pyobject(py)?.into_any()),
        Some(Val::FloatVal(v)) => any(f64::from(*v).into_pyobject(py)?.into_any()),
        Some(Val::BoolVal(v)) => any(v.into_pyobject(py)?.to_owned().into_any()),
        Some(Val::UnixTimestampVal(v)) => any(timestamp(py, *v)?),
        Some(Val::BytesListVal(l)) => listed(py, &l.val, |v| Ok(PyBytes::new(py, v).into_any())),
        Some(Val::StringListVal(l)) => listed(py, &l.val, |v| Ok(PyString::new(py, v).into_any())),
        Some(Val::Int32ListVal(l)) => listed(py, &l.val, |v| Ok(v.into_pyobject(py)?.into_any())),
        Some(Val::Int64ListVal(l)) => listed(py, &l.val, |v| Ok(v.into_pyobject(py)?.into_any())),
        Some(Val::DoubleListVal(l)) => listed(py, &l.val, |v| Ok(v.into_pyobject(py)?.into_any())),
        Some(Val::FloatListVal(l)) => listed(py, &l.val, |v| Ok(f64::from(*v).into_pyobject(py)?.into_any())),
        Some(Val::BoolListVal(l)) => listed(py, &l.val, |v| Ok(v.into_pyobject(py)?.to_owned().into_any())),
        Some(Val::UnixTimestampListVal(l)) => listed(py, &l.val, |v| timestamp(py, *v)),
        Some(_) => Ok(None),
    }
}

/// The columns of `read` as Python lists of Feast's Python values, or `None` when one
/// value is not made here (or cannot be: a timestamp out of Python's range).
fn python_columns<'py>(py: Python<'py>, read: &[u8]) -> Option<Vec<(String, Bound<'py, PyList>)>> {
    ReadResponse::columns(read)?
        .into_iter()
        .map(|(name, values)| {
            let items = values
                .iter()
                .map(|value| python_value(py, value).ok().flatten())
                .collect::<Option<Vec<_>>>()?;
            Some((name, PyList::new(py, items).ok()?))
        })
        .collect()
}

impl Transform for PythonTransform {
    fn transform(&self, rows: &Rows) -> Option<Vec<(String, Vec<u8>)>> {
        Python::attach(|py| {
            let columns = python_columns(py, &rows.read);
            let read = PyBytes::new(py, &rows.read);
            let transformed = self
                .0
                .call1(
                    py,
                    (
                        &rows.features,
                        &rows.feature_service,
                        rows.full_feature_names,
                        &rows.request_data,
                        read,
                        columns,
                    ),
                )
                .and_then(|vectors| vectors.extract::<Option<Vec<(String, Vec<u8>)>>>(py));
            transformed.unwrap_or_else(|err| {
                // Not an answer: Feast's app answers the request.
                err.print(py);
                None
            })
        })
    }
}

#[pyclass(frozen, module = "feast_redis_rs._native")]
pub struct FeatureServer(Arc<Server>);

#[pymethods]
impl FeatureServer {
    /// A server reading through `client`, answering what it does not serve itself with
    /// `dispatch(id, method, path, headers, body, client, scheme, reply)` (and telling
    /// `cancel(id)` when that request's client went away); `routes` are the path
    /// templates of Feast's app, for the metrics; `version_metadata` and `null_status`:
    /// how the installed Feast's `feast serve` shapes its answers (`AnswerShape`);
    /// `feast_version`: what `ServingService.GetFeastServingInfo` answers; `decide`, in
    /// a repo with `auth`: Feast's decision for a request read or written natively
    /// (`PythonDecide`);
    /// `transform`: Feast's on-demand transformations (`PythonTransform`).
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        options: PyServerOptions,
        client: &RedisStoreClient,
        dispatch: Py<PyAny>,
        cancel: Py<PyAny>,
        routes: Vec<String>,
        version_metadata: bool,
        null_status: bool,
        feast_version: String,
        decide: Option<Py<PyAny>>,
        transform: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let shape = AnswerShape {
            version_metadata,
            null_status,
        };
        let options = options.into_options(routes, shape, feast_version)?;
        let fallback = PythonFallback::start(dispatch, cancel)?;
        let mut server = Server::new(options, client.shared(), Box::new(fallback));
        if let Some(decide) = decide {
            server = server.with_access(Box::new(PythonDecide(decide)));
        }
        if let Some(transform) = transform {
            server = server.with_transforms(Box::new(PythonTransform(transform)));
        }
        Ok(Self(Arc::new(server)))
    }

    /// Serves `views` (and the on-demand views and feature services made of them) from
    /// the next request on, and writes the views of `writes` (with the push sources
    /// feeding them), read from the registry just now.
    fn update(
        &self,
        py: Python<'_>,
        views: Vec<PyServedView>,
        on_demand: Vec<PyServedOnDemandView>,
        services: Vec<(String, Vec<PyServedProjection>)>,
        precomputed: Vec<PyServedPrecomputed>,
        writes: (Vec<PyWritableView>, Vec<(String, Vec<String>)>),
    ) {
        let (writable, pushes) = writes;
        let views = views
            .into_iter()
            .map(|view| {
                let plan = view.plan.bind(py).get().0.clone();
                let served = ServedView::new(&view.name, plan, view.version);
                (view.name, served)
            })
            .collect();
        let services = services
            .into_iter()
            .map(|(name, projections)| {
                let projections = projections
                    .into_iter()
                    .map(|p| ServedProjection {
                        view: p.view,
                        name: p.name,
                        metadata_name: p.metadata_name,
                        features: p.features,
                        join_key_map: p.join_key_map,
                    })
                    .collect();
                (name, projections)
            })
            .collect();
        let on_demand = on_demand
            .into_iter()
            .map(|view| {
                let served = ServedOnDemandView {
                    sources: view.sources,
                    features: view.features,
                    request_fields: view.request_fields,
                };
                (view.name, served)
            })
            .collect();
        let precomputed = precomputed
            .into_iter()
            .map(|served| {
                let plan = served.plan.bind(py).get().0.clone();
                let ttls = served.ttls;
                (served.service, ServedPrecomputed { plan, ttls })
            })
            .collect();
        let writable = writable
            .into_iter()
            .map(|view| {
                let plan = view.plan.bind(py).get().0.clone();
                let created_column = view.created_column;
                let served = WritableView {
                    name: view.name.clone(),
                    plan,
                    created_column,
                };
                (view.name, served)
            })
            .collect();
        self.0.set_catalog(Catalog {
            views,
            on_demand,
            services,
            precomputed,
            writable,
            pushes: pushes.into_iter().collect(),
            generation: 0,
        });
    }

    /// The registry was read again and holds what the catalog in service was made of:
    /// it is fresh, and what was kept for it stays.
    fn keep_catalog(&self) {
        self.0.keep_catalog();
    }

    /// The registry could not be read: the server keeps its catalog, `/ready` answers
    /// 503 with `reason`.
    fn set_stale(&self, reason: String) {
        self.0.set_stale(reason);
    }

    /// Queues `line` for the server's log (a full or closed stderr drops it, counted).
    fn log(&self, line: String) {
        self.0.log(line);
    }

    /// Serves until SIGTERM/SIGINT or `stop()`, with the GIL released; `ready` is
    /// called with `(host, port)` once listening. Returns the seconds left of the
    /// shutdown's grace, or `None` when a second signal cut it short.
    fn run(&self, py: Python<'_>, ready: Py<PyAny>) -> PyResult<Option<f64>> {
        let server = Arc::clone(&self.0);
        let left = py.detach(|| {
            server.run(|addr| {
                Python::attach(|py| {
                    if let Err(err) = ready.call1(py, (addr.ip().to_string(), addr.port())) {
                        err.print(py);
                    }
                });
            })
        })?;
        Ok(left.map(|left| left.as_secs_f64()))
    }

    /// Stops accepting connections; in-flight requests finish, then `run` returns.
    fn stop(&self) {
        self.0.stop();
    }
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FeatureServer>()?;
    m.add_class::<Reply>()
}
