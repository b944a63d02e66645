//! `get_online_features` answered as Arrow columns: every view's reads in one batch,
//! each stored value decoded once, by its feature's dtype. The response's feature
//! vectors (for `.proto`) are built from the same replies only when asked for.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, UInt32Array};
use arrow_select::take::take;

use super::error::{printable_key, StoreError};
use super::plan::{Keys, NativeColumn, RowKeys, ViewPlan};
use super::read::{read_views, Hash};
use super::vectors::{feature_vectors, hash_timestamp};
use crate::columns::{decode_column, ColumnDecoder, FeatureType};
use crate::redis::{RedisClient, Reply};

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
            feature_vectors(
                &view.plan,
                &view.rows,
                &view.hashes,
                view.plan.features.len(),
                false,
                &mut out,
            )?;
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

/// A view's columns, decoded as its replies arrive.
struct ViewDecoder<'a> {
    plan: &'a ViewPlan,
    keys: &'a Keys,
    columns: Vec<ColumnDecoder>,
    seconds: Vec<i64>,
}

/// Decodes a batch's replies as they arrive (`RedisClient::execute_observed`), so the
/// decoding overlaps Redis' execution of the rest of the batch. Anything out of the
/// ordinary (a reply shown again or out of order, an error, a value of another type or
/// a corrupt one) sets it aside: the replies are then decoded once all are in, which
/// gives the same columns, or the error to report.
struct StreamedDecode<'a> {
    views: Vec<ViewDecoder<'a>>,
    /// The view of the next reply, and the index of that view's first reply.
    view: usize,
    view_start: usize,
    /// Replies decoded so far.
    seen: usize,
    set_aside: bool,
}

impl<'a> StreamedDecode<'a> {
    fn new(views: &'a [ColumnarView], rows: &'a [RowKeys], dtypes: &[Vec<FeatureType>]) -> Self {
        let views = views
            .iter()
            .zip(rows)
            .zip(dtypes)
            .map(|((view, rows), dtypes)| {
                let keys = &rows.unique_keys;
                ViewDecoder {
                    plan: view.plan.as_ref(),
                    keys,
                    columns: dtypes
                        .iter()
                        .map(|&ty| ColumnDecoder::new(ty, keys.len()))
                        .collect(),
                    seconds: Vec::with_capacity(keys.len()),
                }
            })
            .collect();
        Self {
            views,
            view: 0,
            view_start: 0,
            seen: 0,
            set_aside: false,
        }
    }

    fn observe(&mut self, index: usize, reply: &Reply) {
        if self.set_aside || index != self.seen || !self.decode(reply) {
            self.set_aside = true;
        } else {
            self.seen += 1;
        }
    }

    /// Decodes the next reply into its view's columns; `false` when this cannot.
    fn decode(&mut self, reply: &Reply) -> bool {
        while let Some(view) = self.views.get(self.view) {
            if self.seen - self.view_start < view.keys.len() {
                break;
            }
            self.view_start += view.keys.len();
            self.view += 1;
        }
        let (Some(view), Reply::Strings(hash)) = (self.views.get_mut(self.view), reply) else {
            return false;
        };
        if hash.len() != view.plan.read_fields.len() {
            return false;
        }
        for (index, column) in view.columns.iter_mut().enumerate() {
            if !matches!(column.push(hash.get(index)), Ok(true)) {
                return false;
            }
        }
        match hash_timestamp(view.plan, &view.keys[self.seen - self.view_start], hash) {
            Ok(timestamp) => {
                view.seconds.push(timestamp.seconds);
                true
            }
            Err(_) => false,
        }
    }

    /// Each view's feature columns and event seconds per unique key, when every reply
    /// was decoded here.
    fn finish(self) -> Option<Vec<(Vec<ArrayRef>, ArrayRef)>> {
        let total: usize = self.views.iter().map(|view| view.keys.len()).sum();
        if self.set_aside || self.seen != total {
            return None;
        }
        let views = self.views.into_iter().map(|mut view| {
            let columns = view.columns.iter_mut().map(ColumnDecoder::finish).collect();
            let seconds: ArrayRef = Arc::new(Int64Array::from(view.seconds));
            (columns, seconds)
        });
        Some(views.collect())
    }
}

/// A view's feature columns and event seconds per unique key, decoded from its
/// replies once all are in; `Ok(None)` when a value is not of its feature's type.
fn decode_view(
    plan: &ViewPlan,
    rows: &RowKeys,
    hashes: &[Hash],
    dtypes: &[FeatureType],
) -> Result<Option<(Vec<ArrayRef>, ArrayRef)>, StoreError> {
    let mut columns = Vec::with_capacity(dtypes.len());
    for (index, &dtype) in dtypes.iter().enumerate() {
        let values = hashes.iter().map(|hash| hash.get(index));
        let column = decode_column(dtype, values).map_err(|invalid| StoreError::CorruptValue {
            view: plan.view.clone(),
            feature: plan.features[index].name.clone(),
            key: printable_key(&rows.unique_keys[invalid.position]),
            reason: invalid.error.to_string(),
        })?;
        match column {
            Some(column) => columns.push(column),
            None => return Ok(None),
        }
    }
    let seconds = rows
        .unique_keys
        .iter()
        .zip(hashes)
        .map(|(key, hash)| hash_timestamp(plan, key, hash).map(|ts| ts.seconds))
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(Some((columns, Arc::new(Int64Array::from(seconds)))))
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
    let mut streamed = StreamedDecode::new(&views, &rows, &dtypes);
    let hashes = read_views(client, &reads, &mut |index, reply| streamed.observe(index, reply)).await?;
    let mut decoded = streamed.finish().map(Vec::into_iter);

    let mut response = ColumnarResponse {
        columns: Vec::new(),
        event_seconds: Vec::with_capacity(views.len()),
        replies: Vec::with_capacity(views.len()),
    };
    for (((view, rows), hashes), dtypes) in views.iter().zip(rows).zip(hashes).zip(&dtypes) {
        let view_columns = match decoded.as_mut().and_then(Iterator::next) {
            Some(view_columns) => view_columns,
            None => match decode_view(&view.plan, &rows, &hashes, dtypes)? {
                Some(view_columns) => view_columns,
                None => return Ok(None),
            },
        };
        let (columns, seconds) = view_columns;
        for column in columns {
            response.columns.push(fan_out(column, &rows)?);
        }
        response.event_seconds.push(fan_out(seconds, &rows)?);
        response.replies.push(ViewReplies {
            plan: view.plan.clone(),
            rows,
            hashes,
        });
    }
    Ok(Some(response))
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::encoding::proto::{Timestamp, Val, Value};
    use crate::redis::Strings;
    use crate::store::plan::{NativeColumn, ViewSpec};

    fn view(name: &str, ids: Vec<i64>) -> ColumnarView {
        let features = [("n", "INT64"), ("s", "STRING")];
        let plan = ViewPlan::new(ViewSpec::of(name, &[("id", "INT64")], &features)).unwrap();
        ColumnarView {
            plan: Arc::new(plan),
            columns: vec![NativeColumn::Int64(ids)],
        }
    }

    /// A hash as stored: `n` (of type `val`), a string, and the event time.
    fn hash(val: Val) -> Reply {
        let n = Value { val: Some(val) }.encode_to_vec();
        let s = Value {
            val: Some(Val::StringVal("text".into())),
        }
        .encode_to_vec();
        let ts = Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }
        .encode_to_vec();
        Reply::Strings(Strings::from_items([Some(&n[..]), Some(&s[..]), Some(&ts[..])]))
    }

    /// What a decoder of `views` finds when shown `shown` (place, reply) in turn.
    fn stream(views: &[ColumnarView], shown: &[(usize, Reply)]) -> Option<Vec<(Vec<ArrayRef>, ArrayRef)>> {
        let rows: Vec<RowKeys> = views
            .iter()
            .map(|v| v.plan.row_keys(&v.columns).unwrap())
            .collect();
        let dtypes: Vec<Vec<FeatureType>> = views
            .iter()
            .map(|v| v.plan.features.iter().map(|f| f.dtype.unwrap()).collect())
            .collect();
        let mut streamed = StreamedDecode::new(views, &rows, &dtypes);
        for (index, reply) in shown {
            streamed.observe(*index, reply);
        }
        streamed.finish()
    }

    #[test]
    fn replies_decoded_as_they_arrive_equal_those_decoded_after() {
        // Two views; the first's rows share a key, so it reads 2 hashes.
        let views = [view("a", vec![1, 2, 1]), view("b", vec![5])];
        let replies = [
            hash(Val::Int64Val(10)),
            hash(Val::Int64Val(20)),
            hash(Val::Int64Val(30)),
        ];
        let shown: Vec<(usize, Reply)> = replies.iter().cloned().enumerate().collect();
        let streamed = stream(&views, &shown).expect("every reply decoded");

        let hashes = |reply: &Reply| match reply {
            Reply::Strings(hash) => hash.clone(),
            _ => unreachable!(),
        };
        let by_view = [
            vec![hashes(&replies[0]), hashes(&replies[1])],
            vec![hashes(&replies[2])],
        ];
        for ((view, hashes), (columns, seconds)) in views.iter().zip(&by_view).zip(&streamed) {
            let rows = view.plan.row_keys(&view.columns).unwrap();
            let dtypes: Vec<FeatureType> = view.plan.features.iter().map(|f| f.dtype.unwrap()).collect();
            let (after, after_seconds) = decode_view(&view.plan, &rows, hashes, &dtypes).unwrap().unwrap();
            assert_eq!(columns.len(), after.len());
            for (streamed, after) in columns.iter().zip(&after) {
                assert_eq!(streamed.to_data(), after.to_data());
            }
            assert_eq!(seconds.to_data(), after_seconds.to_data());
        }
        let (columns, _) = &streamed[0];
        assert_eq!(columns[0].len(), 2);
    }

    #[test]
    fn anything_unusual_leaves_the_replies_to_be_decoded_after() {
        let views = [view("a", vec![1, 2])];
        let good = || hash(Val::Int64Val(1));
        // A reply shown again, as a retried exchange shows it.
        assert!(stream(&views, &[(0, good()), (0, good()), (1, good())]).is_none());
        // Replies missing, or past the last.
        assert!(stream(&views, &[(0, good())]).is_none());
        assert!(stream(&views, &[(0, good()), (1, good()), (2, good())]).is_none());
        // A value of another type than the feature's, an error, a short hash.
        assert!(stream(&views, &[(0, good()), (1, hash(Val::Int32Val(1)))]).is_none());
        assert!(stream(&views, &[(0, Reply::Error("ERR".into())), (1, good())]).is_none());
        let short = Reply::Strings(Strings::from_items([None, None]));
        assert!(stream(&views, &[(0, short), (1, good())]).is_none());
        // A corrupt event time.
        let corrupt = Reply::Strings(Strings::from_items([None, None, Some(&b"\xff\xff"[..])]));
        assert!(stream(&views, &[(0, good()), (1, corrupt)]).is_none());
        assert!(stream(&views, &[(0, good()), (1, good())]).is_some());
    }
}
