//! What `make bench` measures beside the store: kept out of the store's classes.

use pyo3::prelude::*;

use super::runtime::block_on;
use super::store::RedisStoreClient;
use crate::store::{self, HashRead, Keys};

/// `(keys, fields)`: the fields to read from each key.
#[derive(FromPyObject)]
struct KeysAndFields(Vec<Vec<u8>>, Vec<Vec<u8>>);

/// The client-side floor of a read: for each `(keys, fields)` group, one HMGET of
/// `fields` per key, all in one batch through `client`, nothing decoded. Returns how
/// many fields were found.
#[pyfunction]
fn pipelined_hmget(py: Python<'_>, client: &RedisStoreClient, reads: Vec<KeysAndFields>) -> PyResult<usize> {
    let client = client.client();
    let keys: Vec<Keys> = reads
        .iter()
        .map(|KeysAndFields(keys, _)| keys.iter().collect())
        .collect();
    let hashes = block_on(py, true, async {
        let reads: Vec<HashRead<'_>> = reads
            .iter()
            .zip(&keys)
            .map(|(KeysAndFields(_, fields), keys)| HashRead::uncached(fields, keys))
            .collect();
        store::read_hashes(client, &reads).await
    })??;
    Ok(hashes
        .iter()
        .flatten()
        .flat_map(|hash| hash.iter().flatten())
        .count())
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(pipelined_hmget, m)?)
}
