//! `get_online_features` answered as Arrow columns: the same reads as
//! `read_response`, decoded by each feature's dtype in one pass.

use arrow_array::{ArrayRef, Int64Array};
use std::sync::Arc;

use super::error::StoreError;
use super::response::{feature_vectors, read_views, response_timestamp, NativeColumn, ViewRead};
use crate::columns::{decode_column, FeatureType};
use crate::encoding::KeySerializationVersion;
use crate::redis::RedisClient;

pub struct ColumnarView {
    pub view: String,
    pub features: Vec<String>,
    pub types: Vec<FeatureType>,
    pub join_keys: Vec<String>,
    pub columns: Vec<NativeColumn>,
}

pub struct ColumnarResponse {
    /// One column per feature of every view, in order.
    pub columns: Vec<ArrayRef>,
    /// Per view, the event time (whole seconds) Feast reports for each request row.
    pub event_seconds: Vec<ArrayRef>,
    /// The views' serialized `FeatureVector`s (response field 2), for `.proto`.
    pub vectors: Vec<u8>,
}

/// Reads every view in one batch; `Ok(None)` when a stored value is not of its
/// feature's declared dtype, so the caller answers through Feast's proto path instead.
pub async fn read_columnar(
    client: &RedisClient,
    project: &str,
    version: KeySerializationVersion,
    views: &[ColumnarView],
) -> Result<Option<ColumnarResponse>, StoreError> {
    let plans = views
        .iter()
        .map(|v| ViewRead::plan(&v.view, &v.features, &v.join_keys, &v.columns, version, project))
        .collect::<Result<Vec<_>, _>>()?;
    let hashes = read_views(client, &plans).await?;

    let mut response = ColumnarResponse {
        columns: Vec::new(),
        event_seconds: Vec::with_capacity(views.len()),
        vectors: Vec::new(),
    };
    for ((view, ViewRead { rows, .. }), hashes) in views.iter().zip(&plans).zip(&hashes) {
        // Checks every stored value and timestamp, naming the key of a corrupt one.
        feature_vectors(
            &view.view,
            &view.features,
            &rows.unique_keys,
            hashes,
            &rows.row_to_unique,
            false,
            &mut response.vectors,
        )?;
        for (index, ty) in view.types.iter().enumerate() {
            let values = rows
                .row_to_unique
                .iter()
                .map(|&u| hashes[u as usize][index].as_deref());
            match decode_column(*ty, values)? {
                Some(column) => response.columns.push(column),
                None => return Ok(None),
            }
        }
        let seconds = hashes
            .iter()
            .map(|hash| response_timestamp(hash[view.features.len()].as_deref()).map(|ts| ts.seconds))
            .collect::<Result<Vec<_>, _>>()?;
        let per_row: Int64Array = rows.row_to_unique.iter().map(|&u| seconds[u as usize]).collect();
        response.event_seconds.push(Arc::new(per_row));
    }
    Ok(Some(response))
}
