//! What a client can make the server hold through a connection, and the clocks on it.
//! Each connection is in one phase at a time: reading a request's headers (from its
//! first byte, or from the accept for a new connection), a request in service, or idle
//! between requests. `TimedIo` sits under hyper (and under TLS) and ends the connection
//! when its phase's deadline passes while it waits for bytes, or when a write makes no
//! progress for the write timeout; `Connections` holds every open connection so that
//! the oldest one without a request in service can make room for a new client.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// The clocks of a connection.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// From a new connection's accept, or a request's first byte, to its last header.
    pub header_read: Duration,
    /// Between the end of a response and the first byte of the next request.
    pub keep_alive: Duration,
    /// For all of a request's body.
    pub body_read: Duration,
    /// How long a write may make no progress (a client that stops reading).
    pub write: Duration,
    /// For a TLS handshake.
    pub tls_handshake: Duration,
    /// For all of a streaming gRPC call (health Watch, reflection).
    pub stream: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Headers,
    InService,
    Idle,
    /// Chosen to make room for a new client, or told to close at shutdown.
    Closing,
}

/// Why the server ended a connection, for the metrics.
#[derive(Clone, Copy, Debug)]
pub enum Closed {
    HeaderTimeout,
    KeepAliveTimeout,
    WriteTimeout,
    TlsHandshakeTimeout,
    Evicted,
}

impl Closed {
    pub const ALL: [Closed; 5] = [
        Closed::HeaderTimeout,
        Closed::KeepAliveTimeout,
        Closed::WriteTimeout,
        Closed::TlsHandshakeTimeout,
        Closed::Evicted,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header_timeout",
            Closed::KeepAliveTimeout => "keep_alive_timeout",
            Closed::WriteTimeout => "write_timeout",
            Closed::TlsHandshakeTimeout => "tls_handshake_timeout",
            Closed::Evicted => "evicted",
        }
    }
}

/// Counts of connections the server ended, by reason.
#[derive(Default)]
pub struct ClosedCounts([AtomicU64; Closed::ALL.len()]);

impl ClosedCounts {
    pub fn add(&self, reason: Closed) {
        self.0[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, reason: Closed) -> u64 {
        self.0[reason as usize].load(Ordering::Relaxed)
    }
}

/// One open connection: its phase, since when, and its requests in service (HTTP/2
/// serves several at once; the connection is idle only when none is).
pub struct ConnState {
    phase: Mutex<(Phase, Instant, usize)>,
    close: Notify,
}

impl ConnState {
    fn new() -> Self {
        Self {
            phase: Mutex::new((Phase::Headers, Instant::now(), 0)),
            close: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Phase, Instant, usize)> {
        self.phase.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// hyper has read a request's headers and calls the service.
    pub fn begin_request(&self) {
        let mut phase = self.lock();
        *phase = (Phase::InService, Instant::now(), phase.2 + 1);
    }

    /// The service has answered: the connection waits for the next request.
    pub fn end_request(&self) {
        let mut phase = self.lock();
        phase.2 = phase.2.saturating_sub(1);
        if phase.0 == Phase::InService && phase.2 == 0 {
            *phase = (Phase::Idle, Instant::now(), 0);
        }
    }

    /// Bytes arrived: an idle connection starts reading a request.
    fn read_some(&self) {
        let mut phase = self.lock();
        if phase.0 == Phase::Idle {
            *phase = (Phase::Headers, Instant::now(), 0);
        }
    }

    /// A write made progress: an idle connection still sending its last answer is not
    /// idle yet.
    fn wrote_some(&self) {
        let mut phase = self.lock();
        if phase.0 == Phase::Idle {
            phase.1 = Instant::now();
        }
    }

    /// When the connection must have read more bytes, and what ends it then.
    fn read_deadline(&self, timeouts: &Timeouts) -> Option<(Instant, Closed)> {
        let (phase, since, _) = *self.lock();
        match phase {
            Phase::Headers => Some((since + timeouts.header_read, Closed::HeaderTimeout)),
            Phase::Idle => Some((since + timeouts.keep_alive, Closed::KeepAliveTimeout)),
            Phase::InService => None,
            Phase::Closing => Some((since, Closed::Evicted)),
        }
    }

    /// Marks the connection closing unless a request is in service; returns whether it
    /// was marked (and told).
    pub fn close_unless_busy(&self) -> bool {
        let mut phase = self.lock();
        match phase.0 {
            Phase::InService => false,
            Phase::Closing => true,
            Phase::Headers | Phase::Idle => {
                *phase = (Phase::Closing, Instant::now(), 0);
                drop(phase);
                self.close.notify_one();
                true
            }
        }
    }

    /// Resolves once the connection is told to close.
    pub async fn closing(&self) {
        self.close.notified().await
    }

    fn evictable_since(&self) -> Option<Instant> {
        match *self.lock() {
            (Phase::Headers | Phase::Idle, since, _) => Some(since),
            _ => None,
        }
    }
}

/// Every open connection of a listener.
#[derive(Default)]
pub struct Connections {
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
    next_id: AtomicU64,
}

/// Removes its connection from `Connections` when dropped.
pub struct Registered {
    connections: Arc<Connections>,
    id: u64,
    pub state: Arc<ConnState>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.connections.lock().remove(&self.id);
    }
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register(self: &Arc<Self>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState::new());
        self.lock().insert(id, Arc::clone(&state));
        Registered {
            connections: Arc::clone(self),
            id,
            state,
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Closes the connection that has waited longest without a request in service;
    /// false when every connection has one.
    pub fn evict_oldest_idle(&self) -> bool {
        let oldest = self
            .lock()
            .values()
            .filter_map(|state| state.evictable_since().map(|since| (since, Arc::clone(state))))
            .min_by_key(|(since, _)| *since);
        oldest.is_some_and(|(_, state)| state.close_unless_busy())
    }

    /// Closes every connection without a request in service (shutdown).
    pub fn close_idle(&self) {
        for state in self.lock().values() {
            state.close_unless_busy();
        }
    }
}

/// A connection's socket (or TLS stream's socket) with its phase's clocks.
pub struct TimedIo<S> {
    inner: S,
    state: Arc<ConnState>,
    timeouts: Timeouts,
    closed: Arc<ClosedCounts>,
    read_timer: Pin<Box<Sleep>>,
    write_timer: Pin<Box<Sleep>>,
    write_stalled: bool,
}

impl<S> TimedIo<S> {
    pub fn new(inner: S, state: Arc<ConnState>, timeouts: Timeouts, closed: Arc<ClosedCounts>) -> Self {
        let far = Instant::now() + Duration::from_secs(86_400);
        Self {
            inner,
            state,
            timeouts,
            closed,
            read_timer: Box::pin(tokio::time::sleep_until(far)),
            write_timer: Box::pin(tokio::time::sleep_until(far)),
            write_stalled: false,
        }
    }

    fn timed_out(&self, reason: Closed) -> io::Error {
        self.closed.add(reason);
        io::Error::new(io::ErrorKind::TimedOut, reason.label())
    }

    /// After a write returned Pending: fails once no write has progressed for the
    /// write timeout.
    fn poll_write_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if !self.write_stalled {
            self.write_stalled = true;
            let deadline = Instant::now() + self.timeouts.write;
            self.write_timer.as_mut().reset(deadline);
        }
        ready!(self.write_timer.as_mut().poll(cx));
        Poll::Ready(self.timed_out(Closed::WriteTimeout))
    }

    /// A write's outcome, with the stall clock started, stopped or run out.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    self.write_stalled = false;
                    self.state.wrote_some();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => self.poll_write_stall(cx).map(Err),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedIo<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.state.read_some();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                let Some((deadline, reason)) = this.state.read_deadline(&this.timeouts) else {
                    return Poll::Pending;
                };
                if this.read_timer.deadline() != deadline {
                    this.read_timer.as_mut().reset(deadline);
                }
                ready!(this.read_timer.as_mut().poll(cx));
                Poll::Ready(Err(this.timed_out(reason)))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedIo<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after_write(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => this.poll_write_stall(cx).map(Err),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => this.poll_write_stall(cx).map(Err),
        }
    }
}
