//! The server's log lines (the access log, warnings): handed to one writer thread through
//! a bounded queue, so a slow, full or closed stderr never blocks a worker nor breaks
//! serving. Lines that do not fit, or that stderr refuses, are dropped and counted.
//!
//! The writer writes what has queued in one write, then lingers before looking again:
//! under load, lines gather meanwhile and a request's line costs a queue slot, not a
//! system call (a write, or waking a writer that sleeps on the queue).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lines waiting for the writer; past this, new lines are dropped.
const QUEUED_LINES: usize = 8192;
/// What one write takes at most.
const BATCH_BYTES: usize = 64 * 1024;
/// How long the writer lets lines gather after a write.
const LINGER: Duration = Duration::from_millis(1);

/// How long dropping the log waits for the writer to write what is queued.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

pub struct Log {
    /// `None` once dropped: the writer then writes what is left and ends.
    queue: Option<SyncSender<String>>,
    dropped: Arc<AtomicU64>,
    /// Told by the writer when it has ended (in a `Mutex` only to be `Sync`).
    written: Mutex<Receiver<()>>,
}

impl Log {
    /// Starts the writer thread, writing to stderr.
    pub fn to_stderr() -> Self {
        let (queue, lines) = mpsc::sync_channel::<String>(QUEUED_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let writer_dropped = Arc::clone(&dropped);
        let (ended, written) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("feast-redis-rs-log".into())
            .spawn(move || {
                let stderr = std::io::stderr();
                let mut batch = Vec::with_capacity(BATCH_BYTES);
                while let Ok(first) = lines.recv() {
                    // An empty line asks to be told once what was queued before it is written.
                    let mut flush_asked = first.is_empty();
                    batch.extend_from_slice(first.as_bytes());
                    let mut count = 1;
                    while batch.len() < BATCH_BYTES {
                        let Ok(line) = lines.try_recv() else { break };
                        flush_asked |= line.is_empty();
                        batch.extend_from_slice(line.as_bytes());
                        count += 1;
                    }
                    let mut out = stderr.lock();
                    if out.write_all(&batch).and_then(|()| out.flush()).is_err() {
                        writer_dropped.fetch_add(count, Ordering::Relaxed);
                    }
                    drop(out);
                    batch.clear();
                    if flush_asked {
                        let _ = ended.send(());
                    }
                    std::thread::sleep(LINGER);
                }
                let _ = ended.send(());
            });
        if spawned.is_err() {
            // Without a writer every line is dropped (and counted), serving goes on.
            dropped.fetch_add(1, Ordering::Relaxed);
        }
        Self {
            queue: Some(queue),
            dropped,
            written: Mutex::new(written),
        }
    }

    /// Queues `line` (ending in a newline) without waiting.
    pub fn line(&self, line: String) {
        let Some(queue) = &self.queue else { return };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = queue.try_send(line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until what is queued now is written, for `within` at most.
    pub fn flush(&self, within: Duration) {
        let Some(queue) = &self.queue else { return };
        if queue.try_send(String::new()).is_ok() {
            let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
            let _ = written.recv_timeout(within);
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Log {
    /// Lets the writer write what is queued, for `FLUSH_WAIT` at most (stderr may be stuck).
    fn drop(&mut self) {
        self.queue = None;
        let written = self.written.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = written.recv_timeout(FLUSH_WAIT);
    }
}
