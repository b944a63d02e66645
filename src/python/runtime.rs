//! The tokio runtime that runs every Redis request, and the one way Python code
//! enters it: with the GIL released.

use std::future::Future;
use std::sync::Mutex;

use pyo3::prelude::*;
use tokio::runtime::Runtime;

// A forked child (gunicorn workers of `feast serve`) inherits the runtime but not its
// threads: it builds its own. The parent's is leaked in the child, because dropping
// it would wait for threads that do not exist there.
static RUNTIME: Mutex<Option<(u32, &'static Runtime)>> = Mutex::new(None);

fn runtime() -> PyResult<&'static Runtime> {
    let mut guard = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    let pid = std::process::id();
    if let Some((owner, runtime)) = *guard {
        if owner == pid {
            return Ok(runtime);
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("feast-redis-rs")
        .enable_all()
        .build()
        .map_err(|err| {
            pyo3::exceptions::PyRuntimeError::new_err(format!("cannot start the I/O runtime: {err}"))
        })?;
    let runtime: &'static Runtime = Box::leak(Box::new(runtime));
    *guard = Some((pid, runtime));
    Ok(runtime)
}

/// Runs `future` to completion on the runtime, with the GIL released meanwhile.
pub fn block_on<F>(py: Python<'_>, future: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let runtime = runtime()?;
    Ok(py.detach(|| runtime.block_on(future)))
}
