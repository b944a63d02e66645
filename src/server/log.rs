//! The server's log lines (the access log, warnings): handed to one writer thread through
//! a bounded queue, so a slow, full or closed stderr never blocks a worker nor breaks
//! serving. Lines that do not fit, or that stderr refuses, are dropped and counted.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;

/// Lines waiting for the writer; past this, new lines are dropped.
const QUEUED_LINES: usize = 8192;

pub struct Log {
    queue: SyncSender<String>,
    dropped: Arc<AtomicU64>,
}

impl Log {
    /// Starts the writer thread, writing to stderr.
    pub fn to_stderr() -> Self {
        let (queue, lines) = mpsc::sync_channel::<String>(QUEUED_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let writer_dropped = Arc::clone(&dropped);
        let spawned = std::thread::Builder::new()
            .name("feast-redis-rs-log".into())
            .spawn(move || {
                let stderr = std::io::stderr();
                for line in lines {
                    let mut out = stderr.lock();
                    if out.write_all(line.as_bytes()).and_then(|()| out.flush()).is_err() {
                        writer_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        if spawned.is_err() {
            // Without a writer every line is dropped (and counted), serving goes on.
            dropped.fetch_add(1, Ordering::Relaxed);
        }
        Self { queue, dropped }
    }

    /// Queues `line` (ending in a newline) without waiting.
    pub fn line(&self, line: String) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.queue.try_send(line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
