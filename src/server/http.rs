//! The HTTP server: hyper on a multi-thread tokio runtime, HTTP/1.1 with keep-alive,
//! optional TLS. `POST /get-online-features`, `POST /push`, `POST /write-to-online-store`,
//! `GET /health`, `GET /ready` (and `/metrics` when asked for) are answered here; every
//! other request, and any request the native paths leave, goes to the `Fallback`
//! (Feast's own app, in Python) through a bounded queue.
//!
//! Everything a client can make the server hold is bounded: open connections (past the
//! cap the oldest connection without a request in service makes room, else the kernel's
//! backlog holds the newcomer), the clocks of `connection::TimedIo`, the request body,
//! entity rows and values per request, the bytes all requests hold together
//! (`budget`), the requests waiting for Feast's app, metric series, log lines.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::access::{Access, Asked, Decide, Verdict};
use super::admission::{Admission, Place, Shed};
use super::budget::{MemoryBudget, Reservation};
use super::connection::{Closed, ConnState, Connections, TimedIo, Timeouts};
use super::grpc::{self, Caller, GrpcServices, StreamingCalls};
use super::log::Log;
use super::memo::AnswerMemo;
use super::metrics::{Gauges, Metrics, Refused};
use super::online::{self, Answer, Catalog, Format, RequestLimits};
use super::push;
use super::transform::{Transform, Transforms, TransformsBusy};
use crate::redis::{ConnectionGroup, RedisClient};

/// Where `/metrics` is served, if at all.
#[derive(Clone, Debug)]
pub enum MetricsExposure {
    Off,
    /// On the server's own port.
    SamePort,
    /// On a listener of its own (a repo with auth: not beside the authenticated API).
    OwnPort {
        host: String,
        port: u16,
    },
}

/// How requests for Feast's app wait.
#[derive(Clone, Copy, Debug)]
pub struct FallbackLimits {
    /// Requests Feast's app works on at once.
    pub concurrency: usize,
    /// Requests waiting for one of those places; past this, 503 at once.
    pub queue: usize,
    /// How long a request may wait for a place before a 503.
    pub queue_timeout: Duration,
}

pub struct ServerOptions {
    pub host: String,
    pub port: u16,
    /// PEM certificate chain and key: HTTPS when both are given.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub access_log: bool,
    pub metrics: MetricsExposure,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    pub limits: RequestLimits,
    /// Bytes of bodies and answers all requests in flight may hold together.
    pub max_buffered_bytes: usize,
    /// Online requests read natively at once at most (the limit adapts under it), and
    /// waiting for a place at most; past that, 503 at once.
    pub max_concurrent_reads: usize,
    /// Under sustained overload, how long a read may wait for a place before a 503
    /// (load shedding: the ones answered keep their latency).
    pub read_queue_timeout: Duration,
    /// How long a read with on-demand views may wait for one of the transformations
    /// running at once to end before a 503.
    pub transform_queue_timeout: Duration,
    pub workers: usize,
    /// Open client connections.
    pub max_connections: usize,
    pub timeouts: Timeouts,
    pub fallback: FallbackLimits,
    /// From SIGTERM/SIGINT to the end of `run`, all of it.
    pub shutdown_timeout: Duration,
    /// In a repo with `auth`, how long Feast's decision for a token and a request's
    /// features is kept at most (zero: Feast decides every request).
    pub auth_cache: Duration,
    /// Feast's app's path templates, each a series of its own in the metrics.
    pub routes: Vec<String>,
    /// How the installed Feast's `feast serve` shapes its answers.
    pub answer_shape: online::AnswerShape,
    /// The Feast version `ServingService.GetFeastServingInfo` names.
    pub serving_version: String,
}

/// A request for Feast's own app.
pub struct FallbackRequest {
    /// Names the request to `Fallback::cancel`.
    pub id: u64,
    pub method: String,
    /// The path with its query string, as sent.
    pub path: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Bytes,
    pub client: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    pub reply: FallbackReply,
}

/// Where a fallback's answer goes. It holds the request's place in Feast's app until
/// it is sent or dropped.
pub struct FallbackReply {
    sender: oneshot::Sender<FallbackResponse>,
    _place: OwnedSemaphorePermit,
}

impl FallbackReply {
    pub fn send(self, response: FallbackResponse) {
        let _ = self.sender.send(response);
    }
}

pub struct FallbackResponse {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Answers the requests the server does not answer itself. Neither method may block:
/// they are called on the server's I/O threads.
pub trait Fallback: Send + Sync + 'static {
    /// Hands `request` over; the answer goes to `request.reply`.
    fn submit(&self, request: FallbackRequest);
    /// The client of request `id` went away before its answer.
    fn cancel(&self, id: u64);
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

/// Why a request's body was not read.
pub(super) struct BodyRefused {
    pub status: StatusCode,
    pub message: String,
}

impl BodyRefused {
    fn answer(&self) -> Answered {
        match self.status {
            StatusCode::SERVICE_UNAVAILABLE => shed(&self.message),
            status => refuse(status, &self.message),
        }
    }
}

/// Why a request read natively was not answered.
pub(super) enum Refusal {
    OverLimit(online::OverLimit),
    OverBudget,
    Redis(crate::store::StoreError),
    /// Waited for a transformation to end (`--transform-queue-timeout`), in vain.
    TransformsBusy(TransformsBusy),
}

const REQUEST_OVER_BUDGET: &str =
    "the server is holding as many request bytes as it may (--max-buffered-mb): retry shortly";
/// What a native write holds beyond its body, per byte of it: its columns, their Arrow
/// batch and the rows encoded from it (a JSON number of two bytes takes 8 in each).
const WRITE_BYTES_PER_BODY_BYTE: usize = 12;
const ANSWER_OVER_BUDGET: &str =
    "the server is holding as many answer bytes as it may (--max-buffered-mb): retry shortly";

/// Whether the catalog is fresh, for `/ready`.
struct Readiness {
    refreshed: Instant,
    stale: Option<String>,
}

pub struct Server {
    options: ServerOptions,
    client: Arc<RedisClient>,
    catalog: RwLock<Arc<Catalog>>,
    /// The last catalog's `generation`.
    catalogs_served: AtomicU64,
    /// Answers kept for requests sent again, when the client has a near cache.
    memo: Option<AnswerMemo>,
    readiness: Mutex<Readiness>,
    draining: AtomicBool,
    metrics: Metrics,
    log: Log,
    fallback: Box<dyn Fallback>,
    reads: Admission,
    fallback_places: Arc<Semaphore>,
    fallback_waiting: AtomicUsize,
    next_fallback: AtomicU64,
    budget: MemoryBudget,
    connections: Arc<Connections>,
    grpc: GrpcServices,
    streaming: StreamingCalls,
    /// Feast's auth, in a repo with `auth`.
    access: Option<Access>,
    /// Feast's on-demand transformations.
    transforms: Option<Transforms>,
    stop: Notify,
}

type Answered = Response<Full<Bytes>>;

/// Which listener a connection came through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Listener {
    Api,
    Metrics,
}

/// Open connections of the metrics listener.
const METRICS_CONNECTIONS: usize = 16;
/// The longest back-off of the accept loop when the process is out of file descriptors.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Running out of file descriptors is logged at most this often.
const FD_WARNING_INTERVAL: Duration = Duration::from_secs(60);
/// How often a full accept loop looks again for a connection to make room.
const FULL_RETRY: Duration = Duration::from_millis(100);
/// Largest request head (request line and headers) a client may send.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// At shutdown, how long a connection without a request in service may go on writing.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(100);
/// Requests an HTTP/2 connection may have in service at once.
const MAX_STREAMS_PER_CONNECTION: u32 = 100;
/// Streams an HTTP/2 client may open and reset at once before the connection is ended
/// (the "rapid reset" attack).
const MAX_PENDING_RESET_STREAMS: usize = 20;

/// What a connection's service answers: its own bodies, or tonic's (gRPC, streamed).
type Body = Either<Full<Bytes>, tonic::body::Body>;

/// Why Feast's app gave no answer.
pub(super) enum NotAnswered {
    /// The request waited past a bound of the fallback queue.
    Shed(String),
    /// Feast's app dropped the request.
    Dropped,
}

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Answered {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A 500 naming what failed in the store (Redis unreachable, timed out...).
fn store_failed(err: &crate::store::StoreError) -> Answered {
    let mut message = String::new();
    super::json::string(&mut message, &err.to_string());
    respond(StatusCode::INTERNAL_SERVER_ERROR, "application/json", message)
}

/// An error as Feast's app answers a `FeastError`: its `to_error_detail()` JSON, as a
/// JSON string, so Feast's clients rebuild it (`FeastError.from_error_detail`).
fn feast_error(status: StatusCode, message: &str) -> Answered {
    let mut detail = String::from("{\"module\": \"feast.errors\", \"class\": \"FeastError\", \"message\": ");
    super::json::string(&mut detail, message);
    detail.push('}');
    let mut body = String::new();
    super::json::string(&mut body, &detail);
    respond(status, "application/json", body)
}

/// A refusal at a limit; the client should not reuse the connection (its body may be
/// unread).
fn refuse(status: StatusCode, message: &str) -> Answered {
    let mut response = feast_error(status, message);
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Overload: 503 with `Retry-After`.
fn shed(message: &str) -> Answered {
    let mut response = feast_error(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    response
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
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| ServerError::Tls(err.to_string()))?;
    // gRPC clients ask for HTTP/2 by ALPN.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn bind(host: &str, port: u16) -> Result<TcpListener, ServerError> {
    let addr = format!("{host}:{port}");
    TcpListener::bind(&addr).await.map_err(|err| ServerError::Bind {
        addr,
        reason: err.to_string(),
    })
}

/// The process (or system) is out of file descriptors or socket memory.
fn out_of_descriptors(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Counts a request waiting for a place in Feast's app while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Tells Feast's app to stop on a request whose client went away (the request's
/// future is dropped before its answer came).
struct CancelOnDrop<'a> {
    fallback: &'a dyn Fallback,
    id: u64,
    answered: bool,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.fallback.cancel(self.id);
        }
    }
}

/// Ends a connection's request phase when the service's future ends (answered or
/// dropped).
struct InService(Arc<ConnState>);

impl Drop for InService {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

/// SIGTERM and SIGINT (and `Server::stop`), each time they come.
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn recv(&mut self, stop: &Notify) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
            _ = stop.notified() => {}
        }
        #[cfg(not(unix))]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = stop.notified() => {}
        }
    }
}

impl Server {
    pub fn new(options: ServerOptions, client: Arc<RedisClient>, fallback: Box<dyn Fallback>) -> Self {
        let mut routes: Vec<String> = ["/get-online-features", "/health", "/ready", "/metrics"]
            .into_iter()
            .chain(grpc::METHODS)
            .map(str::to_owned)
            .collect();
        for route in &options.routes {
            if !routes.contains(route) {
                routes.push(route.clone());
            }
        }
        Self {
            memo: client.near_cache().map(AnswerMemo::beside),
            client,
            catalog: RwLock::new(Arc::new(Catalog::default())),
            catalogs_served: AtomicU64::new(0),
            readiness: Mutex::new(Readiness {
                refreshed: Instant::now(),
                stale: Some("no catalog yet".to_owned()),
            }),
            draining: AtomicBool::new(false),
            metrics: Metrics::new(routes),
            log: Log::to_stderr(),
            fallback,
            reads: Admission::new(
                options.max_concurrent_reads,
                options.workers,
                options.read_queue_timeout,
            ),
            fallback_places: Arc::new(Semaphore::new(options.fallback.concurrency.max(1))),
            fallback_waiting: AtomicUsize::new(0),
            next_fallback: AtomicU64::new(0),
            budget: MemoryBudget::new(options.max_buffered_bytes),
            connections: Arc::default(),
            grpc: GrpcServices::new(options.max_body_bytes),
            streaming: StreamingCalls::new(options.max_connections, options.timeouts.stream),
            stop: Notify::new(),
            access: None,
            transforms: None,
            options,
        }
    }

    /// Answers on-demand views natively, their transformations run by `transform`.
    pub fn with_transforms(mut self, transform: Box<dyn Transform>) -> Self {
        self.transforms = Some(Transforms::new(transform, self.options.transform_queue_timeout));
        self
    }

    /// Reads natively only what Feast's auth, asked through `decide`, allows.
    pub fn with_access(mut self, decide: Box<dyn Decide>) -> Self {
        self.access = Some(Access::new(decide, self.options.auth_cache));
        self
    }

    fn readiness(&self) -> std::sync::MutexGuard<'_, Readiness> {
        self.readiness.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves `catalog` from the next request on, read from a registry just now.
    pub fn set_catalog(&self, mut catalog: Catalog) {
        catalog.generation = self.catalogs_served.fetch_add(1, Ordering::Relaxed) + 1;
        *self.catalog.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(catalog);
        if let Some(memo) = &self.memo {
            memo.clear();
        }
        self.keep_catalog();
    }

    /// The registry was read again and holds what the catalog in service was made of.
    pub fn keep_catalog(&self) {
        // Permissions are read with the registry: decided again under the ones read now.
        if let Some(access) = &self.access {
            access.forget();
        }
        *self.readiness() = Readiness {
            refreshed: Instant::now(),
            stale: None,
        };
    }

    /// The registry could not be read: the catalog in service is stale, `/ready` says
    /// why (the server keeps serving it).
    pub fn set_stale(&self, reason: String) {
        self.readiness().stale = Some(reason);
    }

    /// Queues a line (without its newline) for the server's log.
    pub fn log(&self, mut line: String) {
        line.push('\n');
        self.log.line(line);
    }

    /// Stops accepting connections; in-flight requests finish.
    pub fn stop(&self) {
        self.stop.notify_one();
    }

    pub(super) fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Serves until SIGTERM, SIGINT or `stop`, then lets in-flight requests finish
    /// within `shutdown_timeout` (a second signal ends it at once). `ready` is told the
    /// address once listening. Returns the time left of the shutdown's grace, `None`
    /// when a second signal cut it short.
    pub fn run(self: &Arc<Self>, ready: impl FnOnce(SocketAddr)) -> Result<Option<Duration>, ServerError> {
        let tls = match &self.options.tls {
            Some((cert, key)) => Some(load_tls(cert, key)?),
            None => None,
        };
        let redis_connections = ConnectionGroup::new();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.options.workers.max(1))
            .thread_name("feast-redis-rs-server")
            .on_thread_start(move || redis_connections.join())
            .enable_all()
            .build()
            .map_err(|err| ServerError::Runtime(err.to_string()))?;
        let left = runtime.block_on(self.serve(tls, ready));
        // Connections still open past the grace are dropped with their tasks.
        runtime.shutdown_background();
        self.client.forget_group(redis_connections);
        left
    }

    async fn serve(
        self: &Arc<Self>,
        tls: Option<TlsAcceptor>,
        ready: impl FnOnce(SocketAddr),
    ) -> Result<Option<Duration>, ServerError> {
        let api = bind(&self.options.host, self.options.port).await?;
        let metrics = match &self.options.metrics {
            MetricsExposure::OwnPort { host, port } => Some(bind(host, *port).await?),
            _ => None,
        };
        let local = api.local_addr().map_err(|err| ServerError::Bind {
            addr: format!("{}:{}", self.options.host, self.options.port),
            reason: err.to_string(),
        })?;
        let mut signals = Signals::new().map_err(|err| ServerError::Runtime(err.to_string()))?;
        let (shutdown, shutting_down) = watch::channel(false);
        let api_places = Arc::new(Semaphore::new(self.options.max_connections.max(1)));
        let metrics_places = Arc::new(Semaphore::new(METRICS_CONNECTIONS));
        let metrics_connections = Arc::new(Connections::default());
        self.grpc.set_serving(true).await;
        ready(local);
        tokio::select! {
            _ = self.accept_loop(api, Listener::Api, tls, &api_places, &self.connections, &shutting_down) => {}
            _ = async {
                match metrics {
                    Some(listener) => {
                        self.accept_loop(listener, Listener::Metrics, None, &metrics_places, &metrics_connections, &shutting_down).await
                    }
                    None => std::future::pending().await,
                }
            } => {}
            _ = signals.recv(&self.stop) => {}
        }
        // The listeners are closed: new clients are refused by the kernel from here on.
        let started = Instant::now();
        self.draining.store(true, Ordering::Relaxed);
        self.grpc.set_serving(false).await;
        self.streaming.end_all();
        let _ = shutdown.send(true);
        self.connections.close_idle();
        metrics_connections.close_idle();
        let drained = async {
            let _ = api_places
                .acquire_many(self.options.max_connections.max(1) as u32)
                .await;
            let _ = metrics_places.acquire_many(METRICS_CONNECTIONS as u32).await;
        };
        tokio::select! {
            _ = drained => {}
            _ = tokio::time::sleep(self.options.shutdown_timeout) => {
                self.log(format!(
                    "WARNING:  {} connections still busy after the shutdown timeout: closing them",
                    self.connections.len()
                ));
            }
            _ = signals.recv(&self.stop) => return Ok(None),
        }
        // What was logged is written within the grace: the process may end right after.
        self.log
            .flush(self.options.shutdown_timeout.saturating_sub(started.elapsed()));
        Ok(Some(
            self.options.shutdown_timeout.saturating_sub(started.elapsed()),
        ))
    }

    /// Accepts connections while a place is free; when none is, the connection waiting
    /// longest without a request in service is closed to make room, else the kernel's
    /// backlog holds new clients. Out of file descriptors, it backs off (logging once a minute)
    /// instead of spinning.
    async fn accept_loop(
        self: &Arc<Self>,
        listener: TcpListener,
        kind: Listener,
        tls: Option<TlsAcceptor>,
        places: &Arc<Semaphore>,
        connections: &Arc<Connections>,
        shutting_down: &watch::Receiver<bool>,
    ) {
        let mut backoff = Duration::from_millis(10);
        let mut warned: Option<Instant> = None;
        loop {
            let place = match Arc::clone(places).try_acquire_owned() {
                Ok(place) => place,
                Err(_) => loop {
                    if connections.evict_oldest_idle() {
                        self.metrics.closed.add(Closed::Evicted);
                    }
                    tokio::select! {
                        place = Arc::clone(places).acquire_owned() => break place.expect("never closed"),
                        _ = tokio::time::sleep(FULL_RETRY) => {}
                    }
                },
            };
            match listener.accept().await {
                Ok((stream, peer)) => {
                    backoff = Duration::from_millis(10);
                    let _ = stream.set_nodelay(true);
                    self.spawn_connection(
                        stream,
                        peer,
                        kind,
                        tls.clone(),
                        place,
                        connections,
                        shutting_down.clone(),
                    );
                }
                Err(err) if out_of_descriptors(&err) => {
                    if warned.is_none_or(|at| at.elapsed() > FD_WARNING_INTERVAL) {
                        warned = Some(Instant::now());
                        self.log(format!(
                            "WARNING:  cannot accept connections: {err}; backing off (raise the \
                             file-descriptor limit, or lower --worker-connections from {})",
                            self.options.max_connections
                        ));
                    }
                    if connections.evict_oldest_idle() {
                        self.metrics.closed.add(Closed::Evicted);
                    }
                    drop(place);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
                // The client gave up before its connection was accepted, and the like.
                Err(_) => {}
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn_connection(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        kind: Listener,
        tls: Option<TlsAcceptor>,
        place: OwnedSemaphorePermit,
        connections: &Arc<Connections>,
        mut shutting_down: watch::Receiver<bool>,
    ) {
        let registered = connections.register();
        let server = Arc::clone(self);
        let timeouts = self.options.timeouts;
        tokio::spawn(async move {
            let _place = place;
            let state = Arc::clone(&registered.state);
            let io = TimedIo::new(
                stream,
                Arc::clone(&state),
                timeouts,
                Arc::clone(&server.metrics.closed),
            );
            match tls {
                None => {
                    server
                        .serve_connection(io, state, peer, kind, "http", shutting_down)
                        .await
                }
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(timeouts.tls_handshake, acceptor.accept(io));
                    let stream = tokio::select! {
                        accepted = handshake => match accepted {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(_)) => return,
                            Err(_) => {
                                server.metrics.closed.add(Closed::TlsHandshakeTimeout);
                                return;
                            }
                        },
                        _ = state.closing() => return,
                        _ = shutting_down.wait_for(|down| *down) => return,
                    };
                    server
                        .serve_connection(stream, state, peer, kind, "https", shutting_down)
                        .await
                }
            }
            drop(registered);
        });
    }

    async fn serve_connection<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        self: Arc<Self>,
        io: I,
        state: Arc<ConnState>,
        peer: SocketAddr,
        kind: Listener,
        scheme: &'static str,
        mut shutting_down: watch::Receiver<bool>,
    ) {
        let server = Arc::clone(&self);
        let service_state = Arc::clone(&state);
        let service = service_fn(move |request| {
            service_state.begin_request();
            let in_service = InService(Arc::clone(&service_state));
            let server = Arc::clone(&server);
            async move { Ok::<_, Infallible>(server.handle(request, peer, kind, scheme, in_service).await) }
        });
        // HTTP/1.1, or HTTP/2 (gRPC's) told by the client's preface.
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        // The connection's clocks are TimedIo's; hyper's own header timeout needs a timer.
        builder
            .http1()
            .header_read_timeout(None)
            .max_buf_size(MAX_HEAD_BYTES);
        builder
            .http2()
            .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
            .max_header_list_size(MAX_HEAD_BYTES as u32)
            .max_pending_accept_reset_streams(MAX_PENDING_RESET_STREAMS);
        let connection = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        loop {
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = state.closing() => {
                    // A request may have begun since the connection was chosen to close.
                    if state.close_unless_busy() {
                        return;
                    }
                }
                _ = shutting_down.wait_for(|down| *down) => break,
            }
        }
        connection.as_mut().graceful_shutdown();
        // What is written already (a stream's last frames, HTTP/2's GOAWAY) gets a moment
        // to leave; a request still arriving gets none.
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = tokio::time::sleep(SHUTDOWN_FLUSH) => {}
        }
        if !state.close_unless_busy() {
            let _ = connection.await;
        }
    }

    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
        kind: Listener,
        scheme: &'static str,
        in_service: InService,
    ) -> Response<Body> {
        let started = Instant::now();
        let _in_flight = self.metrics.start();
        let route = self.metrics.route(request.uri().path());
        let logged = self.options.access_log.then(|| {
            (
                request.method().clone(),
                request.uri().path().to_owned(),
                request.version(),
            )
        });
        let response = match kind {
            Listener::Api
                if grpc::is_grpc(request.headers().get(CONTENT_TYPE).map(HeaderValue::as_bytes)) =>
            {
                self.grpc(request, peer, scheme, in_service).await
            }
            Listener::Api => self.route(request, peer, scheme).await.map(Either::Left),
            Listener::Metrics => match (request.method(), request.uri().path()) {
                (&Method::GET, "/metrics") => self.render_metrics().map(Either::Left),
                _ => respond(StatusCode::NOT_FOUND, "text/plain", "Not Found").map(Either::Left),
            },
        };
        let status = response.status();
        let grpc_code = matches!(response.body(), Either::Right(_)).then(|| {
            response
                .headers()
                .get("grpc-status")
                .and_then(|code| code.to_str().ok()?.parse().ok())
                .unwrap_or(0)
        });
        self.metrics
            .record(route, status.as_u16(), grpc_code, started.elapsed());
        if let Some((method, path, version)) = logged {
            self.log(format!(
                "INFO:     {peer} - \"{method} {path} {version:?}\" {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ));
        }
        response
    }

    /// A gRPC call: its message read whole within the body's limits (size, time, the
    /// memory budget) before tonic decodes it, so a slow or huge stream holds nothing
    /// past them. A streaming call (health Watch, reflection) is read a message at a
    /// time instead, each bounded by its service, and the call by `StreamingCalls`; its
    /// connection stays in service while it lasts.
    async fn grpc(
        self: &Arc<Self>,
        request: Request<Incoming>,
        peer: SocketAddr,
        scheme: &'static str,
        in_service: InService,
    ) -> Response<Body> {
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(Caller {
            server: Arc::clone(self),
            peer,
            scheme,
        });
        if grpc::is_streaming(parts.uri.path()) {
            let place = match self.streaming.enter() {
                Ok(place) => place,
                Err(refused) => {
                    self.metrics.refused(Refused::Streams);
                    return refused.into_http::<tonic::body::Body>().map(Either::Right);
                }
            };
            let mut reservation = self.budget.reservation();
            if !reservation.grow(grpc::STREAM_MESSAGE_BYTES) {
                return grpc::refusal(&self.request_over_budget()).map(Either::Right);
            }
            let request = Request::from_parts(parts, tonic::body::Body::new(body));
            let response = self.grpc.call(request).await;
            return self
                .streaming
                .bound(response, (place, reservation, in_service))
                .map(Either::Right);
        }
        let (body, _reservation) = match self.read_body(&parts, body).await {
            Ok(read) => read,
            Err(refused) => return grpc::refusal(&refused).map(Either::Right),
        };
        self.grpc
            .call(Request::from_parts(
                parts,
                tonic::body::Body::new(Full::new(body)),
            ))
            .await
            .map(Either::Right)
    }

    fn render_metrics(&self) -> Answered {
        let (reads_in_service, read_limit) = self.reads.in_service();
        let (redis_pipelines, redis_writes) = self.client.pipelining();
        let gauges = Gauges {
            connections_open: self.connections.len(),
            log_lines_dropped: self.log.dropped(),
            reads_in_service,
            read_limit,
            transformations: self.transforms.as_ref().map_or((0, 0), Transforms::load),
            redis_pipelines,
            redis_writes,
            near_cache: self
                .client
                .near_cache()
                .zip(self.memo.as_ref())
                .map(|(cache, memo)| (cache.stats(), memo.stats())),
        };
        respond(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            self.metrics.render(&gauges),
        )
    }

    fn ready(&self) -> Answered {
        let readiness = self.readiness();
        let age = readiness.refreshed.elapsed().as_secs_f64();
        let (status, mut body) = match (&readiness.stale, self.draining.load(Ordering::Relaxed)) {
            (_, true) => (
                StatusCode::SERVICE_UNAVAILABLE,
                String::from("{\"ready\":false,\"reason\":\"shutting down\""),
            ),
            (Some(reason), false) => {
                let mut body = String::from("{\"ready\":false,\"reason\":");
                super::json::string(&mut body, reason);
                (StatusCode::SERVICE_UNAVAILABLE, body)
            }
            (None, false) => (StatusCode::OK, String::from("{\"ready\":true")),
        };
        body.push_str(&format!(",\"catalog_age_seconds\":{age:.3}}}"));
        respond(status, "application/json", body)
    }

    async fn route(&self, request: Request<Incoming>, peer: SocketAddr, scheme: &'static str) -> Answered {
        match (request.method(), request.uri().path()) {
            // As stock's: 200 while serving, a stale catalog included (`/ready` says).
            (&Method::GET, "/health") => respond(StatusCode::OK, "text/plain", Bytes::new()),
            (&Method::GET, "/ready") => self.ready(),
            (&Method::GET, "/metrics") if matches!(self.options.metrics, MetricsExposure::SamePort) => {
                self.render_metrics()
            }
            (&Method::POST, "/get-online-features") => {
                let (parts, body) = request.into_parts();
                let (body, reservation) = match self.read_body(&parts, body).await {
                    Ok(read) => read,
                    Err(refused) => return refused.answer(),
                };
                // An answer kept for this body costs what `/health` does: it needs no
                // place among the reads (in a repo with auth, once allowed).
                if self.access.is_none() {
                    if let Some(kept) = self.kept_answer(&body) {
                        return kept;
                    }
                }
                let authorization = parts.headers.get(AUTHORIZATION).map(HeaderValue::as_bytes);
                // A place is taken once the body is in: a slow client holds none.
                let native = match self.enter_read().await {
                    Ok(_place) => self.online(&body, authorization, reservation).await,
                    Err(why) => return shed(&why),
                };
                match native {
                    Some(response) => response,
                    None => self.fall_back(parts, body, peer, scheme).await,
                }
            }
            (&Method::POST, path @ ("/push" | "/write-to-online-store")) => {
                let push = path == "/push";
                let (parts, body) = request.into_parts();
                let (body, reservation) = match self.read_body(&parts, body).await {
                    Ok(read) => read,
                    Err(refused) => return refused.answer(),
                };
                let authorization = parts.headers.get(AUTHORIZATION).map(HeaderValue::as_bytes);
                let native = match self.enter_read().await {
                    Ok(_place) => self.write(push, &body, authorization, reservation).await,
                    Err(why) => return shed(&why),
                };
                match native {
                    Some(response) => response,
                    None => self.fall_back(parts, body, peer, scheme).await,
                }
            }
            _ => {
                let (parts, body) = request.into_parts();
                match self.read_body(&parts, body).await {
                    Ok((body, _reservation)) => self.fall_back(parts, body, peer, scheme).await,
                    Err(refused) => refused.answer(),
                }
            }
        }
    }

    /// A request refused for want of room in the memory budget, counted.
    fn request_over_budget(&self) -> BodyRefused {
        self.metrics.refused(Refused::MemoryBudget);
        BodyRefused {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: REQUEST_OVER_BUDGET.to_owned(),
        }
    }

    /// The whole body, within the size limit, the body-read timeout and the memory
    /// budget (reserved as it arrives). A declared length over the limit is refused
    /// before anything is read, so no `100 Continue` is sent for it.
    async fn read_body(
        &self,
        parts: &hyper::http::request::Parts,
        mut body: Incoming,
    ) -> Result<(Bytes, Reservation), BodyRefused> {
        let limit = self.options.max_body_bytes;
        let too_large = || {
            self.metrics.refused(Refused::BodyTooLarge);
            BodyRefused {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                message: format!("the request body is over {limit} bytes (--max-body-bytes)"),
            }
        };
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(too_large());
        }
        let mut reservation = self.budget.reservation();
        let mut reserved = declared.map_or(0, |length| length as usize);
        if !reservation.grow(reserved) {
            return Err(self.request_over_budget());
        }
        let mut data: Vec<u8> = Vec::with_capacity(reserved);
        let deadline = tokio::time::Instant::now() + self.options.timeouts.body_read;
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => {
                    self.metrics.refused(Refused::BodyTimeout);
                    return Err(BodyRefused {
                        status: StatusCode::REQUEST_TIMEOUT,
                        message: format!(
                            "the request body did not arrive within {} s (--body-timeout)",
                            self.options.timeouts.body_read.as_secs_f64()
                        ),
                    });
                }
                Ok(None) => break,
                Ok(Some(Err(err))) => {
                    return Err(BodyRefused {
                        status: StatusCode::BAD_REQUEST,
                        message: format!("cannot read the request body: {err}"),
                    })
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(chunk) = frame.into_data() else { continue };
            let needed = data.len() + chunk.len();
            if needed > limit {
                return Err(too_large());
            }
            if needed > reserved {
                if !reservation.grow(needed - reserved) {
                    return Err(self.request_over_budget());
                }
                reserved = needed;
            }
            data.extend_from_slice(&chunk);
        }
        Ok((Bytes::from(data), reservation))
    }

    /// The answer kept for `body`, while every near-cache entry it was read from is
    /// current under the catalog in service.
    fn kept_answer(&self, body: &[u8]) -> Option<Answered> {
        let (cache, memo) = self.client.near_cache().zip(self.memo.as_ref())?;
        let catalog = self.catalogs_served.load(Ordering::Relaxed);
        let answer = memo.answer(body, catalog, cache)?;
        Some(respond(StatusCode::OK, "application/json", answer))
    }

    /// The native answer, or `None` for Feast's.
    async fn online(
        &self,
        body: &[u8],
        authorization: Option<&[u8]>,
        mut reservation: Reservation,
    ) -> Option<Answered> {
        let catalog = self.catalog();
        let parsed = online::parse(body)?;
        if self.access.is_some() {
            if !self.allows(authorization, &parsed.asked()).await {
                return None;
            }
            if let Some(kept) = self.kept_answer(body) {
                return Some(kept);
            }
        }
        let answered = self
            .read_natively(&catalog, &parsed, Format::Json, &mut reservation)
            .await;
        match answered {
            Ok(Some(Answer::Written { body: json, stamps })) => {
                let kept = match (&self.memo, stamps) {
                    (Some(memo), Some(stamps)) => memo.keep(body, catalog.generation, stamps, json),
                    _ => Err(json),
                };
                // A kept answer is counted within the memo's bound rather than the budget.
                let answer = kept.unwrap_or_else(|json| reservation.hold(json));
                Some(respond(StatusCode::OK, "application/json", answer))
            }
            Ok(Some(Answer::Unsupported)) | Ok(None) => None,
            Err(Refusal::OverLimit(over)) => Some(refuse(StatusCode::PAYLOAD_TOO_LARGE, &over.to_string())),
            Err(Refusal::OverBudget) => Some(shed(ANSWER_OVER_BUDGET)),
            Err(Refusal::TransformsBusy(busy)) => Some(shed(&busy.message())),
            Err(Refusal::Redis(err)) => Some(store_failed(&err)),
        }
    }

    /// A push (or a write to the online store) written natively: Feast's answer, `None`
    /// for a request the native path leaves to Feast. Its `df` is read (and the memory it
    /// takes reserved) once the request is allowed.
    async fn write(
        &self,
        push: bool,
        body: &[u8],
        authorization: Option<&[u8]>,
        mut reservation: Reservation,
    ) -> Option<Answered> {
        let catalog = self.catalog();
        let write = match push {
            true => push::parse_push(body, &catalog.pushes, &catalog.writable),
            false => push::parse_write(body, &catalog.writable),
        }?;
        if !self.allows(authorization, &write.asked()).await {
            return None;
        }
        // The columns, their Arrow batch and the rows encoded from it.
        if !reservation.grow(body.len().saturating_mul(WRITE_BYTES_PER_BODY_BYTE)) {
            self.metrics.refused(Refused::MemoryBudget);
            return Some(shed(REQUEST_OVER_BUDGET));
        }
        let columns = push::columns(body)?;
        match push::write(&self.client, &write, &columns).await {
            // Feast's push answers an empty 200; its write, its handler's `None`.
            Ok(true) if push => Some(Response::new(Full::new(Bytes::new()))),
            Ok(true) => Some(respond(StatusCode::OK, "application/json", "null")),
            Ok(false) => None,
            Err(err) => {
                self.metrics.redis_error();
                Some(store_failed(&err))
            }
        }
    }

    /// Whether Feast's auth gives `authorization` what it `asked` natively (always, in a
    /// repo without `auth`).
    pub(super) async fn allows(&self, authorization: Option<&[u8]>, asked: &Asked) -> bool {
        let Some(access) = &self.access else {
            return true;
        };
        match access.verdict(authorization, asked).await {
            Verdict::Kept => true,
            Verdict::Decided => {
                self.metrics.auth_decided();
                true
            }
            Verdict::ToFeast => false,
        }
    }

    /// `parsed` read from Redis and written in `format`, within the request limits and
    /// the memory budget; `None` for a request the native path leaves to Feast.
    pub(super) async fn read_natively(
        &self,
        catalog: &Catalog,
        parsed: &online::OnlineRequest<'_>,
        format: Format,
        reservation: &mut Reservation,
    ) -> Result<Option<Answer>, Refusal> {
        if let Err(over) = online::check_limits(catalog, parsed, &self.options.limits) {
            self.metrics.refused(match over {
                online::OverLimit::Rows { .. } => Refused::TooManyRows,
                online::OverLimit::Cells { .. } => Refused::TooManyCells,
            });
            return Err(Refusal::OverLimit(over));
        }
        let Some(resolved) = online::resolve(catalog, parsed, self.options.answer_shape) else {
            return Ok(None);
        };
        let over_budget = || {
            self.metrics.refused(Refused::MemoryBudget);
            Refusal::OverBudget
        };
        if !reservation.grow(resolved.estimated_bytes()) {
            return Err(over_budget());
        }
        let transforms = self.transforms.as_ref();
        match online::answer(&self.client, &resolved, format, transforms, |bytes| {
            reservation.grow(bytes)
        })
        .await
        {
            Ok(Some(answer)) => Ok(Some(answer)),
            Ok(None) => Err(over_budget()),
            Err(online::ReadError::TransformsBusy(busy)) => {
                self.metrics.refused(Refused::TransformQueueTimeout);
                Err(Refusal::TransformsBusy(busy))
            }
            Err(online::ReadError::Store(err)) => {
                self.metrics.redis_error();
                Err(Refusal::Redis(err))
            }
        }
    }

    /// A place among the reads in service, or why the request is shed.
    pub(super) async fn enter_read(&self) -> Result<Place<'_>, String> {
        self.reads.enter().await.map_err(|why| {
            self.metrics.refused(Refused::Overloaded);
            match why {
                Shed::QueueFull => format!(
                    "the server has {} requests waiting to be read already (--max-concurrent-reads): retry shortly",
                    self.options.max_concurrent_reads
                ),
                Shed::Waited(waited) => format!(
                    "the request waited {:.1} ms for a read in service to end (--max-concurrent-reads; under overload --read-queue-timeout): retry shortly",
                    waited.as_secs_f64() * 1e3
                ),
            }
        })
    }

    /// A reservation of the memory budget, empty to begin with.
    pub(super) fn reservation(&self) -> Reservation {
        self.budget.reservation()
    }

    pub(super) fn serving_version(&self) -> &str {
        &self.options.serving_version
    }

    /// Feast's app's answer to an HTTP request.
    async fn fall_back(
        &self,
        parts: hyper::http::request::Parts,
        body: Bytes,
        client: SocketAddr,
        scheme: &'static str,
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
        let answer = self
            .to_feast(
                parts.method.as_str().to_owned(),
                path,
                headers,
                body,
                client,
                scheme,
            )
            .await;
        match answer {
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
            Err(NotAnswered::Shed(message)) => shed(&message),
            Err(NotAnswered::Dropped) => {
                feast_error(StatusCode::INTERNAL_SERVER_ERROR, "Feast's app gave no answer")
            }
        }
    }

    /// Feast's app's answer. A request waits for a place among `fallback.concurrency`
    /// for at most `fallback.queue_timeout`, behind at most `fallback.queue` others;
    /// past either it is shed. Its client leaving cancels it in Feast's app.
    pub(super) async fn to_feast(
        &self,
        method: String,
        path: String,
        headers: Vec<(String, Vec<u8>)>,
        body: Bytes,
        client: SocketAddr,
        scheme: &'static str,
    ) -> Result<FallbackResponse, NotAnswered> {
        let limits = self.options.fallback;
        let waiting = Waiting(&self.fallback_waiting);
        if self.fallback_waiting.fetch_add(1, Ordering::Relaxed) >= limits.queue {
            self.metrics.refused(Refused::FallbackQueueFull);
            return Err(NotAnswered::Shed(format!(
                "Feast's app has {} requests waiting already (--fallback-queue): retry shortly",
                limits.queue
            )));
        }
        let place = tokio::time::timeout(
            limits.queue_timeout,
            Arc::clone(&self.fallback_places).acquire_owned(),
        )
        .await;
        drop(waiting);
        let Ok(Ok(place)) = place else {
            self.metrics.refused(Refused::FallbackQueueTimeout);
            return Err(NotAnswered::Shed(format!(
                "Feast's app could not take the request within {} s (--fallback-queue-timeout): retry shortly",
                limits.queue_timeout.as_secs_f64()
            )));
        };
        let (sender, answer) = oneshot::channel();
        let id = self.next_fallback.fetch_add(1, Ordering::Relaxed);
        self.metrics.fallback();
        self.fallback.submit(FallbackRequest {
            id,
            method,
            path,
            headers,
            body,
            client,
            scheme,
            reply: FallbackReply {
                sender,
                _place: place,
            },
        });
        let mut cancel = CancelOnDrop {
            fallback: &*self.fallback,
            id,
            answered: false,
        };
        let answer = answer.await;
        cancel.answered = true;
        answer.map_err(|_| NotAnswered::Dropped)
    }
}
