//! The `feast_redis_rs._native` extension module: the only place that knows pyo3.

mod encoding;
mod runtime;
mod store;

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    encoding::register(m)?;
    store::register(m)
}
