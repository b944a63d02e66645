//! Connections to one Redis node (TCP, TLS or a Unix socket), and the idle ones kept
//! per node and calling thread, dropped when the thread exits. A connection serves one
//! request at a time: the request is written whole, then its replies are parsed as they
//! arrive, so decoding overlaps Redis' execution of the rest of the pipeline. A caller
//! with nothing else to do (`spin_wait`) waits for replies by spinning rather than
//! sleeping, while no other thread waits on Redis. The worker threads of a runtime that
//! serves many requests at once (the server's) join a `ConnectionGroup` instead: their
//! requests share one connection per node and its writes (see `multiplex`). With
//! `auto_pipelining`, threads that run their own runtime (Python callers) share the
//! same way whenever their requests to a node overlap: a lone request keeps the
//! thread's own connection, the others share one that a background I/O thread reads.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::error::ClientError;
use super::multiplex::{Multiplexed, PipeliningCounts, READER_STOPPED};
use super::resp::{self, Command, Pipeline, Reply};
use super::settings::{ConnectionSettings, Secret};
use super::tls;

/// A node's TCP address, or a Unix socket's path with port 0 (which no TCP node has).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeAddr {
    pub host: String,
    pub port: u16,
}

impl NodeAddr {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }

    pub fn unix(path: impl Into<String>) -> Self {
        Self::new(path, 0)
    }

    pub fn is_unix(&self) -> bool {
        self.port == 0
    }

    /// Parses `host:port` as Redis writes it in MOVED/ASK replies; an empty host means
    /// the host of the node that answered.
    pub fn parse_reply(text: &str, answered_by: &NodeAddr) -> Option<Self> {
        let (host, port) = text.rsplit_once(':')?;
        let port = port.parse().ok()?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some(if host.is_empty() {
            Self::new(answered_by.host.clone(), port)
        } else {
            Self::new(host, port)
        })
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unix() {
            write!(f, "unix://{}", self.host)
        } else if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Which kind of server a connection goes to. Sentinels get only the timeouts, as
/// redis-py's `Sentinel` gives them (no password, no TLS, no db).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Data,
    Sentinel,
}

#[derive(Clone, Debug)]
pub struct Timeouts {
    pub connect: Duration,
    pub command: Duration,
}

pub(super) trait Io: AsyncRead + AsyncWrite + Send + Unpin {
    /// The socket under the stream, and whether its bytes are the stream's (not TLS
    /// records): a spinning wait reads those straight from the socket.
    fn socket(&self) -> (socket2::SockRef<'_>, bool);
}

impl Io for TcpStream {
    fn socket(&self) -> (socket2::SockRef<'_>, bool) {
        (socket2::SockRef::from(self), true)
    }
}

#[cfg(unix)]
impl Io for tokio::net::UnixStream {
    fn socket(&self) -> (socket2::SockRef<'_>, bool) {
        (socket2::SockRef::from(self), true)
    }
}

impl Io for tokio_rustls::client::TlsStream<TcpStream> {
    fn socket(&self) -> (socket2::SockRef<'_>, bool) {
        (socket2::SockRef::from(self.get_ref().0), false)
    }
}

thread_local! {
    static SPIN_WAIT: Cell<bool> = const { Cell::new(false) };
    /// The connection group this thread's requests share connections with (`NO_GROUP`:
    /// the thread's own connections).
    static GROUP: Cell<u64> = const { Cell::new(NO_GROUP) };
    static WAITER_ID: u64 = NEXT_WAITER_ID.fetch_add(1, Ordering::Relaxed);
}

/// How long a spinning wait lasts before the thread sleeps until bytes come. Redis
/// answers a pipeline in chunks (one per 16 KiB of commands it reads, ~100 µs apart).
/// A connection whose last request waited longer for its first bytes (a Redis across a
/// network) waits for a request's first bytes by sleeping: spinning would only burn it.
const SPIN_BUDGET: Duration = Duration::from_micros(200);
/// Once two threads have waited on Redis within this time, neither spins for as long:
/// their other work (Python, under one GIL) needs the cores a spinning thread takes.
const SHARED_WAITS_WINDOW: Duration = Duration::from_millis(100);

static NEXT_WAITER_ID: AtomicU64 = AtomicU64::new(1);
const NO_GROUP: u64 = 0;
/// The group of the threads in `NO_GROUP`: the connections they share when their
/// requests overlap, run by `io_runtime`.
const THREADS_GROUP: u64 = u64::MAX;
static NEXT_GROUP: AtomicU64 = AtomicU64::new(1);

/// The runtime of the connections that threads with runtimes of their own share: a
/// thread's runtime runs only while it waits, and a shared connection must be read all
/// the time. One worker thread, started on first use, and again in a forked child.
fn io_runtime() -> std::io::Result<tokio::runtime::Handle> {
    static IO: Mutex<Option<(u32, tokio::runtime::Runtime)>> = Mutex::new(None);
    let mut io = IO.lock().unwrap_or_else(|e| e.into_inner());
    let pid = process_id();
    if let Some((_, runtime)) = io.as_ref().filter(|(owner, _)| *owner == pid) {
        return Ok(runtime.handle().clone());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("feast-redis-rs-io")
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    // The parent's runtime: its thread does not exist in this child, and dropping it
    // would wait for that thread.
    if let Some(inherited) = io.replace((pid, runtime)) {
        std::mem::forget(inherited);
    }
    Ok(handle)
}

/// The worker threads of one multi-threaded runtime whose requests share a connection
/// per node (auto-pipelining). Each worker calls `join` as it starts
/// (`on_thread_start`); the group's connections run on that runtime, and are closed by
/// `RedisClient::forget_group` once it is shut down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionGroup(u64);

impl ConnectionGroup {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(NEXT_GROUP.fetch_add(1, Ordering::Relaxed))
    }

    /// Makes the calling thread's requests use the group's connections.
    pub fn join(self) {
        GROUP.with(|group| group.set(self.0));
    }
}
/// The thread that last entered `spin_wait`.
static LAST_WAITER: AtomicU64 = AtomicU64::new(NO_WAITER);
const NO_WAITER: u64 = 0;
/// Until when (µs after `clock_origin`) no thread spins, since two threads wait on Redis.
static SHARED_UNTIL_MICROS: AtomicU64 = AtomicU64::new(0);
/// Exchanges waiting for replies in this process.
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

fn clock_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Whether this process can give a core to a waiting thread: not on one core.
fn spare_core() -> bool {
    static SPARE: OnceLock<bool> = OnceLock::new();
    *SPARE.get_or_init(|| thread::available_parallelism().is_ok_and(|cores| cores.get() >= 2))
}

/// Whether the calling thread is the only one that waited on Redis lately; notes it.
fn sole_waiter() -> bool {
    let me = WAITER_ID.with(|id| *id);
    let now = clock_origin().elapsed().as_micros() as u64;
    let last = LAST_WAITER.swap(me, Ordering::Relaxed);
    if last != me && last != NO_WAITER {
        SHARED_UNTIL_MICROS.store(now + SHARED_WAITS_WINDOW.as_micros() as u64, Ordering::Relaxed);
        return false;
    }
    now >= SHARED_UNTIL_MICROS.load(Ordering::Relaxed)
}

/// An exchange waiting for its replies, counted in `IN_FLIGHT` while it lives.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        InFlight
    }

    fn alone(&self) -> bool {
        IN_FLIGHT.load(Ordering::Relaxed) == 1
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `f` with this thread waiting for replies by spinning (up to `SPIN_BUDGET` a
/// wait) instead of sleeping, if `allowed`, it is the only thread waiting on Redis
/// lately and a core is spare: on a VM, waking a sleeping thread (and Redis' write that
/// wakes it) costs more than Redis takes to answer a small request. For a thread that
/// waits on one request and does nothing else meanwhile (a Python call); never for a
/// runtime that serves many tasks.
pub fn spin_wait<R>(allowed: bool, f: impl FnOnce() -> R) -> R {
    let spin = allowed && spare_core() && sole_waiter();
    let before = SPIN_WAIT.with(|cell| cell.replace(spin));
    let result = f();
    SPIN_WAIT.with(|cell| cell.set(before));
    result
}

/// Sees each reply of an exchange as soon as it is parsed, with its place in the
/// pipeline. A pipeline sent again (a retry) shows its replies again, from 0.
pub type ReplyObserver<'a> = dyn FnMut(usize, &Reply) + Send + 'a;

/// What a spinning wait for a reply's bytes came to.
enum Spun {
    /// Bytes were read into the connection's buffer.
    Read,
    /// Bytes (TLS records) are waiting for the stream's own read.
    Readable,
    /// None came within the budget.
    Nothing,
}

/// Why opening or using a connection failed; the connection is not used again.
enum Failure {
    Io(std::io::Error),
    Protocol(resp::ProtocolError),
    /// The server's certificate (or the TLS handshake) was refused: no retry can help.
    Tls(String),
}

/// A TLS handshake's error: rustls' own errors are refusals, anything else is I/O.
fn tls_refusal(err: std::io::Error) -> Failure {
    match err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(refusal) => Failure::Tls(refusal.to_string()),
        None => Failure::Io(err),
    }
}

impl From<std::io::Error> for Failure {
    fn from(err: std::io::Error) -> Self {
        Self::Io(err)
    }
}

impl Failure {
    fn into_error(self, addr: &NodeAddr) -> ClientError {
        match self {
            Self::Io(err) => ClientError::Io {
                addr: addr.to_string(),
                reason: err.to_string(),
            },
            Self::Protocol(err) => ClientError::Protocol {
                addr: addr.to_string(),
                command: "pipeline",
                reply: err.to_string(),
            },
            Self::Tls(reason) => ClientError::TlsHandshake {
                addr: addr.to_string(),
                reason,
            },
        }
    }
}

pub(super) type BoxedIo = Box<dyn Io>;

/// Room kept free in the read buffer before each read: most replies arrive in one read.
pub(super) const READ_CHUNK: usize = 64 * 1024;

/// An open, authenticated connection with nothing in flight between requests.
pub struct Connection {
    pub(super) io: BoxedIo,
    pub(super) received: BytesMut,
    /// Where a spinning wait reads bytes from a plain socket.
    scratch: Vec<u8>,
    /// How long the last request waited for the first bytes of its replies.
    first_bytes_wait: Option<Duration>,
}

impl Connection {
    /// Writes `pipeline` and reads one reply per command, showing each to `observe` as
    /// soon as it is parsed.
    async fn exchange(
        &mut self,
        pipeline: &Pipeline,
        observe: &mut ReplyObserver<'_>,
    ) -> Result<Vec<Reply>, Failure> {
        self.io.write_all(pipeline.bytes()).await?;
        self.io.flush().await?;
        let expected = pipeline.len();
        let in_flight = InFlight::enter();
        let sent = Instant::now();
        let spin_allowed = SPIN_WAIT.with(Cell::get);
        // The first wait lasts Redis' answer time: spun only when Redis answers quickly.
        // Later waits are the gaps between the chunks of replies Redis writes.
        let mut spin_now = spin_allowed && self.first_bytes_wait.is_none_or(|wait| wait < SPIN_BUDGET);
        let mut timing_first_bytes = true;
        let mut replies = Vec::with_capacity(expected);
        let mut parse_at = 1;
        loop {
            if timing_first_bytes && !self.received.is_empty() {
                self.first_bytes_wait = Some(sent.elapsed());
                timing_first_bytes = false;
            }
            if self.received.len() >= parse_at {
                let parsed = replies.len();
                parse_at = resp::parse_replies(
                    &mut self.received,
                    expected - replies.len(),
                    pipeline.strings_flat(),
                    &mut replies,
                )
                .map_err(Failure::Protocol)?;
                for (index, reply) in replies.iter().enumerate().skip(parsed) {
                    observe(index, reply);
                }
            }
            if replies.len() == expected {
                return Ok(replies);
            }
            if spin_now
                && in_flight.alone()
                && matches!(self.spin_for_bytes(Instant::now() + SPIN_BUDGET)?, Spun::Read)
            {
                // Back to the runtime between reads: a reply that keeps trickling in
                // still meets the command timeout.
                tokio::task::yield_now().await;
                continue;
            }
            spin_now = spin_allowed;
            self.received.reserve(READ_CHUNK);
            if self.io.read_buf(&mut self.received).await? == 0 {
                return Err(Failure::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// `exchange` for a connection of its own: its replies, or its failure as an error
    /// naming `addr`.
    pub(super) async fn exchange_replies(
        &mut self,
        pipeline: &Pipeline,
        addr: &NodeAddr,
    ) -> Result<Vec<Reply>, ClientError> {
        self.exchange(pipeline, &mut |_, _| {})
            .await
            .map_err(|failure| failure.into_error(addr))
    }

    /// Waits for bytes by spinning until `deadline`, reading them from a plain socket:
    /// tokio would first ask epoll, and the thread might sleep.
    fn spin_for_bytes(&mut self, deadline: Instant) -> std::io::Result<Spun> {
        let (socket, plain) = self.io.socket();
        if plain && self.scratch.is_empty() {
            self.scratch = vec![0; READ_CHUNK];
        }
        let mut byte = [MaybeUninit::uninit()];
        while Instant::now() < deadline {
            let result = match plain {
                true => (&*socket).read(&mut self.scratch),
                false => socket.peek(&mut byte),
            };
            match result {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(read) if plain => {
                    self.received.extend_from_slice(&self.scratch[..read]);
                    return Ok(Spun::Read);
                }
                Ok(_) => return Ok(Spun::Readable),
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
                Err(err) => return Err(err),
            }
        }
        Ok(Spun::Nothing)
    }

    /// Whether the connection can serve another request: nothing unasked-for arrived.
    fn is_clean(&self) -> bool {
        self.received.is_empty()
    }
}

/// Everything needed to open a connection to any node of the deployment.
#[derive(Clone)]
pub struct Connector {
    db: i64,
    username: Option<String>,
    password: Option<Secret>,
    client_name: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    pub timeouts: Timeouts,
}

impl Connector {
    pub fn new(settings: &ConnectionSettings, timeouts: Timeouts) -> Result<Self, ClientError> {
        Ok(Self {
            db: settings.db,
            username: settings.username.clone(),
            password: settings.password.clone(),
            client_name: settings.client_name.clone(),
            tls: settings.tls.as_ref().map(tls::client_config).transpose()?,
            timeouts,
        })
    }

    async fn open(&self, addr: &NodeAddr, role: Role) -> Result<Box<dyn Io>, Failure> {
        if addr.is_unix() {
            #[cfg(unix)]
            return Ok(Box::new(tokio::net::UnixStream::connect(&addr.host).await?));
            #[cfg(not(unix))]
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "Unix sockets exist only on Unix; give host:port instead",
            ));
        }
        let tcp = TcpStream::connect((addr.host.as_str(), addr.port)).await?;
        tcp.set_nodelay(true)?;
        match (&self.tls, role) {
            (Some(config), Role::Data) => {
                let name = ServerName::try_from(addr.host.clone())
                    .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidInput, err))?;
                let stream = TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(tls_refusal)?;
                Ok(Box::new(stream))
            }
            _ => Ok(Box::new(tcp)),
        }
    }

    /// The commands that set a new data connection up: credentials, db, client name.
    fn handshake(&self, role: Role) -> Pipeline {
        let mut pipeline = Pipeline::new();
        if role == Role::Sentinel {
            return pipeline;
        }
        if let Some(password) = &self.password {
            let mut auth = Command::new("AUTH");
            if let Some(username) = &self.username {
                auth.arg(username);
            }
            pipeline.push(auth.arg(password.expose()));
        }
        if self.db != 0 {
            pipeline.push(Command::new("SELECT").arg(itoa::Buffer::new().format(self.db)));
        }
        if let Some(name) = &self.client_name {
            pipeline.push(Command::new("CLIENT").arg("SETNAME").arg(name));
        }
        pipeline
    }

    /// Opens a connection, authenticates and selects the db, all within the connect
    /// timeout.
    pub async fn connect(&self, addr: &NodeAddr, role: Role) -> Result<Connection, ClientError> {
        let connect_error = |reason: String| ClientError::Connect {
            addr: addr.to_string(),
            reason,
        };
        let connecting = async {
            let io = self.open(addr, role).await.map_err(|failure| match failure {
                Failure::Tls(reason) => ClientError::TlsHandshake {
                    addr: addr.to_string(),
                    reason,
                },
                Failure::Io(err) => connect_error(err.to_string()),
                Failure::Protocol(err) => connect_error(err.to_string()),
            })?;
            let mut connection = Connection {
                io,
                received: BytesMut::with_capacity(READ_CHUNK),
                scratch: Vec::new(),
                first_bytes_wait: None,
            };
            let handshake = self.handshake(role);
            if handshake.is_empty() {
                return Ok(connection);
            }
            let replies = connection
                .exchange(&handshake, &mut |_, _| {})
                .await
                .map_err(|failure| match failure.into_error(addr) {
                    ClientError::Io { reason, .. } | ClientError::Protocol { reply: reason, .. } => {
                        connect_error(reason)
                    }
                    other => other,
                })?;
            // A new connection's first answer is slow on the server's side too: no
            // measure of how near Redis is.
            connection.first_bytes_wait = None;
            let refused = replies
                .iter()
                .find_map(|reply| Some((reply.error_code()?, reply.error()?)));
            match refused {
                None => Ok(connection),
                Some((code, message)) => {
                    let first_is_auth = self.password.is_some();
                    let auth_refused = matches!(code, "WRONGPASS" | "NOAUTH" | "NOPERM")
                        || (first_is_auth && replies[0].error().is_some());
                    if auth_refused {
                        Err(ClientError::Auth {
                            addr: addr.to_string(),
                            reason: message.to_owned(),
                        })
                    } else {
                        Err(connect_error(message.to_owned()))
                    }
                }
            }
        };
        tokio::time::timeout(self.timeouts.connect, connecting)
            .await
            .map_err(|_| ClientError::Timeout {
                addr: addr.to_string(),
                timeout: self.timeouts.connect,
            })?
    }
}

/// Idle connections kept per node for each thread; more than this are closed.
const MAX_IDLE_PER_NODE: usize = 32;

type NodeConnections = HashMap<NodeAddr, Vec<Connection>>;

/// A pool's idle connections, by calling thread, and its shared ones, by connection
/// group and node. Connections belong to the process that opened them: after a fork
/// (gunicorn workers of `feast serve`) the child opens its own.
struct Connections {
    pid: u32,
    by_thread: HashMap<ThreadId, NodeConnections>,
    by_group: HashMap<u64, HashMap<NodeAddr, Arc<GroupSlot>>>,
}

/// A group's connection to one node, opened by one request at a time: the others wait
/// for it, and share its failure rather than each trying (and timing out) in turn.
#[derive(Default)]
struct GroupSlot {
    /// The group's requests to the node in flight: one alone takes an idle connection
    /// of `alone` and reads its replies itself (no hand-over between tasks, so no
    /// latency added); those that overlap another share `connection`.
    requests: AtomicUsize,
    /// Not per thread: a request's task moves between the runtime's workers.
    alone: Mutex<Vec<Connection>>,
    connection: Mutex<Option<Arc<Multiplexed>>>,
    /// The last attempt's failure, held while connecting.
    connecting: tokio::sync::Mutex<Option<ClientError>>,
    attempts: AtomicU64,
}

/// A request counted in its group slot's `requests` while it lives.
struct GroupRequest(Arc<GroupSlot>);

impl GroupRequest {
    /// Counts a request in; returns it and whether it overlaps another.
    fn enter(slot: Arc<GroupSlot>) -> (Self, bool) {
        let overlaps = slot.requests.fetch_add(1, Ordering::AcqRel) > 0;
        (Self(slot), overlaps)
    }
}

impl Drop for GroupRequest {
    fn drop(&mut self) {
        self.0.requests.fetch_sub(1, Ordering::AcqRel);
    }
}

impl GroupSlot {
    fn open(&self) -> Option<Arc<Multiplexed>> {
        let connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        connection.as_ref().filter(|c| c.is_open()).cloned()
    }

    fn close(&self) {
        self.alone.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let taken = self.connection.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(connection) = taken {
            connection.close();
        }
    }
}

type SharedConnections = Arc<Mutex<Connections>>;

/// Removes a thread's connections from every pool it used when the thread exits, so a
/// thread per request leaves no connection (nor the runtime its socket is registered
/// with) behind.
struct ThreadExit {
    thread: ThreadId,
    pools: Vec<Weak<Mutex<Connections>>>,
}

impl Drop for ThreadExit {
    fn drop(&mut self) {
        for pool in self.pools.drain(..).filter_map(|pool| pool.upgrade()) {
            let removed = lock(&pool).by_thread.remove(&self.thread);
            drop(removed);
        }
    }
}

thread_local! {
    static THREAD_EXIT: RefCell<ThreadExit> = RefCell::new(ThreadExit {
        thread: thread::current().id(),
        pools: Vec::new(),
    });
}

/// The id of this process as last noted (0: not yet), so that pools learn of a fork
/// without a system call per request.
static PROCESS_ID: AtomicU32 = AtomicU32::new(0);

/// Notes this process' id (a system call) and returns it. Code that forks and goes on
/// using a client in the child calls this first (the Python adapter does on every
/// call); pools then open their own connections in the child.
pub fn note_process_id() -> u32 {
    let pid = std::process::id();
    PROCESS_ID.store(pid, Ordering::Relaxed);
    pid
}

pub(super) fn process_id() -> u32 {
    match PROCESS_ID.load(Ordering::Relaxed) {
        0 => note_process_id(),
        pid => pid,
    }
}

fn lock(connections: &Mutex<Connections>) -> std::sync::MutexGuard<'_, Connections> {
    let mut guard = connections.lock().unwrap_or_else(|e| e.into_inner());
    let pid = process_id();
    if guard.pid != pid {
        guard.pid = pid;
        // The parent's sockets: the child must not read the parent's replies from them.
        std::mem::forget(std::mem::take(&mut guard.by_thread));
        std::mem::forget(std::mem::take(&mut guard.by_group));
    }
    guard
}

/// Connections to each node, kept per calling thread: a socket is registered with the
/// runtime that opened it, which for Python callers is the calling thread's. A request
/// takes an idle connection (or opens one) and gives it back when it succeeded; a failed
/// one is closed with the thread's other idle connections to that node, so the client
/// reconnects by itself. A thread's connections are closed when it exits.
pub struct Pool {
    connector: Connector,
    role: Role,
    connections: SharedConnections,
    pub(super) pipelining: Arc<PipeliningCounts>,
    /// Whether requests of threads outside any group share a connection per node when
    /// they overlap (`THREADS_GROUP`).
    share_across_threads: bool,
}

impl Pool {
    pub fn new(connector: Connector, role: Role) -> Self {
        Self {
            connector,
            role,
            connections: Arc::new(Mutex::new(Connections {
                pid: process_id(),
                by_thread: HashMap::new(),
                by_group: HashMap::new(),
            })),
            pipelining: Arc::default(),
            share_across_threads: false,
        }
    }

    /// Requests of threads outside any group share connections when they overlap.
    pub fn share_across_threads(&mut self) {
        self.share_across_threads = true;
    }

    /// The group whose connections this thread's requests share when they overlap.
    fn group(&self) -> u64 {
        match GROUP.with(Cell::get) {
            NO_GROUP if self.share_across_threads => THREADS_GROUP,
            group => group,
        }
    }

    fn take_idle(&self, addr: &NodeAddr) -> Option<Connection> {
        lock(&self.connections)
            .by_thread
            .get_mut(&thread::current().id())
            .and_then(|nodes| nodes.get_mut(addr))
            .and_then(Vec::pop)
    }

    fn give_back(&self, addr: &NodeAddr, connection: Connection) {
        let first_of_thread = {
            let mut guard = lock(&self.connections);
            let first = !guard.by_thread.contains_key(&thread::current().id());
            let idle = guard
                .by_thread
                .entry(thread::current().id())
                .or_default()
                .entry(addr.clone())
                .or_default();
            if idle.len() < MAX_IDLE_PER_NODE {
                idle.push(connection);
            }
            first
        };
        if first_of_thread {
            // A thread whose thread-locals are being destroyed cannot register: its
            // connections are not kept.
            let registered = THREAD_EXIT.try_with(|exit| {
                let mut exit = exit.borrow_mut();
                exit.pools.retain(|pool| pool.strong_count() > 0);
                if !exit
                    .pools
                    .iter()
                    .any(|pool| pool.as_ptr() == Arc::as_ptr(&self.connections))
                {
                    exit.pools.push(Arc::downgrade(&self.connections));
                }
            });
            if registered.is_err() {
                lock(&self.connections).by_thread.remove(&thread::current().id());
            }
        }
    }

    /// Closes this thread's idle connections to `addr`, and its group's shared one.
    pub fn forget(&self, addr: &NodeAddr) {
        let group = self.group();
        let mut connections = lock(&self.connections);
        if let Some(nodes) = connections.by_thread.get_mut(&thread::current().id()) {
            nodes.remove(addr);
        }
        let slot = connections
            .by_group
            .get(&group)
            .and_then(|nodes| nodes.get(addr))
            .cloned();
        drop(connections);
        if let Some(slot) = slot {
            slot.close();
        }
    }

    /// Closes `group`'s connections (once its runtime has stopped).
    pub fn forget_group(&self, group: ConnectionGroup) {
        let removed = lock(&self.connections).by_group.remove(&group.0);
        for slot in removed.into_iter().flat_map(HashMap::into_values) {
            slot.close();
        }
    }

    fn group_slot(&self, group: u64, addr: &NodeAddr) -> Arc<GroupSlot> {
        let mut connections = lock(&self.connections);
        let nodes = connections.by_group.entry(group).or_default();
        match nodes.get(addr) {
            Some(slot) => Arc::clone(slot),
            None => Arc::clone(nodes.entry(addr.clone()).or_default()),
        }
    }

    /// The group's open connection to `addr`, opened if there is none.
    async fn group_connection(
        &self,
        group: u64,
        slot: &GroupSlot,
        addr: &NodeAddr,
    ) -> Result<Arc<Multiplexed>, ClientError> {
        if let Some(connection) = slot.open() {
            return Ok(connection);
        }
        let attempts_seen = slot.attempts.load(Ordering::Acquire);
        let mut last_failure = slot.connecting.lock().await;
        if let Some(connection) = slot.open() {
            return Ok(connection);
        }
        if slot.attempts.load(Ordering::Acquire) != attempts_seen {
            if let Some(err) = &*last_failure {
                return Err(err.clone());
            }
        }
        // A group's runtime runs its connections; the threads' group has the I/O thread.
        let runtime = match group {
            THREADS_GROUP => io_runtime().map_err(|err| ClientError::Io {
                addr: addr.to_string(),
                reason: format!("cannot start the I/O thread of shared connections: {err}"),
            })?,
            _ => tokio::runtime::Handle::current(),
        };
        let (connector, role, node) = (self.connector.clone(), self.role, addr.clone());
        // Opened on that runtime, whose reactor its socket is then registered with.
        let connected = runtime
            .spawn(async move { connector.connect(&node, role).await })
            .await
            .unwrap_or_else(|err| {
                Err(ClientError::Io {
                    addr: addr.to_string(),
                    reason: format!("opening the connection stopped: {err}"),
                })
            });
        slot.attempts.fetch_add(1, Ordering::Release);
        match connected {
            Ok(connection) => {
                *last_failure = None;
                let connection = Multiplexed::start(
                    &runtime,
                    connection,
                    addr.clone(),
                    self.connector.timeouts.command,
                    Arc::clone(&self.pipelining),
                );
                *slot.connection.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&connection));
                Ok(connection)
            }
            Err(err) => {
                *last_failure = Some(err.clone());
                Err(err)
            }
        }
    }

    /// `send_observed` on the group's shared connection to `addr`: the replies are
    /// shown to `observe` once all are in.
    async fn send_shared(
        &self,
        group: u64,
        slot: &GroupSlot,
        addr: &NodeAddr,
        pipeline: &Pipeline,
        observe: &mut ReplyObserver<'_>,
    ) -> Result<Vec<Reply>, ClientError> {
        let (connection, answer) = loop {
            let connection = self.group_connection(group, slot, addr).await?;
            if let Some(answer) = connection.send(pipeline).await {
                break (connection, answer);
            }
        };
        let timeout = self.connector.timeouts.command;
        let replies = match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(answer)) => answer?,
            Ok(Err(_)) => {
                return Err(ClientError::Io {
                    addr: addr.to_string(),
                    reason: READER_STOPPED.into(),
                })
            }
            Err(_) => {
                // Redis may be stuck, or the network path gone: later requests take a
                // new connection; this one's replies are still read, a while.
                connection.close();
                return Err(ClientError::Timeout {
                    addr: addr.to_string(),
                    timeout,
                });
            }
        };
        for (index, reply) in replies.iter().enumerate() {
            observe(index, reply);
        }
        Ok(replies)
    }

    /// Sends `pipeline` to `addr` and returns one reply per command, server errors
    /// included as `Reply::Error` for the caller to route or report.
    pub async fn send(&self, addr: &NodeAddr, pipeline: &Pipeline) -> Result<Vec<Reply>, ClientError> {
        self.send_observed(addr, pipeline, &mut |_, _| {}).await
    }

    /// `send`, showing each reply to `observe` as soon as it arrives.
    pub async fn send_observed(
        &self,
        addr: &NodeAddr,
        pipeline: &Pipeline,
        observe: &mut ReplyObserver<'_>,
    ) -> Result<Vec<Reply>, ClientError> {
        if pipeline.is_empty() {
            return Ok(Vec::new());
        }
        let group = self.group();
        let request = match group {
            NO_GROUP => None,
            _ => {
                let (request, overlaps) = GroupRequest::enter(self.group_slot(group, addr));
                if overlaps {
                    return self.send_shared(group, &request.0, addr, pipeline, observe).await;
                }
                Some(request)
            }
        };
        // A lone request of a thread with its own runtime keeps to the thread's own
        // connections, registered with that runtime.
        let group_alone = request.as_ref().filter(|_| group != THREADS_GROUP);
        let idle = match group_alone {
            Some(request) => request.0.alone.lock().unwrap_or_else(|e| e.into_inner()).pop(),
            None => self.take_idle(addr),
        };
        let mut connection = match idle {
            Some(connection) => connection,
            None => self.connector.connect(addr, self.role).await?,
        };
        let timeout = self.connector.timeouts.command;
        let result = match tokio::time::timeout(timeout, connection.exchange(pipeline, observe)).await {
            Ok(Ok(replies)) => Ok(replies),
            Ok(Err(failure)) => Err(failure.into_error(addr)),
            Err(_) => Err(ClientError::Timeout {
                addr: addr.to_string(),
                timeout,
            }),
        };
        match result {
            Ok(replies) => {
                if connection.is_clean() {
                    match group_alone {
                        Some(request) => {
                            let mut idle = request.0.alone.lock().unwrap_or_else(|e| e.into_inner());
                            if idle.len() < MAX_IDLE_PER_NODE {
                                idle.push(connection);
                            }
                        }
                        None => self.give_back(addr, connection),
                    }
                }
                Ok(replies)
            }
            Err(err) => {
                if err.is_retryable() {
                    self.forget(addr);
                }
                Err(err)
            }
        }
    }
}

/// The shared connections' tasks hold them open: a pool dropped closes them (a group's
/// runtime may be gone already; the I/O thread lives on).
impl Drop for Pool {
    fn drop(&mut self) {
        let groups = std::mem::take(&mut lock(&self.connections).by_group);
        for slot in groups.into_values().flat_map(HashMap::into_values) {
            slot.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::AtomicBool;

    use crate::redis::settings::Topology;

    #[test]
    fn a_reply_that_keeps_trickling_in_meets_the_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        // A bulk string that never ends, each byte well within a spinning wait's budget
        // of the last, so the reader spins from byte to byte: its timeout still holds.
        let server = thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            socket.set_nodelay(true).unwrap();
            let mut request = [0; 1024];
            let _ = std::io::Read::read(&mut socket, &mut request);
            let _ = socket.write_all(b"*1\r\n$100000000\r\n");
            let until = Instant::now() + Duration::from_secs(5);
            while !stopped.load(Ordering::Relaxed) && Instant::now() < until {
                if socket.write_all(b"a").is_err() {
                    break;
                }
                let pause = Instant::now() + Duration::from_micros(5);
                while Instant::now() < pause {
                    std::hint::spin_loop();
                }
            }
        });
        let settings = ConnectionSettings::parse(&format!("127.0.0.1:{port}"), Topology::Standalone).unwrap();
        let timeouts = Timeouts {
            connect: Duration::from_secs(1),
            command: Duration::from_millis(300),
        };
        let pool = Pool::new(Connector::new(&settings, timeouts).unwrap(), Role::Data);
        let mut pipeline = Pipeline::new();
        pipeline.push(Command::new("HMGET").arg("k").arg("f"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let started = Instant::now();
        // As `spin_wait` lets a lone thread wait, without touching which thread waited last.
        SPIN_WAIT.with(|spin| spin.set(true));
        let result = runtime.block_on(pool.send(&NodeAddr::new("127.0.0.1", port), &pipeline));
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        server.join().unwrap();
        assert!(
            matches!(result, Err(ClientError::Timeout { .. })),
            "{:?}",
            result.err()
        );
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn a_thread_spins_only_while_no_other_thread_waits_on_redis() {
        let settle = || thread::sleep(SHARED_WAITS_WINDOW + Duration::from_millis(20));
        assert!(sole_waiter(), "the first thread to wait");
        assert!(!thread::spawn(sole_waiter).join().unwrap(), "a second thread");
        settle();
        assert!(!sole_waiter(), "the other thread was the last to wait");
        assert!(!sole_waiter(), "within the window since");
        settle();
        assert!(sole_waiter(), "alone again, and the window over");
    }
}
