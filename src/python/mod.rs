//! The `feast_redis_rs._native` extension module: the only place that knows pyo3.

mod bench;
mod columns;
mod encoding;
mod plan;
mod runtime;
mod server;
mod store;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    crate::configure_allocator();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Latency depends on it several times over: the demo and `--version` say which.
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    m.add("BUILD_PROFILE", profile)?;
    encoding::register(m)?;
    m.add_class::<columns::ColumnarAnswer>()?;
    bench::register(m)?;
    server::register(m)?;
    store::register(m)
}
