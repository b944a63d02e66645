//! `get_online_features` answered as Arrow columns: every view's reads in one batch,
//! each stored value decoded once, by its feature's dtype. The response's feature
//! vectors (for `.proto`) are built from the same replies only when asked for.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, UInt32Array};
use arrow_select::take::take;

use super::error::{printable_key, StoreError};
use super::plan::{NativeColumn, RowKeys, ViewPlan};
use super::read::{read_views, Hash};
use super::vectors::{feature_vectors, hash_timestamp};
use crate::columns::{decode_column, FeatureType};
use crate::redis::RedisClient;

/// One view of a request: its plan and each join key's request values.
pub struct ColumnarView {
    pub plan: Arc<ViewPlan>,
    pub columns: Vec<NativeColumn>,
}

/// What a view's read found, kept to build its feature vectors on demand.
struct ViewReplies {
    plan: Arc<ViewPlan>,
    rows: RowKeys,
    hashes: Vec<Hash>,
}

pub struct ColumnarResponse {
    /// One column per feature of every view, in order.
    pub columns: Vec<ArrayRef>,
    /// Per view, the event time (whole seconds) Feast reports for each request row.
    pub event_seconds: Vec<ArrayRef>,
    replies: Vec<ViewReplies>,
}

impl ColumnarResponse {
    /// The views' serialized `FeatureVector`s (response field 2), for `.proto`.
    pub fn feature_vectors(&self) -> Result<Vec<u8>, StoreError> {
        let mut out = Vec::new();
        for view in &self.replies {
            feature_vectors(&view.plan, &view.rows, &view.hashes, false, &mut out)?;
        }
        Ok(out)
    }
}

/// The request rows' values of a column decoded per unique key.
fn fan_out(column: ArrayRef, rows: &RowKeys) -> Result<ArrayRef, StoreError> {
    if rows.is_identity() {
        return Ok(column);
    }
    let indices = UInt32Array::from(rows.row_to_unique.clone());
    take(column.as_ref(), &indices, None).map_err(|err| StoreError::InvalidRequest(err.to_string()))
}

/// Reads every view in one batch; `Ok(None)` when a feature's dtype or a stored value
/// is not one this path maps, so the caller answers through Feast's proto path instead.
pub async fn read_columnar(
    client: &RedisClient,
    views: Vec<ColumnarView>,
) -> Result<Option<ColumnarResponse>, StoreError> {
    let mut dtypes: Vec<Vec<FeatureType>> = Vec::with_capacity(views.len());
    for view in &views {
        match view
            .plan
            .features
            .iter()
            .map(|f| f.dtype)
            .collect::<Option<Vec<_>>>()
        {
            Some(types) => dtypes.push(types),
            None => return Ok(None),
        }
    }
    let rows = views
        .iter()
        .map(|view| view.plan.row_keys(&view.columns))
        .collect::<Result<Vec<_>, _>>()?;
    let reads: Vec<(&ViewPlan, &RowKeys)> = views.iter().map(|v| v.plan.as_ref()).zip(&rows).collect();
    let hashes = read_views(client, &reads).await?;

    let mut response = ColumnarResponse {
        columns: Vec::new(),
        event_seconds: Vec::with_capacity(views.len()),
        replies: Vec::with_capacity(views.len()),
    };
    for (((view, rows), hashes), dtypes) in views.into_iter().zip(rows).zip(hashes).zip(dtypes) {
        let plan = view.plan;
        for (index, dtype) in dtypes.into_iter().enumerate() {
            let values = hashes.iter().map(|hash| hash.get(index));
            let column = decode_column(dtype, values).map_err(|invalid| StoreError::CorruptValue {
                view: plan.view.clone(),
                feature: plan.features[index].name.clone(),
                key: printable_key(&rows.unique_keys[invalid.position]),
                reason: invalid.error.to_string(),
            })?;
            match column {
                Some(column) => response.columns.push(fan_out(column, &rows)?),
                None => return Ok(None),
            }
        }
        let seconds = rows
            .unique_keys
            .iter()
            .zip(&hashes)
            .map(|(key, hash)| hash_timestamp(&plan, key, hash).map(|ts| ts.seconds))
            .collect::<Result<Vec<i64>, _>>()?;
        let seconds: ArrayRef = Arc::new(Int64Array::from(seconds));
        response.event_seconds.push(fan_out(seconds, &rows)?);
        response.replies.push(ViewReplies { plan, rows, hashes });
    }
    Ok(Some(response))
}
