//! `FeatureServer`: the native server of `crate::server` for `feast-redis-rs serve`.
//! Python hands it the catalog of served views (again at every registry refresh) and
//! a dispatcher into Feast's own app for the requests the server leaves to Feast.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::sync::oneshot;

use super::plan::ViewPlan;
use super::store::RedisStoreClient;
use crate::server::{
    Catalog, Fallback, FallbackRequest, FallbackResponse, ServedProjection, ServedView, Server, ServerError,
    ServerOptions,
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
    max_body_bytes: usize,
    #[pyo3(attribute)]
    workers: usize,
    #[pyo3(attribute)]
    shutdown_timeout_seconds: f64,
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

/// Sends a fallback's answer back to the waiting request; called once from Python.
#[pyclass(frozen, module = "feast_redis_rs._native")]
struct Reply(Mutex<Option<oneshot::Sender<FallbackResponse>>>);

#[pymethods]
impl Reply {
    fn __call__(&self, status: u16, headers: Vec<(String, Vec<u8>)>, body: Vec<u8>) {
        let sender = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(sender) = sender {
            let _ = sender.send(FallbackResponse {
                status,
                headers,
                body,
            });
        }
    }
}

/// Calls the Python dispatcher `(method, path, headers, body, client, reply)`.
struct PythonFallback(Py<PyAny>);

impl Fallback for PythonFallback {
    fn call(&self, request: FallbackRequest) -> oneshot::Receiver<FallbackResponse> {
        let (sender, receiver) = oneshot::channel();
        Python::attach(|py| {
            let reply = Reply(Mutex::new(Some(sender)));
            let headers: Vec<(String, Bound<'_, PyBytes>)> = request
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), PyBytes::new(py, value)))
                .collect();
            let client = (request.client.ip().to_string(), request.client.port());
            let called = self.0.call1(
                py,
                (
                    request.method,
                    request.path,
                    headers,
                    PyBytes::new(py, &request.body),
                    client,
                    reply,
                ),
            );
            if let Err(err) = called {
                err.print(py);
            }
        });
        receiver
    }
}

#[pyclass(frozen, module = "feast_redis_rs._native")]
pub struct FeatureServer(Arc<Server>);

#[pymethods]
impl FeatureServer {
    /// A server reading through `client`, answering what it does not serve itself with
    /// `dispatch(method, path, headers, body, client, reply)`.
    #[new]
    fn new(options: PyServerOptions, client: &RedisStoreClient, dispatch: Py<PyAny>) -> PyResult<Self> {
        let tls = match (options.tls_cert_path, options.tls_key_path) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(PyValueError::new_err("give both --cert and --key for HTTPS")),
        };
        let shutdown_timeout = Duration::try_from_secs_f64(options.shutdown_timeout_seconds)
            .map_err(|_| PyValueError::new_err("shutdown_timeout_seconds must be 0 or more"))?;
        let options = ServerOptions {
            host: options.host,
            port: options.port,
            tls,
            access_log: options.access_log,
            metrics: options.metrics,
            max_body_bytes: options.max_body_bytes,
            workers: options.workers,
            shutdown_timeout,
        };
        let server = Server::new(options, client.shared(), Box::new(PythonFallback(dispatch)));
        Ok(Self(Arc::new(server)))
    }

    /// Serves `views` (and the feature services made of them) from the next request on,
    /// and says whether the registry could be read (`/health`).
    fn update(
        &self,
        py: Python<'_>,
        views: Vec<PyServedView>,
        services: Vec<(String, Vec<PyServedProjection>)>,
        healthy: bool,
    ) {
        let views = views
            .into_iter()
            .map(|view| {
                let plan = view.plan.bind(py).get().0.clone();
                (
                    view.name,
                    ServedView {
                        plan,
                        version: view.version,
                    },
                )
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
        self.0.set_catalog(Catalog { views, services });
        self.0.set_healthy(healthy);
    }

    /// Whether the last refresh could read the registry.
    fn set_healthy(&self, healthy: bool) {
        self.0.set_healthy(healthy);
    }

    /// Serves until SIGTERM/SIGINT or `stop()`, with the GIL released; `ready` is
    /// called with `(host, port)` once listening.
    fn run(&self, py: Python<'_>, ready: Py<PyAny>) -> PyResult<()> {
        let server = Arc::clone(&self.0);
        py.detach(|| {
            server.run(|addr| {
                Python::attach(|py| {
                    if let Err(err) = ready.call1(py, (addr.ip().to_string(), addr.port())) {
                        err.print(py);
                    }
                });
            })
        })?;
        Ok(())
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
