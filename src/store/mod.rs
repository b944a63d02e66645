//! Feast's online-store operations on Redis, as plans of commands: which keys and hash
//! fields a read touches and how its replies become Feast's answers; which HSET/EXPIRE
//! a write sends after its timestamp check; which keys a delete scans and removes.
//! Everything a view's operations share is computed once into its `ViewPlan`.
//! Knows Feast's format (through `crate::encoding`) and the client; never Python.

mod columnar;
mod delete;
mod error;
mod plan;
mod read;
mod vectors;
mod write;

pub use columnar::{read_columnar, ColumnarResponse, ColumnarView};
pub use delete::{delete_entities, delete_view, scan_keys};
pub use error::{printable_key, StoreError};
pub use plan::{EntityColumn, EntityType, Keys, NativeColumn, RowKeys, ViewPlan, ViewSpec};
pub use read::{read_hashes, read_hashes_stamped, read_rows, stored_timestamp, Hash, HashRead, StoredRow};
pub use vectors::{feature_vectors, read_response, response_timestamp};
pub use write::{write_arrow, write_protos, ProtoRow, WriteSummary};
