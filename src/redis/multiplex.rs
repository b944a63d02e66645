//! A connection shared by every request of a multi-threaded runtime (the server's) to
//! one node: auto-pipelining. A request adds its reply count to a queue and its bytes
//! to the connection, in one step under one lock, so bytes and queue are in the same
//! order. On an idle connection (nothing unanswered, nothing being written) the request
//! writes its bytes itself, at once. On a busy one it appends them to the bytes waiting
//! for the writer task, which writes everything that queued since its last write in one
//! write, after the requests the runtime is about to run have queued theirs: they share
//! the write, and Redis' read. A reader task parses replies in order and hands each
//! request its own. A failure of the connection fails the requests in it; a request
//! dropped or timed out leaves its replies to be read and discarded.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWrite, ReadHalf, WriteHalf};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::connection::{BoxedIo, Connection, NodeAddr, READ_CHUNK};
use super::error::ClientError;
use super::resp::{self, Pipeline, Reply};

/// How much auto-pipelining saved: pipelines sent, and the writes that carried them.
#[derive(Default)]
pub struct PipeliningCounts {
    pub pipelines: AtomicU64,
    pub writes: AtomicU64,
}

pub(super) type Answer = Result<Vec<Reply>, ClientError>;

/// A request whose replies are still to come.
struct Awaiting {
    expected: usize,
    strings_flat: bool,
    reply_to: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct State {
    /// The pipelines queued since the writer last took them.
    outgoing: BytesMut,
    /// Whether the writer is writing what it took: no request may write meanwhile.
    writing: bool,
    /// Every request whose replies are still to come, in the order of its bytes.
    awaiting: VecDeque<Awaiting>,
    /// Set once the connection takes no more requests: it failed, a request on it timed
    /// out, or its node was forgotten.
    closed: bool,
    /// Why it failed: the requests still in it fail with this.
    failure: Option<ClientError>,
}

pub(super) struct Multiplexed {
    addr: NodeAddr,
    state: Mutex<State>,
    /// Taken only while `state` says whose turn it is to write: a request on an idle
    /// connection (with `state` locked), or the writer.
    io: Mutex<WriteHalf<BoxedIo>>,
    /// Requests queued whose replies are not all handed out yet.
    unanswered: AtomicUsize,
    /// Wakes the writer: bytes queued, or the connection closed.
    wake_writer: Notify,
    /// Wakes the reader once the connection is closed.
    wake_reader: Notify,
    counts: Arc<PipeliningCounts>,
}

impl Multiplexed {
    /// Starts the writer and reader of `connection` (freshly handshaken: nothing in
    /// flight, opened on `runtime`) on `runtime`. A closed connection's reader waits for
    /// the replies still to come `drain_timeout` at most.
    pub(super) fn start(
        runtime: &tokio::runtime::Handle,
        connection: Connection,
        addr: NodeAddr,
        drain_timeout: Duration,
        counts: Arc<PipeliningCounts>,
    ) -> Arc<Self> {
        let (reader, writer) = tokio::io::split(connection.io);
        let shared = Arc::new(Self {
            addr,
            state: Mutex::default(),
            io: Mutex::new(writer),
            unanswered: AtomicUsize::new(0),
            wake_writer: Notify::new(),
            wake_reader: Notify::new(),
            counts,
        });
        runtime.spawn(write_requests(Arc::clone(&shared)));
        runtime.spawn(read_replies(
            Arc::clone(&shared),
            reader,
            connection.received,
            drain_timeout,
        ));
        shared
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn is_open(&self) -> bool {
        !self.lock().closed
    }

    fn write_half(&self) -> MutexGuard<'_, WriteHalf<BoxedIo>> {
        self.io.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `pipeline`: written at once on an idle connection, else queued for the
    /// writer's next write. `None` once the connection is closed.
    pub(super) async fn send(&self, pipeline: &Pipeline) -> Option<oneshot::Receiver<Answer>> {
        std::future::poll_fn(|cx| Poll::Ready(self.send_polled(cx, pipeline))).await
    }

    fn send_polled(&self, cx: &mut Context<'_>, pipeline: &Pipeline) -> Option<oneshot::Receiver<Answer>> {
        let (reply_to, receiver) = oneshot::channel();
        let bytes = pipeline.bytes();
        let mut failed = None;
        {
            let mut state = self.lock();
            if state.closed {
                return None;
            }
            let idle =
                !state.writing && state.outgoing.is_empty() && self.unanswered.load(Ordering::Acquire) == 0;
            state.awaiting.push_back(Awaiting {
                expected: pipeline.len(),
                strings_flat: pipeline.strings_flat(),
                reply_to,
            });
            self.unanswered.fetch_add(1, Ordering::AcqRel);
            self.counts.pipelines.fetch_add(1, Ordering::Relaxed);
            let mut written = 0;
            if idle {
                self.counts.writes.fetch_add(1, Ordering::Relaxed);
                match write_some(&mut self.write_half(), cx, bytes, &mut written) {
                    Poll::Ready(Err(err)) => failed = Some(err),
                    Poll::Ready(Ok(())) => return Some(receiver),
                    // What the socket did not take yet, the writer writes (and flushes).
                    Poll::Pending => {}
                }
            }
            if failed.is_none() {
                state.outgoing.extend_from_slice(&bytes[written..]);
            }
        }
        match failed {
            Some(err) => self.fail(self.lost(err)),
            None => self.wake_writer.notify_one(),
        }
        Some(receiver)
    }

    /// Takes no more requests; those in flight still get their replies (within the
    /// drain timeout).
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.wake_writer.notify_one();
        self.wake_reader.notify_one();
    }

    /// Fails every request in flight with `err` and closes the connection.
    fn fail(&self, err: ClientError) {
        let awaiting = {
            let mut state = self.lock();
            state.closed = true;
            state.failure.get_or_insert(err.clone());
            std::mem::take(&mut state.awaiting)
        };
        self.unanswered.fetch_sub(awaiting.len(), Ordering::AcqRel);
        for request in awaiting {
            let _ = request.reply_to.send(Err(err.clone()));
        }
        self.wake_writer.notify_one();
        self.wake_reader.notify_one();
    }

    fn lost(&self, reason: impl ToString) -> ClientError {
        ClientError::Io {
            addr: self.addr.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Writes `bytes` from `*written` on and flushes them, as far as the socket takes them
/// now; `*written` moves past what it took.
fn write_some(
    io: &mut WriteHalf<BoxedIo>,
    cx: &mut Context<'_>,
    bytes: &[u8],
    written: &mut usize,
) -> Poll<std::io::Result<()>> {
    while *written < bytes.len() {
        match Pin::new(&mut *io).poll_write(cx, &bytes[*written..]) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(taken)) => *written += taken,
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Pending => return Poll::Pending,
        }
    }
    Pin::new(&mut *io).poll_flush(cx)
}

async fn write_requests(shared: Arc<Multiplexed>) {
    let mut sending = BytesMut::new();
    loop {
        shared.wake_writer.notified().await;
        // To the back of the runtime's queue: the requests it is about to run (or whose
        // sockets it is about to read) queue theirs for this same write.
        tokio::task::yield_now().await;
        let closed = {
            let mut state = shared.lock();
            std::mem::swap(&mut state.outgoing, &mut sending);
            state.writing = true;
            state.closed
        };
        if !sending.is_empty() {
            shared.counts.writes.fetch_add(1, Ordering::Relaxed);
        }
        // Also flushes what a request's own write left unflushed (TLS).
        let mut written = 0;
        let result =
            std::future::poll_fn(|cx| write_some(&mut shared.write_half(), cx, &sending, &mut written)).await;
        shared.lock().writing = false;
        if let Err(err) = result {
            shared.fail(shared.lost(err));
            return;
        }
        sending.clear();
        if closed {
            return;
        }
    }
}

/// Why the requests still in flight fail when the reader ends without their replies
/// (its task dropped with the runtime, or a panic).
pub(super) const READER_STOPPED: &str = "the connection's reader stopped";

/// Fails what is still in flight if the reader ends without a reply for it.
struct FailOnExit<'a>(&'a Multiplexed);

impl Drop for FailOnExit<'_> {
    fn drop(&mut self) {
        self.0.fail(self.0.lost(READER_STOPPED));
    }
}

async fn read_replies(
    shared: Arc<Multiplexed>,
    io: ReadHalf<BoxedIo>,
    received: BytesMut,
    drain_timeout: Duration,
) {
    let _fail_on_exit = FailOnExit(&shared);
    // The request whose replies are being parsed, with those parsed so far.
    let mut current: Option<(Awaiting, Vec<Reply>)> = None;
    if let Err(err) = read_until_drained(&shared, io, received, drain_timeout, &mut current).await {
        fail_current(&shared, &mut current, &err);
        shared.fail(err);
    }
}

/// Reads and hands out replies until the connection is closed and nothing is in
/// flight, or it fails.
async fn read_until_drained(
    shared: &Multiplexed,
    mut io: ReadHalf<BoxedIo>,
    mut received: BytesMut,
    drain_timeout: Duration,
    current: &mut Option<(Awaiting, Vec<Reply>)>,
) -> Result<(), ClientError> {
    let mut parse_at = 1;
    let mut drain_until = None;
    loop {
        if received.len() >= parse_at {
            parse_at = hand_out(shared, &mut received, current)?;
        }
        {
            let state = shared.lock();
            if let Some(err) = &state.failure {
                return Err(err.clone());
            }
            if state.closed {
                if current.is_none() && state.awaiting.is_empty() {
                    return Ok(());
                }
                drain_until.get_or_insert_with(|| Instant::now() + drain_timeout);
            }
        }
        received.reserve(READ_CHUNK);
        tokio::select! {
            read = io.read_buf(&mut received) => match read {
                Ok(0) => return Err(shared.lost("Redis closed the connection")),
                Ok(_) => {}
                Err(err) => return Err(shared.lost(err)),
            },
            _ = shared.wake_reader.notified() => {}
            _ = tokio::time::sleep_until(drain_until.unwrap_or_else(Instant::now)), if drain_until.is_some() => {
                return Err(ClientError::Timeout { addr: shared.addr.to_string(), timeout: drain_timeout });
            }
        }
    }
}

fn fail_current(shared: &Multiplexed, current: &mut Option<(Awaiting, Vec<Reply>)>, err: &ClientError) {
    if let Some((request, _)) = current.take() {
        shared.unanswered.fetch_sub(1, Ordering::AcqRel);
        let _ = request.reply_to.send(Err(err.clone()));
    }
}

/// Parses what `received` holds into the replies of the requests in flight, in order,
/// handing each request its replies once all are in. Returns the length `received`
/// must reach before more can be parsed.
fn hand_out(
    shared: &Multiplexed,
    received: &mut BytesMut,
    current: &mut Option<(Awaiting, Vec<Reply>)>,
) -> Result<usize, ClientError> {
    let bytes = received.split().freeze();
    let mut at = 0;
    let protocol = |reply: String| ClientError::Protocol {
        addr: shared.addr.to_string(),
        command: "pipeline",
        reply,
    };
    let needed = loop {
        if at == bytes.len() && current.is_none() {
            break 1;
        }
        let (request, replies) = match current {
            Some(current) => current,
            None => match shared.lock().awaiting.pop_front() {
                Some(request) => {
                    let replies = Vec::with_capacity(request.expected);
                    current.insert((request, replies))
                }
                None => return Err(protocol("a reply to no request".into())),
            },
        };
        let needed = resp::parse_from(
            &bytes,
            &mut at,
            request.expected - replies.len(),
            request.strings_flat,
            replies,
        )
        .map_err(|err| protocol(err.to_string()))?;
        if replies.len() < request.expected {
            break needed;
        }
        let (request, replies) = current.take().expect("matched above");
        shared.unanswered.fetch_sub(1, Ordering::AcqRel);
        let _ = request.reply_to.send(Ok(replies));
    };
    received.extend_from_slice(&bytes[at..]);
    Ok(needed)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread;

    use super::super::connection::{ConnectionGroup, Connector, Pool, Role, Timeouts};
    use super::super::resp::Command;
    use super::super::settings::{ConnectionSettings, Topology};
    use super::*;

    /// The commands complete at the front of `buf` (RESP arrays of bulk strings), taken
    /// from it.
    fn take_commands(buf: &mut Vec<u8>) -> Vec<Vec<Vec<u8>>> {
        fn line(buf: &[u8], at: &mut usize) -> Option<usize> {
            let end = buf[*at..].windows(2).position(|w| w == b"\r\n")? + *at;
            let number = std::str::from_utf8(&buf[*at + 1..end]).ok()?.parse().ok()?;
            *at = end + 2;
            Some(number)
        }
        let mut commands = Vec::new();
        let mut taken = 0;
        'commands: loop {
            let mut at = taken;
            let Some(count) = line(buf, &mut at) else { break };
            let mut args = Vec::with_capacity(count);
            for _ in 0..count {
                let Some(len) = line(buf, &mut at) else {
                    break 'commands;
                };
                if buf.len() < at + len + 2 {
                    break 'commands;
                }
                args.push(buf[at..at + len].to_vec());
                at += len + 2;
            }
            commands.push(args);
            taken = at;
        }
        buf.drain(..taken);
        commands
    }

    /// Answers each command with its last argument as a bulk string, the replies' bytes
    /// written a few at a time so that they arrive split anywhere.
    fn echo_server(listener: TcpListener) {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { return };
            thread::spawn(move || {
                socket.set_nodelay(true).unwrap();
                let mut received = Vec::new();
                let mut chunk = [0; 4096];
                let mut step = 1;
                loop {
                    let read = match socket.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(read) => read,
                    };
                    received.extend_from_slice(&chunk[..read]);
                    let mut replies = Vec::new();
                    for command in take_commands(&mut received) {
                        let last = command.last().unwrap();
                        replies.extend_from_slice(format!("${}\r\n", last.len()).as_bytes());
                        replies.extend_from_slice(last);
                        replies.extend_from_slice(b"\r\n");
                    }
                    for piece in replies.chunks(step) {
                        if socket.write_all(piece).is_err() {
                            return;
                        }
                    }
                    step = step % 7 + 1;
                }
            });
        }
    }

    /// A pool of connections to a new echo server, and its address.
    fn echo_pool() -> (Pool, NodeAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || echo_server(listener));
        let settings = ConnectionSettings::parse(&format!("127.0.0.1:{port}"), Topology::Standalone).unwrap();
        let timeouts = Timeouts {
            connect: Duration::from_secs(2),
            command: Duration::from_secs(5),
        };
        let pool = Pool::new(Connector::new(&settings, timeouts).unwrap(), Role::Data);
        (pool, NodeAddr::new("127.0.0.1", port))
    }

    /// `commands` ECHOs naming the request and round, and the texts they echo.
    fn echoes(request: usize, round: usize, commands: usize) -> (Pipeline, Vec<String>) {
        let mut pipeline = Pipeline::new();
        let texts: Vec<String> = (0..commands)
            .map(|command| format!("{request}-{round}-{command}"))
            .collect();
        for text in &texts {
            pipeline.push(Command::new("ECHO").arg(text));
        }
        (pipeline, texts)
    }

    fn echoed(replies: Vec<Reply>) -> Vec<String> {
        replies
            .iter()
            .map(|reply| String::from_utf8(reply.text().unwrap().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn requests_in_flight_together_each_get_their_own_replies_in_order() {
        let (pool, addr) = echo_pool();
        let pool = Arc::new(pool);
        let group = ConnectionGroup::new();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .on_thread_start(move || group.join())
            .enable_all()
            .build()
            .unwrap();
        let requests = (0..64).map(|request| {
            let pool = Arc::clone(&pool);
            let addr = addr.clone();
            runtime.spawn(async move {
                for round in 0..20 {
                    let (pipeline, expected) = echoes(request, round, 1 + (request + round) % 5);
                    assert_eq!(echoed(pool.send(&addr, &pipeline).await.unwrap()), expected);
                }
            })
        });
        let handles: Vec<_> = requests.collect();
        runtime.block_on(async {
            for handle in handles {
                handle.await.unwrap();
            }
        });
        let (pipelines, writes) = (
            pool.pipelining.pipelines.load(Ordering::Relaxed),
            pool.pipelining.writes.load(Ordering::Relaxed),
        );
        assert!(
            pipelines > 0 && writes < pipelines,
            "{pipelines} pipelines, {writes} writes"
        );
        pool.forget_group(group);
    }

    #[test]
    fn threads_with_runtimes_of_their_own_share_a_connection_when_they_overlap() {
        let (mut pool, addr) = echo_pool();
        pool.share_across_threads();
        let pool = Arc::new(pool);
        let threads: Vec<_> = (0..8)
            .map(|thread_index| {
                let (pool, addr) = (Arc::clone(&pool), addr.clone());
                thread::spawn(move || {
                    // As a Python caller: a runtime of its own, run only while it waits.
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    for round in 0..200 {
                        let (pipeline, expected) =
                            echoes(thread_index, round, 1 + (thread_index + round) % 4);
                        let replies = runtime.block_on(pool.send(&addr, &pipeline)).unwrap();
                        assert_eq!(echoed(replies), expected);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let pipelines = pool.pipelining.pipelines.load(Ordering::Relaxed);
        assert!(pipelines > 0, "no request went through the shared connection");
    }
}
