//! Feast's online-store operations on Redis, as plans of commands: which keys and hash
//! fields a read touches and how its replies become Feast's answers; which HSET/EXPIRE
//! a write sends after its timestamp check; which keys a delete scans and removes.
//! Knows Feast's format (through `crate::encoding`) and the client; never Python.

mod columnar;
mod delete;
mod error;
mod read;
mod response;
mod write;

pub use columnar::{read_columnar, ColumnarResponse, ColumnarView};
pub use delete::{delete_entity_values, delete_table, scan_pattern};
pub use error::StoreError;
pub use read::{read_hashes, HashRead};
pub use response::{read_response, NativeColumn, ViewRequest};
pub use write::{
    rows_from_arrow, rows_from_protos, write_rows, ArrowRows, ProtoRow, WriteOptions, WriteRow, WriteSummary,
};
