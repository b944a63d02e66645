//! `POST /get-online-features` answered natively: the request resolved against the
//! catalog of served views, every view's HMGETs in one batch, the JSON written from the
//! stored bytes. A request this path does not fully understand (on-demand views, request
//! data, versioned refs, values of other types, anything malformed) is not answered
//! here: `resolve` returns `None` and Feast's own server code answers it, with its
//! statuses and errors.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use prost::Message;
use serde::Deserialize;
use serde_json::Value as Json;

use super::json;
use crate::encoding::{Timestamp, Value};
use crate::redis::RedisClient;
use crate::store::{self, EntityColumn, EntityType, HashRead, NativeColumn, StoreError, ViewPlan};

/// A feature view as the server reads it.
pub struct ServedView {
    /// Every feature of the view, and its join keys.
    pub plan: Arc<ViewPlan>,
    /// The view's `current_version_number`, for `feature_view_metadata`.
    pub version: i64,
}

/// A view as a feature service projects it.
pub struct ServedProjection {
    pub view: String,
    /// `projection.name_to_use()`: the prefix of full feature names.
    pub name: String,
    /// The alias, else the view's name: `feature_view_metadata`'s name.
    pub metadata_name: String,
    pub features: Vec<String>,
    /// View join key to the request column that holds it.
    pub join_key_map: HashMap<String, String>,
}

/// What the server serves natively: the registry's feature views and the feature
/// services made only of them, as Python read them at the last refresh.
#[derive(Default)]
pub struct Catalog {
    pub views: HashMap<String, ServedView>,
    pub services: HashMap<String, Vec<ServedProjection>>,
}

/// The body of `POST /get-online-features`, as Feast's server reads it.
#[derive(Deserialize)]
pub struct OnlineRequest {
    #[serde(default)]
    features: Vec<String>,
    #[serde(default)]
    feature_service: Option<String>,
    entities: serde_json::Map<String, Json>,
    #[serde(default)]
    full_feature_names: bool,
    #[serde(default)]
    include_feature_view_version_metadata: bool,
}

/// One view of a resolved request.
struct ViewRead<'a> {
    view: &'a ServedView,
    name: &'a str,
    metadata_name: &'a str,
    /// Positions in `view.plan.features` of the requested features, in request order.
    features: Vec<usize>,
    /// Per join key of the plan, the request column that holds it.
    columns: Vec<&'a str>,
}

/// A request the server answers itself.
pub struct Resolved<'a> {
    views: Vec<ViewRead<'a>>,
    entities: Vec<(String, NativeColumn)>,
    rows: usize,
    full_feature_names: bool,
    include_metadata: bool,
}

fn entity_column(entity_type: EntityType, values: &Json) -> Option<NativeColumn> {
    let values = values.as_array()?;
    Some(match entity_type {
        EntityType::Int64 => NativeColumn::Int64(values.iter().map(Json::as_i64).collect::<Option<_>>()?),
        EntityType::Int32 => NativeColumn::Int32(
            values
                .iter()
                .map(|v| v.as_i64().and_then(|v| i32::try_from(v).ok()))
                .collect::<Option<_>>()?,
        ),
        EntityType::String => NativeColumn::String(
            values
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>()?,
        ),
        EntityType::Bytes | EntityType::Other => return None,
    })
}

/// The views of a request, in the order Feast groups them (first appearance), with
/// their features in request order; `None` for refs this path leaves to Feast.
fn group_refs<'a>(catalog: &'a Catalog, features: &'a [String]) -> Option<Vec<ViewRead<'a>>> {
    let mut views: Vec<ViewRead<'a>> = Vec::new();
    for reference in features {
        let (view_name, feature) = reference.split_once(':')?;
        if view_name.contains('@') || feature.contains(':') {
            return None;
        }
        let (name, view) = catalog.views.get_key_value(view_name)?;
        let position = view.plan.features.iter().position(|f| f.name == feature)?;
        let read = match views.iter_mut().find(|v| v.name == view_name) {
            Some(read) => read,
            None => {
                views.push(ViewRead {
                    view,
                    name,
                    metadata_name: name,
                    features: Vec::new(),
                    columns: view.plan.join_keys.iter().map(String::as_str).collect(),
                });
                views.last_mut().expect("pushed")
            }
        };
        if !read.features.contains(&position) {
            read.features.push(position);
        }
    }
    Some(views)
}

fn service_views<'a>(catalog: &'a Catalog, service: &str) -> Option<Vec<ViewRead<'a>>> {
    catalog
        .services
        .get(service)?
        .iter()
        .map(|projection| {
            let view = catalog.views.get(&projection.view)?;
            let features = projection
                .features
                .iter()
                .map(|f| view.plan.features.iter().position(|p| &p.name == f))
                .collect::<Option<Vec<_>>>()?;
            let columns = view
                .plan
                .join_keys
                .iter()
                .map(|k| projection.join_key_map.get(k).unwrap_or(k).as_str())
                .collect();
            Some(ViewRead {
                view,
                name: &projection.name,
                metadata_name: &projection.metadata_name,
                features,
                columns,
            })
        })
        .collect()
}

/// The request in `body`, or `None` when it is not one (Feast then says why).
pub fn parse(body: &[u8]) -> Option<OnlineRequest> {
    serde_json::from_slice(body).ok()
}

/// The request as the server answers it, or `None` to leave it to Feast.
pub fn resolve<'a>(catalog: &'a Catalog, parsed: &'a OnlineRequest) -> Option<Resolved<'a>> {
    let views = match &parsed.feature_service {
        Some(service) if !service.is_empty() => service_views(catalog, service)?,
        _ => group_refs(catalog, &parsed.features)?,
    };
    if views.is_empty() || parsed.entities.is_empty() {
        return None;
    }
    // Every request column must be a join key of a view, of one type for all of them.
    let mut types: HashMap<&str, EntityType> = HashMap::new();
    for view in &views {
        for (column, entity_type) in view.columns.iter().zip(&view.view.plan.entity_types) {
            if *types.entry(column).or_insert(*entity_type) != *entity_type {
                return None;
            }
        }
    }
    let mut entities = Vec::with_capacity(parsed.entities.len());
    for (name, values) in &parsed.entities {
        let entity_type = *types.get(name.as_str())?;
        entities.push((name.clone(), entity_column(entity_type, values)?));
    }
    let rows = entities[0].1.len();
    let names: HashSet<&str> = entities.iter().map(|(n, _)| n.as_str()).collect();
    if rows == 0
        || entities.iter().any(|(_, c)| c.len() != rows)
        || views.iter().any(|v| v.columns.iter().any(|c| !names.contains(c)))
    {
        return None;
    }
    Some(Resolved {
        views,
        entities,
        rows,
        full_feature_names: parsed.full_feature_names,
        include_metadata: parsed.include_feature_view_version_metadata,
    })
}

/// Starts the next item of a JSON array being written.
fn next_item(out: &mut String) {
    if !out.ends_with('[') {
        out.push(',');
    }
}

fn write_entity_values(out: &mut String, column: &NativeColumn) {
    out.push('[');
    let rows = column.len();
    for row in 0..rows {
        if row > 0 {
            out.push(',');
        }
        match column {
            NativeColumn::Int64(v) => out.push_str(&v[row].to_string()),
            NativeColumn::Int32(v) => out.push_str(&v[row].to_string()),
            NativeColumn::String(v) => json::string(out, &v[row]),
            NativeColumn::Bytes(v) => json::base64(out, &v[row]),
        }
    }
    out.push(']');
}

fn repeated(out: &mut String, item: &str, rows: usize) {
    out.push('[');
    for row in 0..rows {
        if row > 0 {
            out.push(',');
        }
        out.push_str(item);
    }
    out.push(']');
}

/// A JSON array of each row's item, given per unique key.
fn per_row(out: &mut String, items: &[String], row_to_unique: &[u32]) {
    out.push('[');
    for (row, &unique) in row_to_unique.iter().enumerate() {
        if row > 0 {
            out.push(',');
        }
        out.push_str(&items[unique as usize]);
    }
    out.push(']');
}

/// What answering natively came to.
pub enum Answer {
    Json(String),
    /// A stored value of a kind the JSON writer leaves to Feast.
    Unsupported,
}

/// Reads every view of the request in one batch and writes Feast's JSON answer.
pub async fn answer(client: &RedisClient, request: &Resolved<'_>) -> Result<Answer, StoreError> {
    let mut keys = Vec::with_capacity(request.views.len());
    let mut fields = Vec::with_capacity(request.views.len());
    for view in &request.views {
        let plan = &view.view.plan;
        let columns: Vec<&NativeColumn> = view
            .columns
            .iter()
            .filter_map(|name| request.entities.iter().find(|(n, _)| n == name).map(|(_, c)| c))
            .collect();
        keys.push(plan.row_keys(&columns)?);
        let mut read: Vec<Vec<u8>> = view
            .features
            .iter()
            .map(|&i| plan.features[i].field.to_vec())
            .collect();
        read.push(plan.timestamp_field.clone());
        fields.push(read);
    }
    let reads: Vec<HashRead<'_>> = keys
        .iter()
        .zip(&fields)
        .map(|(rows, fields)| HashRead {
            fields,
            keys: &rows.unique_keys,
        })
        .collect();
    let hashes = store::read_hashes(client, &reads).await?;

    let mut names = String::from("[");
    let mut results = String::from("[");
    let mut epoch = String::new();
    json::timestamp(&mut epoch, Timestamp::default());
    for (name, column) in &request.entities {
        next_item(&mut names);
        json::string(&mut names, name);
        next_item(&mut results);
        results.push_str("{\"values\":");
        write_entity_values(&mut results, column);
        results.push_str(",\"statuses\":");
        repeated(&mut results, "\"PRESENT\"", request.rows);
        results.push_str(",\"event_timestamps\":");
        repeated(&mut results, &epoch, request.rows);
        results.push('}');
    }
    let mut metadata: Vec<(&str, i64)> = Vec::new();
    for ((view, rows), hashes) in request.views.iter().zip(&keys).zip(&hashes) {
        let plan = &view.view.plan;
        let timestamps = rows
            .unique_keys
            .iter()
            .zip(hashes)
            .map(|(key, hash)| {
                let stored = hash
                    .last()
                    .map(|bytes| store::stored_timestamp(&plan.view, key, bytes))
                    .transpose()?;
                let mut text = String::new();
                json::timestamp(&mut text, store::response_timestamp(stored));
                Ok(text)
            })
            .collect::<Result<Vec<String>, StoreError>>()?;
        for (k, &feature) in view.features.iter().enumerate() {
            let name = &plan.features[feature].name;
            next_item(&mut names);
            if request.full_feature_names {
                json::string(&mut names, &format!("{}__{name}", view.name));
            } else {
                json::string(&mut names, name);
            }
            let mut rendered = Vec::with_capacity(rows.unique_keys.len());
            for (key, hash) in rows.unique_keys.iter().zip(hashes) {
                let value = hash
                    .get(k)
                    .map(|bytes| {
                        Value::decode(bytes).map_err(|err| StoreError::CorruptValue {
                            view: plan.view.clone(),
                            feature: name.clone(),
                            key: store::printable_key(key),
                            reason: err.to_string(),
                        })
                    })
                    .transpose()?;
                let mut text = String::new();
                if json::value(&mut text, value.as_ref()).is_err() {
                    return Ok(Answer::Unsupported);
                }
                rendered.push(text);
            }
            next_item(&mut results);
            results.push_str("{\"values\":");
            per_row(&mut results, &rendered, &rows.row_to_unique);
            results.push_str(",\"statuses\":");
            repeated(&mut results, "\"PRESENT\"", request.rows);
            results.push_str(",\"event_timestamps\":");
            per_row(&mut results, &timestamps, &rows.row_to_unique);
            results.push('}');
        }
        if request.include_metadata && !metadata.iter().any(|(n, _)| *n == view.metadata_name) {
            metadata.push((view.metadata_name, view.view.version));
        }
    }
    names.push(']');
    results.push(']');
    let mut out = String::with_capacity(names.len() + results.len() + 64);
    out.push_str("{\"metadata\":{\"feature_names\":");
    out.push_str(&names);
    if !metadata.is_empty() {
        out.push_str(",\"feature_view_metadata\":[");
        for (i, (name, version)) in metadata.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('{');
            if !name.is_empty() {
                out.push_str("\"name\":");
                json::string(&mut out, name);
            }
            if *version != 0 {
                if !name.is_empty() {
                    out.push(',');
                }
                out.push_str(&format!("\"version\":{version}"));
            }
            out.push('}');
        }
        out.push(']');
    }
    out.push_str("},\"results\":");
    out.push_str(&results);
    out.push('}');
    Ok(Answer::Json(out))
}
