//! `get_online_features` answered as Arrow columns: the same reads as
//! `read_response`, decoded by each feature's dtype in one pass.

use arrow_array::{ArrayRef, Int64Array};
use std::sync::Arc;

use super::error::StoreError;
use super::read::{read_hashes, HashRead};
use super::response::{entity_keys_of_rows, feature_vectors, response_timestamp, NativeColumn, RowKeys};
use crate::columns::{decode_column, FeatureType};
use crate::encoding::{feature_field, timestamp_field, KeySerializationVersion};
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
    let mut plans: Vec<(RowKeys, Vec<Vec<u8>>)> = Vec::with_capacity(views.len());
    for view in views {
        let rows = entity_keys_of_rows(&view.join_keys, &view.columns, version, project)?;
        let mut fields: Vec<Vec<u8>> = view
            .features
            .iter()
            .map(|f| feature_field(&view.view, f).to_vec())
            .collect();
        fields.push(timestamp_field(&view.view));
        plans.push((rows, fields));
    }
    let reads: Vec<HashRead<'_>> = plans
        .iter()
        .map(|(rows, fields)| HashRead {
            fields,
            keys: &rows.unique_keys,
        })
        .collect();
    let hashes = read_hashes(client, &reads).await?;

    let mut response = ColumnarResponse {
        columns: Vec::new(),
        event_seconds: Vec::with_capacity(views.len()),
        vectors: Vec::new(),
    };
    for ((view, (rows, _)), hashes) in views.iter().zip(&plans).zip(&hashes) {
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
