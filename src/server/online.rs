//! `POST /get-online-features` answered natively: the request resolved against the
//! catalog of served views, every view's HMGETs in one batch, the JSON written from the
//! stored bytes. A request this path does not fully understand (on-demand views, request
//! data, versioned refs, values of other types, anything malformed) is not answered
//! here: `resolve` returns `None` and Feast's own server code answers it, with its
//! statuses and errors.

use std::borrow::Cow;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use prost::Message;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::json;
use super::precomputed::{self, ServedPrecomputed};
use super::push::WritableView;
use super::transform::{status_name, FeatureVector, Rows, Transformed, Transforms, TransformsBusy};
use crate::encoding::proto::Val;
use crate::encoding::Value;
use crate::redis::{EntryStamp, RedisClient};
use crate::store::{
    self, EntityColumn, EntityType, HashRead, Keys, NativeColumn, RowKeys, StoreError, ViewPlan,
};

/// A feature view as the server reads it.
pub struct ServedView {
    /// Every feature of the view, and its join keys.
    pub plan: Arc<ViewPlan>,
    /// The view's `current_version_number`, for `feature_view_metadata`.
    pub version: i64,
    /// Each feature's name as a JSON string, and its full name (`view__feature`):
    /// written once here rather than per answer.
    names: Vec<String>,
    full_names: Vec<String>,
}

impl ServedView {
    /// The view `name` (its key in the catalog), read by `plan`.
    pub fn new(name: &str, plan: Arc<ViewPlan>, version: i64) -> Self {
        let rendered = |text: &str| {
            let mut out = String::new();
            json::string(&mut out, text);
            out
        };
        let names = plan.features.iter().map(|f| rendered(&f.name)).collect();
        let full_names = plan
            .features
            .iter()
            .map(|f| rendered(&format!("{name}__{}", f.name)))
            .collect();
        Self {
            plan,
            version,
            names,
            full_names,
        }
    }
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

/// An on-demand feature view whose sources the server reads (its transformation is
/// run by Feast's own code).
pub struct ServedOnDemandView {
    /// Each source view, and its features the transformation is given.
    pub sources: Vec<(String, Vec<String>)>,
    pub features: Vec<String>,
    /// The request data it needs, from the request's `entities`.
    pub request_fields: Vec<String>,
}

/// What the server serves natively: the registry's feature views, the on-demand views
/// made of them and the feature services made of those (the pre-computed ones read
/// from their vectors), as Python read them at the last refresh.
#[derive(Default)]
pub struct Catalog {
    pub views: HashMap<String, ServedView>,
    pub on_demand: HashMap<String, ServedOnDemandView>,
    pub services: HashMap<String, Vec<ServedProjection>>,
    /// The services of `services` answered from their pre-computed vectors.
    pub precomputed: HashMap<String, ServedPrecomputed>,
    /// The feature views `/push` and `/write-to-online-store` write natively, by name.
    pub writable: HashMap<String, WritableView>,
    /// The push sources pushed to natively, and the views of `writable` each feeds.
    pub pushes: HashMap<String, Vec<String>>,
    /// Which catalog this is, of those the server has served (set when it is served).
    pub generation: u64,
}

/// The body of `POST /get-online-features`, as Feast's server reads it; entity values
/// stay JSON text until their types are known.
#[derive(Deserialize)]
pub struct OnlineRequest<'a> {
    #[serde(default, borrow)]
    features: Vec<JsonStr<'a>>,
    #[serde(default, borrow)]
    feature_service: Option<JsonStr<'a>>,
    #[serde(borrow)]
    entities: Entities<'a>,
    #[serde(default)]
    full_feature_names: bool,
    #[serde(default)]
    include_feature_view_version_metadata: bool,
}

impl<'a> OnlineRequest<'a> {
    /// What the request asks to read, as Feast's auth decides on it.
    pub fn asked(&self) -> super::access::Asked {
        super::access::Asked {
            service: self.feature_service.as_ref().map(|service| service.to_string()),
            features: self.features.iter().map(|feature| feature.to_string()).collect(),
            written: Vec::new(),
        }
    }

    /// A request that came as a protobuf message (gRPC), borrowing its strings and
    /// values.
    pub fn from_message(
        features: impl IntoIterator<Item = &'a str>,
        feature_service: Option<&'a str>,
        entities: impl IntoIterator<Item = (&'a str, &'a [Value])>,
        full_feature_names: bool,
    ) -> Self {
        let borrowed = |text: &'a str| JsonStr(Cow::Borrowed(text));
        let mut columns: Vec<(JsonStr<'a>, EntityValues<'a>)> = Vec::new();
        for (name, values) in entities {
            match columns.iter_mut().find(|(n, _)| **n == *name) {
                Some(column) => column.1 = EntityValues::Message(values),
                None => columns.push((borrowed(name), EntityValues::Message(values))),
            }
        }
        Self {
            features: features.into_iter().map(borrowed).collect(),
            feature_service: feature_service.map(borrowed),
            entities: Entities(columns),
            full_feature_names,
            include_feature_view_version_metadata: false,
        }
    }
}

/// An entity column's values: JSON text until their type is known, or the values of a
/// protobuf message.
enum EntityValues<'a> {
    Json(&'a RawValue),
    Message(&'a [Value]),
}

impl EntityValues<'_> {
    /// How many rows the column has; `None` when it is not a list.
    fn len(&self) -> Option<usize> {
        match self {
            EntityValues::Json(raw) => array_length(raw),
            EntityValues::Message(values) => Some(values.len()),
        }
    }
}

/// A JSON string, borrowed from the request's body unless it has escapes.
struct JsonStr<'a>(Cow<'a, str>);

impl std::ops::Deref for JsonStr<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for Text<'a> {
            type Value = JsonStr<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Borrowed(text)))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Owned(text.to_owned())))
            }
        }

        deserializer.deserialize_str(Text(PhantomData))
    }
}

/// The request's entity columns in their order (a repeated name keeps its first place
/// and its last values, as Feast reads a JSON object or a protobuf map).
struct Entities<'a>(Vec<(JsonStr<'a>, EntityValues<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Entities<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Columns<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for Columns<'a> {
            type Value = Entities<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of entity columns")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut columns: Vec<(JsonStr<'de>, EntityValues<'de>)> = Vec::new();
                while let Some((name, values)) = map.next_entry::<JsonStr<'de>, &'de RawValue>()? {
                    let values = EntityValues::Json(values);
                    match columns.iter_mut().find(|(n, _)| **n == *name) {
                        Some(column) => column.1 = values,
                        None => columns.push((name, values)),
                    }
                }
                Ok(Entities(columns))
            }
        }

        deserializer.deserialize_map(Columns(PhantomData))
    }
}

/// The length of a JSON array, counted without keeping its items; `None` when `raw`
/// is not an array.
fn array_length(raw: &RawValue) -> Option<usize> {
    struct Count;

    impl<'de> Visitor<'de> for Count {
        type Value = usize;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<usize, A::Error> {
            let mut count = 0;
            while items.next_element::<IgnoredAny>()?.is_some() {
                count += 1;
            }
            Ok(count)
        }
    }

    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    deserializer.deserialize_seq(Count).ok()
}

/// What one request may ask for.
#[derive(Clone, Copy, Debug)]
pub struct RequestLimits {
    /// Entity rows.
    pub max_rows: usize,
    /// Entity rows times features.
    pub max_cells: usize,
}

/// A request over a limit, answered with 413 whoever would have answered it.
#[derive(Debug)]
pub enum OverLimit {
    Rows {
        rows: usize,
        max: usize,
    },
    Cells {
        rows: usize,
        features: usize,
        max: usize,
    },
}

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OverLimit::Rows { rows, max } => write!(
                f,
                "the request has {rows} entity rows, over this server's limit of {max} \
                 (--max-entity-rows): split it into requests of at most {max} rows"
            ),
            OverLimit::Cells { rows, features, max } => write!(
                f,
                "the request asks for {rows} entity rows x {features} features = {} values, over \
                 this server's limit of {max} (--max-values-per-request): ask for fewer rows or \
                 features per request",
                rows * features
            ),
        }
    }
}

/// The request in `body`, or `None` when it is not one (Feast then says why).
pub fn parse(body: &[u8]) -> Option<OnlineRequest<'_>> {
    serde_json::from_slice(body).ok()
}

/// Refuses a request over `limits`, natively answered or not: its entity rows are
/// counted without parsing their values, its features are its refs or its service's.
pub fn check_limits(
    catalog: &Catalog,
    request: &OnlineRequest<'_>,
    limits: &RequestLimits,
) -> Result<(), OverLimit> {
    let rows = request
        .entities
        .0
        .iter()
        .filter_map(|(_, values)| values.len())
        .max()
        .unwrap_or(0);
    if rows > limits.max_rows {
        return Err(OverLimit::Rows {
            rows,
            max: limits.max_rows,
        });
    }
    let features = match request
        .feature_service
        .as_deref()
        .and_then(|s| catalog.services.get(s))
    {
        Some(projections) => projections.iter().map(|p| p.features.len()).sum(),
        None => request.features.len(),
    };
    if rows.saturating_mul(features) > limits.max_cells {
        return Err(OverLimit::Cells {
            rows,
            features,
            max: limits.max_cells,
        });
    }
    Ok(())
}

/// One view of a resolved request.
struct ViewRead<'a> {
    view: &'a ServedView,
    name: &'a str,
    metadata_name: &'a str,
    /// Positions in `view.plan.features` of the requested features, in request order.
    features: Vec<usize>,
    /// Positions of the features read only as on-demand views' inputs (read after
    /// `features`, left out of the answer).
    inputs: Vec<usize>,
    /// Per join key of the plan, the request column that holds it.
    columns: Vec<&'a str>,
    /// Per feature of the plan, its full name as JSON, when the prefix is the view's
    /// own name (else it is written per answer).
    full_names: Option<&'a [String]>,
}

/// How `feast serve` of the installed Feast shapes its JSON where releases differ.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnswerShape {
    /// `feature_view_metadata` answered when asked for (Feast 0.67 on; 0.62 to 0.66
    /// read it but leave it out of their JSON).
    pub version_metadata: bool,
    /// A `"status":null` after the results (0.62 and 0.63's response model).
    pub null_status: bool,
}

/// A request the server answers itself.
pub struct Resolved<'a> {
    views: Vec<ViewRead<'a>>,
    /// The on-demand views asked for, by name, and the features asked of them.
    on_demand: Vec<(&'a str, usize)>,
    /// The request's feature references, or its feature service, for Feast's
    /// transformations.
    refs: &'a [JsonStr<'a>],
    service: Option<&'a str>,
    /// The request data columns the on-demand views need, as JSON text.
    request_data: Vec<(&'a str, &'a RawValue)>,
    /// A pre-computed service's vectors and the names its features are answered by
    /// (`views` then answer no feature of their own).
    precomputed: Option<(&'a ServedPrecomputed, Vec<String>)>,
    entities: Vec<(&'a str, NativeColumn)>,
    rows: usize,
    full_feature_names: bool,
    include_metadata: bool,
    null_status: bool,
}

/// The column's values as `entity_type`; `None` when they are not all of it (a value
/// of another kind is left to Feast, which keys it by its own kind).
fn entity_column(entity_type: EntityType, values: &EntityValues<'_>) -> Option<NativeColumn> {
    match values {
        EntityValues::Json(raw) => {
            let text = raw.get();
            Some(match entity_type {
                EntityType::Int64 => NativeColumn::Int64(serde_json::from_str(text).ok()?),
                EntityType::Int32 => NativeColumn::Int32(serde_json::from_str(text).ok()?),
                EntityType::String => NativeColumn::String(serde_json::from_str(text).ok()?),
                EntityType::Bytes | EntityType::Other => return None,
            })
        }
        EntityValues::Message(values) => {
            let kinds = values.iter().map(|value| value.val.as_ref());
            Some(match entity_type {
                EntityType::Int64 => NativeColumn::Int64(
                    kinds
                        .map(|val| match val {
                            Some(Val::Int64Val(v)) => Some(*v),
                            _ => None,
                        })
                        .collect::<Option<_>>()?,
                ),
                EntityType::Int32 => NativeColumn::Int32(
                    kinds
                        .map(|val| match val {
                            Some(Val::Int32Val(v)) => Some(*v),
                            _ => None,
                        })
                        .collect::<Option<_>>()?,
                ),
                EntityType::String => NativeColumn::String(
                    kinds
                        .map(|val| match val {
                            Some(Val::StringVal(v)) => Some(v.clone()),
                            _ => None,
                        })
                        .collect::<Option<_>>()?,
                ),
                EntityType::Bytes | EntityType::Other => return None,
            })
        }
    }
}

/// The read of `view_name` in `views`, added when it is not there yet.
fn view_read<'a, 'v>(
    views: &'v mut Vec<ViewRead<'a>>,
    catalog: &'a Catalog,
    view_name: &str,
) -> Option<&'v mut ViewRead<'a>> {
    let known = match views.iter().position(|v| v.name == view_name) {
        Some(known) => known,
        None => {
            let (name, view) = catalog.views.get_key_value(view_name)?;
            views.push(ViewRead {
                view,
                name,
                metadata_name: name,
                features: Vec::new(),
                inputs: Vec::new(),
                columns: view.plan.join_keys.iter().map(String::as_str).collect(),
                full_names: Some(&view.full_names),
            });
            views.len() - 1
        }
    };
    Some(&mut views[known])
}

/// The views of a request, in the order Feast groups them (first appearance), with
/// their features in request order, and the on-demand views asked for (their sources'
/// features read as inputs); `None` for refs this path leaves to Feast.
#[allow(clippy::type_complexity)]
fn group_refs<'a>(
    catalog: &'a Catalog,
    features: &[JsonStr<'_>],
) -> Option<(Vec<ViewRead<'a>>, Vec<(&'a str, usize)>)> {
    let mut views: Vec<ViewRead<'a>> = Vec::new();
    let mut on_demand: Vec<(&'a str, usize)> = Vec::new();
    for reference in features {
        let (view_name, feature) = reference.split_once(':')?;
        if view_name.contains('@') || feature.contains(':') {
            return None;
        }
        if catalog.on_demand.contains_key(view_name) {
            ask_on_demand(catalog, &mut views, &mut on_demand, view_name, &[feature])?;
            continue;
        }
        let read = view_read(&mut views, catalog, view_name)?;
        let position = read.view.plan.features.iter().position(|f| f.name == feature)?;
        read.inputs.retain(|&input| input != position);
        if !read.features.contains(&position) {
            read.features.push(position);
        }
    }
    Some((views, on_demand))
}

/// Asks on-demand view `name` of `catalog` for `features`: its sources' features are
/// added to `views` as inputs (unless asked for); `None` for a feature it does not have.
fn ask_on_demand<'a>(
    catalog: &'a Catalog,
    views: &mut Vec<ViewRead<'a>>,
    on_demand: &mut Vec<(&'a str, usize)>,
    name: &str,
    features: &[&str],
) -> Option<()> {
    let (name, odfv) = catalog.on_demand.get_key_value(name)?;
    if !features
        .iter()
        .all(|feature| odfv.features.iter().any(|f| f == feature))
    {
        return None;
    }
    match on_demand.iter_mut().find(|(n, _)| *n == name) {
        Some((_, asked)) => *asked += features.len(),
        None => on_demand.push((name, features.len())),
    }
    for (source, source_features) in &odfv.sources {
        let read = view_read(views, catalog, source)?;
        for source_feature in source_features {
            let position = read
                .view
                .plan
                .features
                .iter()
                .position(|f| &f.name == source_feature)?;
            if !read.features.contains(&position) && !read.inputs.contains(&position) {
                read.inputs.push(position);
            }
        }
    }
    Some(())
}

/// The views of feature service `service`, in its order, and its on-demand views (their
/// sources' features read as inputs, after the service's views).
#[allow(clippy::type_complexity)]
fn service_views<'a>(
    catalog: &'a Catalog,
    service: &str,
) -> Option<(Vec<ViewRead<'a>>, Vec<(&'a str, usize)>)> {
    let projections = catalog.services.get(service)?;
    let is_view = |projection: &&ServedProjection| catalog.views.contains_key(&projection.view);
    let mut views = projections
        .iter()
        .filter(is_view)
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
            let own_name = catalog
                .views
                .get_key_value(&projection.view)
                .map(|(name, _)| name);
            Some(ViewRead {
                view,
                name: &projection.name,
                metadata_name: &projection.metadata_name,
                features,
                inputs: Vec::new(),
                columns,
                full_names: (own_name == Some(&projection.name)).then_some(view.full_names.as_slice()),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let mut on_demand = Vec::new();
    for projection in projections.iter().filter(|p| !is_view(p)) {
        let features: Vec<&str> = projection.features.iter().map(String::as_str).collect();
        ask_on_demand(catalog, &mut views, &mut on_demand, &projection.view, &features)?;
    }
    Some((views, on_demand))
}

/// The request as the server answers it, in `shape`, or `None` to leave it to Feast.
pub fn resolve<'a>(
    catalog: &'a Catalog,
    parsed: &'a OnlineRequest<'_>,
    shape: AnswerShape,
) -> Option<Resolved<'a>> {
    // Feast passes over an empty service and reads the features.
    let service = parsed
        .feature_service
        .as_deref()
        .filter(|service| !service.is_empty());
    let (mut views, on_demand) = match service {
        Some(service) => service_views(catalog, service)?,
        None => group_refs(catalog, &parsed.features)?,
    };
    let precomputed = service
        .and_then(|service| catalog.precomputed.get(service))
        .map(|served| {
            let mut names = Vec::new();
            for view in &mut views {
                for feature in std::mem::take(&mut view.features) {
                    names.push(match parsed.full_feature_names {
                        true => full_name(view, feature),
                        false => view.view.plan.features[feature].name.clone(),
                    });
                }
            }
            (served, names)
        });
    if views.is_empty() || parsed.entities.0.is_empty() {
        return None;
    }
    // Every request column must be a join key of a view, of one type for all of them.
    // (A request has a handful of columns: lists beat hash maps here.)
    let mut types: Vec<(&str, EntityType)> = Vec::new();
    for view in &views {
        for (&column, &entity_type) in view.columns.iter().zip(&view.view.plan.entity_types) {
            match types.iter().find(|(known, _)| *known == column) {
                Some((_, known)) if *known != entity_type => return None,
                Some(_) => {}
                None => types.push((column, entity_type)),
            }
        }
    }
    // The request data the on-demand views asked for need (a handful of names).
    let needed: Vec<&str> = on_demand
        .iter()
        .flat_map(|(name, _)| catalog.on_demand[*name].request_fields.iter().map(String::as_str))
        .collect();
    let mut entities = Vec::with_capacity(parsed.entities.0.len());
    let mut request_data = Vec::new();
    for (name, values) in &parsed.entities.0 {
        match (types.iter().find(|(column, _)| *column == &**name), values) {
            (Some((_, entity_type)), _) => entities.push((&**name, entity_column(*entity_type, values)?)),
            // As given, for Feast to read as it reads request data; a message's values
            // are left to Feast's own flow.
            (None, EntityValues::Json(raw)) if needed.contains(&&**name) => {
                request_data.push((&**name, *raw))
            }
            (None, _) => return None,
        }
    }
    let every_field_given = needed
        .iter()
        .all(|field| request_data.iter().any(|(given, _)| given == field));
    let rows = entities.first()?.1.len();
    if rows == 0
        || !every_field_given
        || request_data
            .iter()
            .any(|(_, raw)| array_length(raw) != Some(rows))
        || entities.iter().any(|(_, c)| c.len() != rows)
        || views.iter().any(|v| {
            v.columns
                .iter()
                .any(|c| !entities.iter().any(|(name, _)| name == c))
        })
    {
        return None;
    }
    Some(Resolved {
        views,
        on_demand,
        refs: &parsed.features,
        service,
        request_data,
        // Feast's pre-computed path answers no views' metadata.
        include_metadata: shape.version_metadata
            && parsed.include_feature_view_version_metadata
            && precomputed.is_none(),
        precomputed,
        entities,
        rows,
        full_feature_names: parsed.full_feature_names,
        null_status: shape.null_status,
    })
}

/// HMGETs per pipeline: a large request is read in pipelines of this many commands,
/// one after another, so neither Redis nor this server holds one huge batch.
const PIPELINE_KEYS: usize = 4096;

/// Bytes an answer takes per value before its stored bytes are known (a value, its
/// status and its event time in JSON).
const ANSWER_BYTES_PER_VALUE: usize = 48;

impl Resolved<'_> {
    /// What answering the request will hold at most, beyond the stored values.
    pub fn estimated_bytes(&self) -> usize {
        let features: usize = self
            .views
            .iter()
            .map(|v| v.features.len() + v.inputs.len())
            .sum::<usize>()
            + self.on_demand.iter().map(|(_, asked)| asked).sum::<usize>()
            + self.precomputed.as_ref().map_or(0, |(_, names)| names.len());
        self.rows
            .saturating_mul(features + self.entities.len())
            .saturating_mul(ANSWER_BYTES_PER_VALUE)
    }
}

fn write_entity_values(out: &mut String, column: &NativeColumn) {
    out.push('[');
    for row in 0..column.len() {
        if row > 0 {
            out.push(',');
        }
        match column {
            NativeColumn::Int64(v) => out.push_str(itoa::Buffer::new().format(v[row])),
            NativeColumn::Int32(v) => out.push_str(itoa::Buffer::new().format(v[row])),
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

/// Items written once per unique key into one buffer, then copied per row.
#[derive(Default)]
struct Rendered {
    text: String,
    ends: Vec<usize>,
}

impl Rendered {
    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }

    /// Ends the item written into `text` since the last one.
    fn end_item(&mut self) {
        self.ends.push(self.text.len());
    }

    fn item(&self, index: usize) -> &str {
        let start = index.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.text[start..self.ends[index]]
    }

    /// A JSON array of each row's item.
    fn per_row(&self, out: &mut String, row_to_unique: &[u32]) {
        out.push('[');
        for (row, &unique) in row_to_unique.iter().enumerate() {
            if row > 0 {
                out.push(',');
            }
            out.push_str(self.item(unique as usize));
        }
        out.push(']');
    }
}

/// The contract an answer is written in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    /// `feast serve`'s JSON.
    Json,
    /// A serialized `feast.serving.GetOnlineFeaturesResponse`, as `feast listen` answers.
    Message,
}

/// What answering natively came to.
pub enum Answer {
    Written {
        body: Vec<u8>,
        /// The near-cache entries every value was read from, if all were.
        stamps: Option<Vec<EntryStamp>>,
    },
    /// A stored value of a kind the JSON writer leaves to Feast.
    Unsupported,
}

/// Why a request read natively got no answer.
#[derive(Debug)]
pub enum ReadError {
    Store(StoreError),
    /// The transformations were all busy for as long as the request may wait.
    TransformsBusy(TransformsBusy),
}

impl From<StoreError> for ReadError {
    fn from(err: StoreError) -> Self {
        ReadError::Store(err)
    }
}

/// Every view's hashes for its unique keys: one batch when the request is small (with
/// the near-cache entries they came from), else pipelines of `PIPELINE_KEYS` commands
/// in turn.
async fn read_all(
    client: &RedisClient,
    plans: &[&ViewPlan],
    keys: &[RowKeys],
    fields: &[Cow<'_, [Vec<u8>]>],
) -> Result<(Vec<Vec<store::Hash>>, Option<Vec<EntryStamp>>), StoreError> {
    let total: usize = keys.iter().map(|k| k.unique_keys.len()).sum();
    if total <= PIPELINE_KEYS {
        let reads: Vec<HashRead<'_>> = plans
            .iter()
            .zip(keys)
            .zip(fields)
            .map(|((plan, rows), fields)| HashRead::of_view(plan, fields, &rows.unique_keys))
            .collect();
        return store::read_hashes_stamped(client, &reads).await;
    }
    let mut hashes = Vec::with_capacity(keys.len());
    for ((plan, rows), fields) in plans.iter().zip(keys).zip(fields) {
        let mut view_hashes = Vec::with_capacity(rows.unique_keys.len());
        for start in (0..rows.unique_keys.len()).step_by(PIPELINE_KEYS) {
            let chunk: Keys = rows.unique_keys.iter().skip(start).take(PIPELINE_KEYS).collect();
            let read = HashRead::of_view(plan, fields, &chunk);
            let mut replies = store::read_hashes(client, std::slice::from_ref(&read)).await?;
            view_hashes.append(&mut replies[0]);
        }
        hashes.push(view_hashes);
    }
    Ok((hashes, None))
}

/// Reads every view of the request, has Feast's `transforms` run its on-demand views,
/// and writes Feast's answer in `format` into one buffer. `reserve(bytes)` is asked for
/// the stored bytes read before the answer is written, and refuses the answer when they
/// do not fit.
pub async fn answer(
    client: &RedisClient,
    request: &Resolved<'_>,
    format: Format,
    transforms: Option<&Transforms>,
    reserve: impl FnOnce(usize) -> bool,
) -> Result<Option<Answer>, ReadError> {
    // A server without Feast's transformations leaves on-demand views to Feast.
    if !request.on_demand.is_empty() && transforms.is_none() {
        return Ok(Some(Answer::Unsupported));
    }
    if let Some((served, names)) = &request.precomputed {
        return Ok(answer_precomputed(client, request, served, names, format, reserve).await?);
    }
    let mut keys = Vec::with_capacity(request.views.len());
    let mut fields = Vec::with_capacity(request.views.len());
    for view in &request.views {
        let plan = &view.view.plan;
        keys.push(plan.row_keys(&request.columns(view))?);
        let read = || view.features.iter().chain(&view.inputs);
        let every_feature_in_order =
            read().count() == plan.features.len() && read().enumerate().all(|(i, &feature)| i == feature);
        fields.push(match every_feature_in_order {
            true => Cow::Borrowed(plan.read_fields.as_slice()),
            false => {
                let mut read: Vec<Vec<u8>> = read().map(|&i| plan.features[i].field.to_vec()).collect();
                read.push(plan.timestamp_field.clone());
                Cow::Owned(read)
            }
        });
    }
    let plans: Vec<&ViewPlan> = request.views.iter().map(|view| view.view.plan.as_ref()).collect();
    let (hashes, stamps) = read_all(client, &plans, &keys, &fields).await?;
    let stored: usize = hashes
        .iter()
        .flatten()
        .map(|hash| hash.iter().flatten().map(<[u8]>::len).sum::<usize>())
        .sum();
    // Base64 and escapes make a stored byte up to two in JSON.
    if !reserve(stored.saturating_mul(2)) {
        return Ok(None);
    }
    let on_demand = match transforms.filter(|_| !request.on_demand.is_empty()) {
        None => Vec::new(),
        Some(transforms) => {
            let rows = Rows {
                features: request.refs.iter().map(|r| r.to_string()).collect(),
                feature_service: request.service.map(str::to_owned),
                full_feature_names: request.full_feature_names,
                request_data: request
                    .request_data
                    .iter()
                    .map(|(name, raw)| ((*name).to_owned(), raw.get().to_owned()))
                    .collect(),
                read: write_message(request, &keys, &hashes, stored, Columns::Read)?,
            };
            match transforms.run(rows).await {
                Ok(Some(vectors)) => vectors,
                Ok(None) => return Ok(Some(Answer::Unsupported)),
                Err(busy) => return Err(ReadError::TransformsBusy(busy)),
            }
        }
    };
    // A transformation's output is not a stored value: its answer is never kept.
    let stamps = stamps.filter(|_| request.on_demand.is_empty());
    Ok(Some(
        match write_answer(request, &keys, &hashes, &on_demand, stored, format)? {
            Some(body) => Answer::Written { body, stamps },
            None => Answer::Unsupported,
        },
    ))
}

/// A pre-computed service's answer, from the vector of each entity of its first view.
async fn answer_precomputed(
    client: &RedisClient,
    request: &Resolved<'_>,
    served: &ServedPrecomputed,
    names: &[String],
    format: Format,
    reserve: impl FnOnce(usize) -> bool,
) -> Result<Option<Answer>, StoreError> {
    let plan = served.plan.as_ref();
    let keys = plan.row_keys(&request.columns(&request.views[0]))?;
    let fields = [Cow::Borrowed(plan.read_fields.as_slice())];
    let (hashes, _) = read_all(client, &[plan], std::slice::from_ref(&keys), &fields).await?;
    let stored: usize = hashes[0]
        .iter()
        .map(|hash| hash.iter().flatten().map(<[u8]>::len).sum::<usize>())
        .sum();
    if !reserve(stored.saturating_mul(2)) {
        return Ok(None);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64());
    let serialize = format == Format::Message;
    let Some(vectors) = precomputed::vectors(served, names, &hashes[0], &keys.row_to_unique, now, serialize)
    else {
        return Ok(Some(Answer::Unsupported));
    };
    // Statuses depend on the time of the request: the answer is never kept.
    Ok(Some(
        match write_answer(request, &[], &[], &vectors, stored, format)? {
            Some(body) => Answer::Written { body, stamps: None },
            None => Answer::Unsupported,
        },
    ))
}

impl Resolved<'_> {
    /// The request's columns of `view`'s join keys, in its plan's order.
    fn columns(&self, view: &ViewRead<'_>) -> Vec<&NativeColumn> {
        view.columns
            .iter()
            .filter_map(|name| self.entities.iter().find(|(n, _)| n == name).map(|(_, c)| c))
            .collect()
    }
}

/// The answer in `format`: the entity columns, each view's features read, then the
/// `vectors` made of what was read; `None` when a value is of a kind the JSON writer
/// leaves to Feast.
fn write_answer(
    request: &Resolved<'_>,
    keys: &[RowKeys],
    hashes: &[Vec<store::Hash>],
    vectors: &[Transformed],
    stored: usize,
    format: Format,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(match format {
        Format::Json => write_json(request, keys, hashes, vectors, stored)?.map(String::into_bytes),
        Format::Message => Some(write_message(
            request,
            keys,
            hashes,
            stored,
            Columns::Asked(vectors),
        )?),
    })
}

/// The full name of `feature` (a position in the view's plan) as `view` is asked for.
fn full_name(view: &ViewRead<'_>, feature: usize) -> String {
    format!("{}__{}", view.name, view.view.plan.features[feature].name)
}

/// Feast's JSON answer; `None` when a stored value is of a kind left to Feast.
fn write_json(
    request: &Resolved<'_>,
    keys: &[RowKeys],
    hashes: &[Vec<store::Hash>],
    on_demand: &[Transformed],
    stored: usize,
) -> Result<Option<String>, StoreError> {
    let mut out = String::with_capacity(request.estimated_bytes() + stored * 2 + 256);
    out.push_str("{\"metadata\":{\"feature_names\":[");
    for (i, (entity, _)) in request.entities.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::string(&mut out, entity);
    }
    for view in &request.views {
        for &feature in &view.features {
            out.push(',');
            match (request.full_feature_names, view.full_names) {
                (false, _) => out.push_str(&view.view.names[feature]),
                (true, Some(full_names)) => out.push_str(&full_names[feature]),
                (true, None) => json::string(&mut out, &full_name(view, feature)),
            }
        }
    }
    for transformed in on_demand {
        out.push(',');
        json::string(&mut out, &transformed.name);
    }
    out.push(']');
    if request.include_metadata {
        let mut metadata: Vec<(&str, i64)> = Vec::new();
        for view in &request.views {
            if !metadata.iter().any(|(n, _)| *n == view.metadata_name) {
                metadata.push((view.metadata_name, view.view.version));
            }
        }
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
                out.push_str("\"version\":");
                out.push_str(itoa::Buffer::new().format(*version));
            }
            out.push('}');
        }
        out.push(']');
    }
    out.push_str("},\"results\":[");

    let mut first = true;
    for (_, column) in &request.entities {
        if !std::mem::take(&mut first) {
            out.push(',');
        }
        out.push_str("{\"values\":");
        write_entity_values(&mut out, column);
        out.push_str(",\"statuses\":");
        repeated(&mut out, "\"PRESENT\"", request.rows);
        out.push_str(",\"event_timestamps\":");
        repeated(&mut out, json::EPOCH, request.rows);
        out.push('}');
    }
    let mut timestamps = Rendered::default();
    let mut values = Rendered::default();
    for ((view, rows), hashes) in request.views.iter().zip(keys).zip(hashes) {
        let plan = &view.view.plan;
        timestamps.clear();
        for (key, hash) in rows.unique_keys.iter().zip(hashes) {
            let stored = hash
                .last()
                .map(|bytes| store::stored_timestamp(&plan.view, key, bytes))
                .transpose()?;
            json::timestamp(&mut timestamps.text, store::response_timestamp(stored));
            timestamps.end_item();
        }
        for (k, &feature) in view.features.iter().enumerate() {
            let name = &plan.features[feature].name;
            values.clear();
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
                if json::value(&mut values.text, value.as_ref()).is_err() {
                    return Ok(None);
                }
                values.end_item();
            }
            out.push_str(",{\"values\":");
            values.per_row(&mut out, &rows.row_to_unique);
            out.push_str(",\"statuses\":");
            repeated(&mut out, "\"PRESENT\"", request.rows);
            out.push_str(",\"event_timestamps\":");
            timestamps.per_row(&mut out, &rows.row_to_unique);
            out.push('}');
        }
    }
    for Transformed { vector, .. } in on_demand {
        if write_vector_json(&mut out, vector).is_err() {
            return Ok(None);
        }
    }
    out.push(']');
    if request.null_status {
        out.push_str(",\"status\":null");
    }
    out.push('}');
    Ok(Some(out))
}

/// Appends `,{"values":…,"statuses":…,"event_timestamps":…}` for a vector Feast's
/// transformations made.
fn write_vector_json(out: &mut String, vector: &FeatureVector) -> Result<(), json::Unsupported> {
    out.push_str(",{\"values\":[");
    for (i, value) in vector.values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::value(out, Some(value))?;
    }
    out.push_str("],\"statuses\":[");
    for (i, &status) in vector.statuses.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::string(out, status_name(status).ok_or(json::Unsupported)?);
    }
    out.push_str("],\"event_timestamps\":[");
    for (i, &timestamp) in vector.event_timestamps.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::timestamp(out, timestamp);
    }
    out.push_str("]}");
    Ok(())
}

/// Which columns a message holds.
#[derive(Clone, Copy)]
enum Columns<'t> {
    /// Those asked for, the on-demand features Feast made last: the answer.
    Asked(&'t [Transformed]),
    /// The views' features read, the on-demand views' inputs too: what Feast's
    /// transformations see.
    Read,
}

/// Appends protobuf field `tag` (length-delimited) holding `bytes`.
fn put_bytes(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, out);
    prost::encoding::encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// `feast.serving.FieldStatus.PRESENT`.
const PRESENT: u8 = 1;

/// A serialized `GetOnlineFeaturesResponse` as `feast listen` answers it: the entity
/// columns as asked for, every feature's stored values as they are stored, then the
/// on-demand features as Feast made them (with `Columns::Asked`).
fn write_message(
    request: &Resolved<'_>,
    keys: &[RowKeys],
    hashes: &[Vec<store::Hash>],
    stored: usize,
    columns: Columns<'_>,
) -> Result<Vec<u8>, StoreError> {
    let features = |view: &ViewRead<'_>| match columns {
        Columns::Asked(_) => view.features.len(),
        Columns::Read => view.features.len() + view.inputs.len(),
    };
    let on_demand = match columns {
        Columns::Asked(on_demand) => on_demand,
        Columns::Read => &[],
    };
    let mut names = Vec::new();
    for (entity, _) in &request.entities {
        put_bytes(&mut names, 1, entity.as_bytes());
    }
    for view in &request.views {
        for &feature in view.features.iter().chain(&view.inputs).take(features(view)) {
            let name = &view.view.plan.features[feature].name;
            match request.full_feature_names {
                false => put_bytes(&mut names, 1, name.as_bytes()),
                true => put_bytes(&mut names, 1, full_name(view, feature).as_bytes()),
            }
        }
    }
    for transformed in on_demand {
        put_bytes(&mut names, 1, transformed.name.as_bytes());
    }
    let mut metadata = Vec::with_capacity(names.len() + 8);
    put_bytes(&mut metadata, 1, &names);

    let mut out = Vec::with_capacity(request.estimated_bytes() + stored + metadata.len() + 16);
    put_bytes(&mut out, 1, &metadata);
    let mut vector = Vec::new();
    let mut value = Vec::new();
    for (_, column) in &request.entities {
        vector.clear();
        for row in 0..request.rows {
            let val = match column {
                NativeColumn::Int64(v) => Val::Int64Val(v[row]),
                NativeColumn::Int32(v) => Val::Int32Val(v[row]),
                NativeColumn::String(v) => Val::StringVal(v[row].clone()),
                NativeColumn::Bytes(v) => Val::BytesVal(v[row].clone()),
            };
            value.clear();
            Value { val: Some(val) }.encode(&mut value).expect("a Vec grows");
            put_bytes(&mut vector, 1, &value);
        }
        put_bytes(&mut vector, 2, &vec![PRESENT; request.rows]);
        for _ in 0..request.rows {
            put_bytes(&mut vector, 3, &[]);
        }
        put_bytes(&mut out, 2, &vector);
    }
    for ((view, rows), hashes) in request.views.iter().zip(keys).zip(hashes) {
        store::feature_vectors(&view.view.plan, rows, hashes, features(view), false, &mut out)?;
    }
    for transformed in on_demand {
        put_bytes(&mut out, 2, &transformed.serialized);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_rows_are_counted_without_keeping_them() {
        let request = parse(br#"{"features":["a:b","a:c"],"entities":{"k":[1,2,3],"j":["x","y"]}}"#).unwrap();
        let catalog = Catalog::default();
        let within = RequestLimits {
            max_rows: 3,
            max_cells: 6,
        };
        assert!(check_limits(&catalog, &request, &within).is_ok());
        let rows = RequestLimits {
            max_rows: 2,
            ..within
        };
        assert!(matches!(
            check_limits(&catalog, &request, &rows),
            Err(OverLimit::Rows { rows: 3, max: 2 })
        ));
        let cells = RequestLimits {
            max_cells: 5,
            ..within
        };
        let refused = check_limits(&catalog, &request, &cells).unwrap_err();
        assert!(
            refused.to_string().contains("--max-values-per-request"),
            "{refused}"
        );
    }

    /// A catalog of view `fv` (features `a`, `b`, `c`, joined on `id`) and on-demand view
    /// `odfv` (feature `out`) of `fv`'s `b` and `c` and request field `x`.
    fn on_demand_catalog() -> Catalog {
        let features = [("a", "INT64"), ("b", "INT64"), ("c", "INT64")];
        let plan = ViewPlan::new(store::ViewSpec::of("fv", &[("id", "INT64")], &features)).unwrap();
        let mut catalog = Catalog::default();
        catalog
            .views
            .insert("fv".into(), ServedView::new("fv", Arc::new(plan), 0));
        catalog.on_demand.insert(
            "odfv".into(),
            ServedOnDemandView {
                sources: vec![("fv".into(), vec!["b".into(), "c".into()])],
                features: vec!["out".into()],
                request_fields: vec!["x".into()],
            },
        );
        catalog
    }

    #[test]
    fn on_demand_inputs_are_read_but_only_what_was_asked_is_answered() {
        let catalog = on_demand_catalog();
        let body = br#"{"features":["odfv:out","fv:c"],"entities":{"id":[1,2],"x":[0.5,1]}}"#;
        let request = parse(body).unwrap();
        let resolved = resolve(&catalog, &request, AnswerShape::default()).unwrap();
        assert_eq!(resolved.on_demand, [("odfv", 1)]);
        // `c` was asked for: answered, not an input only.
        assert_eq!(resolved.views[0].features, [2]);
        assert_eq!(resolved.views[0].inputs, [1]);
        assert_eq!(resolved.request_data.len(), 1);
        assert_eq!(resolved.request_data[0].1.get(), "[0.5,1]");
    }

    #[test]
    fn a_feature_services_on_demand_views_read_their_sources_after_its_views() {
        let mut catalog = on_demand_catalog();
        let projection = |view: &str, features: &[&str]| ServedProjection {
            view: view.into(),
            name: view.into(),
            metadata_name: view.into(),
            features: features.iter().map(|f| (*f).to_owned()).collect(),
            join_key_map: HashMap::new(),
        };
        catalog.services.insert(
            "svc".into(),
            vec![projection("odfv", &["out"]), projection("fv", &["c"])],
        );
        let request = parse(br#"{"feature_service":"svc","entities":{"id":[1,2],"x":[0.5,1]}}"#).unwrap();
        let resolved = resolve(&catalog, &request, AnswerShape::default()).unwrap();
        assert_eq!(resolved.on_demand, [("odfv", 1)]);
        assert_eq!(resolved.views.len(), 1);
        assert_eq!(resolved.views[0].features, [2]);
        assert_eq!(resolved.views[0].inputs, [1]);
        assert_eq!(resolved.service, Some("svc"));
        // Feast's transformations are asked for the service, not for features.
        assert!(resolved.refs.is_empty());
    }

    #[test]
    fn on_demand_requests_the_native_path_cannot_answer_go_to_feast() {
        let catalog = on_demand_catalog();
        for body in [
            // Request data missing, of another length, or a column nothing reads.
            &br#"{"features":["odfv:out"],"entities":{"id":[1,2]}}"#[..],
            br#"{"features":["odfv:out"],"entities":{"id":[1,2],"x":[1]}}"#,
            br#"{"features":["odfv:out"],"entities":{"id":[1],"x":[1],"y":[1]}}"#,
            // A feature the view does not have.
            br#"{"features":["odfv:nope"],"entities":{"id":[1],"x":[1]}}"#,
        ] {
            let request = parse(body).unwrap();
            assert!(
                resolve(&catalog, &request, AnswerShape::default()).is_none(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_repeated_entity_name_keeps_its_place_and_its_last_values() {
        let request = parse(br#"{"entities":{"a":[1],"b":[2],"a":[3,4]}}"#).unwrap();
        let columns: Vec<(&str, &str)> = request
            .entities
            .0
            .iter()
            .map(|(name, values)| match values {
                EntityValues::Json(raw) => (&**name, raw.get()),
                EntityValues::Message(_) => panic!("a JSON request holds JSON values"),
            })
            .collect();
        assert_eq!(columns, [("a", "[3,4]"), ("b", "[2]")]);
    }
}
