//! The tokio runtimes that run every Redis request, and the one way Python code enters
//! them: with the GIL released.
//!
//! Each calling thread drives its own current-thread runtime, so a request's I/O runs
//! on the thread that waits for it: no hand-off to a worker thread and back on every
//! round trip, and threads wait for Redis in parallel. Connections are per thread too
//! (see `redis::Pool`), since a connection's task runs on the runtime that opened it.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::Runtime;

thread_local! {
    // After a fork (gunicorn workers of `feast serve`) the child builds its own
    // runtime; the parent's is leaked there, as dropping it could wait on I/O state
    // that belongs to the parent.
    static RUNTIME: RefCell<Option<(u32, Runtime)>> = const { RefCell::new(None) };
}

/// How often a waiting call looks at Python's pending signals: Ctrl-C interrupts a call
/// stalled on Redis within this time, not after the command timeout.
const SIGNAL_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Waits for `future`, raising what Python's signal handlers raise (`KeyboardInterrupt`)
/// as soon as a signal arrives. An interrupted request is dropped with its connection,
/// so the next call starts on a fresh one.
async fn interruptible<F: Future>(future: F) -> PyResult<F::Output> {
    tokio::pin!(future);
    loop {
        tokio::select! {
            output = &mut future => return Ok(output),
            _ = tokio::time::sleep(SIGNAL_CHECK_INTERVAL) => {
                Python::attach(|py| py.check_signals())?;
            }
        }
    }
}

/// Runs `future` to completion on this thread's runtime, with the GIL released; with
/// `spin_wait`, the thread may spin for replies (`redis::spin_wait`), as it has nothing
/// else to do.
pub fn block_on<F>(py: Python<'_>, spin_wait: bool, future: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    py.detach(|| {
        RUNTIME.with(|cell| {
            let mut slot = cell.borrow_mut();
            let pid = crate::redis::note_process_id();
            if slot.as_ref().is_none_or(|(owner, _)| *owner != pid) {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|err| {
                        pyo3::exceptions::PyRuntimeError::new_err(format!(
                            "cannot start the I/O runtime: {err}"
                        ))
                    })?;
                if let Some(inherited) = slot.replace((pid, runtime)) {
                    std::mem::forget(inherited);
                }
            }
            let (_, runtime) = slot.as_ref().expect("set above");
            crate::redis::spin_wait(spin_wait, || runtime.block_on(interruptible(future)))
        })
    })
}
