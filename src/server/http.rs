//! The HTTP server: hyper on a multi-thread tokio runtime, HTTP/1.1 with keep-alive,
//! optional TLS. `POST /get-online-features` and `GET /health` (and `/metrics` when
//! asked for) are answered here; every other request, and any online request the native
//! path leaves, goes to the `Fallback` (Feast's own app, in Python).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};
use tokio_rustls::TlsAcceptor;

use super::metrics::Metrics;
use super::online::{self, Answer, Catalog};
use crate::redis::RedisClient;

pub struct ServerOptions {
    pub host: String,
    pub port: u16,
    /// PEM certificate chain and key: HTTPS when both are given.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub access_log: bool,
    pub metrics: bool,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    pub workers: usize,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_timeout: Duration,
}

/// A request for Feast's own app.
pub struct FallbackRequest {
    pub method: String,
    /// The path with its query string.
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Bytes,
    pub client: SocketAddr,
}

pub struct FallbackResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Answers the requests the server does not answer itself. `call` may block (it takes
/// the GIL): the server calls it off its I/O threads.
pub trait Fallback: Send + Sync + 'static {
    fn call(&self, request: FallbackRequest) -> oneshot::Receiver<FallbackResponse>;
}

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },
    #[error("--cert/--key: {0}")]
    Tls(String),
    #[error("cannot start the server's runtime: {0}")]
    Runtime(String),
}

pub struct Server {
    options: ServerOptions,
    client: Arc<RedisClient>,
    catalog: RwLock<Arc<Catalog>>,
    healthy: AtomicBool,
    metrics: Metrics,
    fallback: Box<dyn Fallback>,
    stop: Notify,
}

type Answered = Response<Full<Bytes>>;

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Answered {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json_error(status: StatusCode, detail: &str) -> Answered {
    let mut body = String::from("{\"detail\":");
    super::json::string(&mut body, detail);
    body.push('}');
    respond(status, "application/json", body)
}

fn load_tls(cert: &PathBuf, key: &PathBuf) -> Result<TlsAcceptor, ServerError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| {
            ServerError::Tls(format!("cannot read certificates from {}: {err}", cert.display()))
        })?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|err| {
        ServerError::Tls(format!("cannot read a private key from {}: {err}", key.display()))
    })?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| ServerError::Tls(err.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl Server {
    pub fn new(options: ServerOptions, client: Arc<RedisClient>, fallback: Box<dyn Fallback>) -> Self {
        Self {
            options,
            client,
            catalog: RwLock::new(Arc::new(Catalog::default())),
            healthy: AtomicBool::new(false),
            metrics: Metrics::default(),
            fallback,
            stop: Notify::new(),
        }
    }

    /// Serves `catalog` from the next request on.
    pub fn set_catalog(&self, catalog: Catalog) {
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(catalog);
    }

    /// Whether the registry could be read at the last refresh (`/health`).
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Stops accepting connections; in-flight requests finish.
    pub fn stop(&self) {
        self.stop.notify_one();
    }

    fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Serves until SIGTERM, SIGINT or `stop`, then lets in-flight requests finish
    /// (up to `shutdown_timeout`). `ready` is told the address once listening.
    pub fn run(self: &Arc<Self>, ready: impl FnOnce(SocketAddr)) -> Result<(), ServerError> {
        let tls = match &self.options.tls {
            Some((cert, key)) => Some(load_tls(cert, key)?),
            None => None,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.options.workers.max(1))
            .thread_name("feast-redis-rs-server")
            .enable_all()
            .build()
            .map_err(|err| ServerError::Runtime(err.to_string()))?;
        runtime.block_on(self.accept_loop(tls, ready))
    }

    async fn accept_loop(
        self: &Arc<Self>,
        tls: Option<TlsAcceptor>,
        ready: impl FnOnce(SocketAddr),
    ) -> Result<(), ServerError> {
        let addr = format!("{}:{}", self.options.host, self.options.port);
        let listener = TcpListener::bind(&addr).await.map_err(|err| ServerError::Bind {
            addr: addr.clone(),
            reason: err.to_string(),
        })?;
        let local = listener.local_addr().map_err(|err| ServerError::Bind {
            addr: addr.clone(),
            reason: err.to_string(),
        })?;
        ready(local);
        let mut terminate = Terminate::new().map_err(|err| ServerError::Runtime(err.to_string()))?;
        let graceful = GracefulShutdown::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, peer)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let server = Arc::clone(self);
                    let service = service_fn(move |request| {
                        let server = Arc::clone(&server);
                        async move { Ok::<_, Infallible>(server.handle(request, peer).await) }
                    });
                    let watcher = graceful.watcher();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        let builder = hyper::server::conn::http1::Builder::new();
                        match tls {
                            Some(acceptor) => {
                                if let Ok(stream) = acceptor.accept(stream).await {
                                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                                    let _ = watcher.watch(connection).await;
                                }
                            }
                            None => {
                                let connection = builder.serve_connection(TokioIo::new(stream), service);
                                let _ = watcher.watch(connection).await;
                            }
                        }
                    });
                }
                _ = terminate.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                _ = self.stop.notified() => break,
            }
        }
        drop(listener);
        tokio::select! {
            _ = graceful.shutdown() => {}
            _ = tokio::time::sleep(self.options.shutdown_timeout) => {}
        }
        Ok(())
    }

    async fn handle(self: Arc<Self>, request: Request<Incoming>, peer: SocketAddr) -> Answered {
        let started = Instant::now();
        let _in_flight = self.metrics.start();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let response = self.route(request, peer).await;
        let status = response.status();
        self.metrics.record(&path, status.as_u16(), started.elapsed());
        if self.options.access_log {
            eprintln!(
                "INFO:     {peer} - \"{method} {path} HTTP/1.1\" {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            );
        }
        response
    }

    async fn route(&self, request: Request<Incoming>, peer: SocketAddr) -> Answered {
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/health") => {
                let status = if self.healthy.load(Ordering::Relaxed) {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                respond(status, "text/plain", Bytes::new())
            }
            (&Method::GET, "/metrics") if self.options.metrics => {
                respond(StatusCode::OK, "text/plain; version=0.0.4", self.metrics.render())
            }
            (&Method::POST, "/get-online-features") => {
                let (parts, body) = request.into_parts();
                let body = match self.read_body(body).await {
                    Ok(body) => body,
                    Err(response) => return response,
                };
                match self.online(&body).await {
                    Some(response) => response,
                    None => self.fall_back(parts, body, peer).await,
                }
            }
            _ => {
                let (parts, body) = request.into_parts();
                match self.read_body(body).await {
                    Ok(body) => self.fall_back(parts, body, peer).await,
                    Err(response) => response,
                }
            }
        }
    }

    async fn read_body(&self, body: Incoming) -> Result<Bytes, Answered> {
        let limit = self.options.max_body_bytes;
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(err) if err.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the request body is over {limit} bytes (--max-body-bytes)"),
            )),
            Err(err) => Err(json_error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the request body: {err}"),
            )),
        }
    }

    /// The native answer, or `None` for Feast's.
    async fn online(&self, body: &[u8]) -> Option<Answered> {
        let catalog = self.catalog();
        let parsed = online::parse(body)?;
        let resolved = online::resolve(&catalog, &parsed)?;
        match online::answer(&self.client, &resolved).await {
            Ok(Answer::Json(json)) => Some(respond(StatusCode::OK, "application/json", json)),
            Ok(Answer::Unsupported) => None,
            Err(err) => {
                self.metrics.redis_error();
                let mut message = String::new();
                super::json::string(&mut message, &err.to_string());
                Some(respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "application/json",
                    message,
                ))
            }
        }
    }

    async fn fall_back(
        &self,
        parts: hyper::http::request::Parts,
        body: Bytes,
        client: SocketAddr,
    ) -> Answered {
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect();
        let request = FallbackRequest {
            method: parts.method.as_str().to_owned(),
            path,
            headers,
            body,
            client,
        };
        self.metrics.fallback();
        let fallback = &self.fallback;
        let receiver = tokio::task::block_in_place(|| fallback.call(request));
        match receiver.await {
            Ok(answer) => {
                let mut response = Response::new(Full::new(Bytes::from(answer.body)));
                *response.status_mut() =
                    StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                for (name, value) in answer.headers {
                    if name.eq_ignore_ascii_case(CONTENT_LENGTH.as_str()) {
                        continue;
                    }
                    if let (Ok(name), Ok(value)) = (
                        hyper::header::HeaderName::from_bytes(name.as_bytes()),
                        HeaderValue::from_bytes(&value),
                    ) {
                        response.headers_mut().append(name, value);
                    }
                }
                response
            }
            Err(_) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "Feast's app gave no answer"),
        }
    }
}

/// SIGTERM, what service managers and container runtimes stop a server with; other
/// platforms have only Ctrl-C.
#[cfg(unix)]
struct Terminate(tokio::signal::unix::Signal);

#[cfg(unix)]
impl Terminate {
    fn new() -> std::io::Result<Self> {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map(Self)
    }

    async fn recv(&mut self) {
        self.0.recv().await;
    }
}

#[cfg(not(unix))]
struct Terminate;

#[cfg(not(unix))]
impl Terminate {
    fn new() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn recv(&mut self) {
        std::future::pending::<()>().await
    }
}
