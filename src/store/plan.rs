//! What reads and writes of one feature view share, computed once per view and config:
//! the view's Redis key layout, hash fields and dtypes (`ViewPlan`); and, per request,
//! the Redis keys of the request rows (`RowKeys`).

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};

use super::error::StoreError;
use crate::columns::FeatureType;
use crate::encoding::{
    feature_field, timestamp_field, EncodingError, EntityKeyLayout, EntityValue, KeySerializationVersion,
    Value,
};

/// What a plan is built from: the config's and the registry's description of a view.
pub struct ViewSpec {
    pub project: String,
    pub entity_key_serialization_version: i64,
    /// The view's name as stored: `fv`, or `fv_v{N}` with feature view versioning.
    pub view: String,
    /// `(join key, Feast ValueType name)`.
    pub join_keys: Vec<(String, String)>,
    /// `(feature, Feast ValueType name)`: the features read or written, in order.
    pub features: Vec<(String, String)>,
    /// The event-time column of Arrow batches written with this plan.
    pub timestamp_column: Option<String>,
    /// EXPIRE on every key written; `None` or 0 for none.
    pub key_ttl_seconds: Option<i64>,
    pub skip_dedup: bool,
    /// A written row must also be newer than earlier rows of its batch for the same key
    /// (Feast 0.66 on); else each is checked against what was stored before the batch.
    pub in_batch_ordering: bool,
    /// Whether reads of this view go through the client's near cache.
    pub near_cache: bool,
}

/// A join key's declared type, among those whose plain values become keys without
/// Feast's conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntityType {
    Int64,
    Int32,
    String,
    Bytes,
    /// Any other ValueType: requests with it take Feast's own conversion.
    Other,
}

impl EntityType {
    pub fn from_value_type(name: &str) -> Self {
        match name {
            "INT64" => Self::Int64,
            "INT32" => Self::Int32,
            "STRING" => Self::String,
            "BYTES" => Self::Bytes,
            _ => Self::Other,
        }
    }
}

pub struct FeaturePlan {
    pub name: String,
    /// `None` for dtypes read only through Feast's proto path (maps, sets, JSON...).
    pub dtype: Option<FeatureType>,
    pub field: [u8; 4],
}

/// A feature view as this store reads and writes it.
pub struct ViewPlan {
    pub project: String,
    pub version: KeySerializationVersion,
    pub view: String,
    pub join_keys: Vec<String>,
    pub entity_types: Vec<EntityType>,
    pub layout: EntityKeyLayout,
    pub features: Vec<FeaturePlan>,
    /// The fields an HMGET asks for: every feature's, then `_ts:{view}`.
    pub read_fields: Vec<Vec<u8>>,
    /// `_ts:{view}`.
    pub timestamp_field: Vec<u8>,
    pub timestamp_column: Option<String>,
    pub key_ttl_seconds: Option<i64>,
    pub skip_dedup: bool,
    pub in_batch_ordering: bool,
    pub near_cached: bool,
}

#[cfg(test)]
impl ViewSpec {
    /// View `view` of project `p` (key serialization 3, no TTL, no near cache), with
    /// `(name, ValueType)` join keys and features: a spec for tests.
    pub fn of(view: &str, join_keys: &[(&str, &str)], features: &[(&str, &str)]) -> Self {
        let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
                .collect()
        };
        Self {
            project: "p".into(),
            entity_key_serialization_version: 3,
            view: view.into(),
            join_keys: owned(join_keys),
            features: owned(features),
            timestamp_column: None,
            key_ttl_seconds: None,
            skip_dedup: false,
            in_batch_ordering: true,
            near_cache: false,
        }
    }
}

impl ViewPlan {
    pub fn new(spec: ViewSpec) -> Result<Self, StoreError> {
        let version = KeySerializationVersion::from_config(spec.entity_key_serialization_version)?;
        let (join_keys, entity_types): (Vec<String>, Vec<EntityType>) = spec
            .join_keys
            .into_iter()
            .map(|(name, value_type)| (name, EntityType::from_value_type(&value_type)))
            .unzip();
        let layout = EntityKeyLayout::new(&join_keys, version)?;
        let features: Vec<FeaturePlan> = spec
            .features
            .into_iter()
            .map(|(name, value_type)| FeaturePlan {
                dtype: FeatureType::from_value_type(&value_type),
                field: feature_field(&spec.view, &name),
                name,
            })
            .collect();
        let timestamp_field = timestamp_field(&spec.view);
        let mut read_fields: Vec<Vec<u8>> = features.iter().map(|f| f.field.to_vec()).collect();
        read_fields.push(timestamp_field.clone());
        Ok(Self {
            project: spec.project,
            version,
            view: spec.view,
            join_keys,
            entity_types,
            layout,
            features,
            read_fields,
            timestamp_field,
            timestamp_column: spec.timestamp_column,
            key_ttl_seconds: spec.key_ttl_seconds.filter(|&ttl| ttl > 0),
            skip_dedup: spec.skip_dedup,
            in_batch_ordering: spec.in_batch_ordering,
            near_cached: spec.near_cache,
        })
    }

    /// The Redis keys of request rows whose join-key values are `columns` (one per join
    /// key of the plan, in its order), each distinct key once.
    pub fn row_keys<C: EntityColumn>(&self, columns: &[C]) -> Result<RowKeys, StoreError> {
        if columns.len() != self.join_keys.len() {
            return Err(StoreError::InvalidRequest(format!(
                "view '{}' has join keys {:?} but {} columns of values were given",
                self.view,
                self.join_keys,
                columns.len()
            )));
        }
        let Some(first) = columns.first() else {
            return Ok(RowKeys::default());
        };
        let rows = first.len();
        if let Some((name, column)) = self.join_keys.iter().zip(columns).find(|(_, c)| c.len() != rows) {
            return Err(StoreError::InvalidRequest(format!(
                "join key '{name}' has {} values but '{}' has {rows}; give every join key one value per row",
                column.len(),
                self.join_keys[0]
            )));
        }
        // Each distinct key's place in `unique_keys`, found by the key's hash.
        let hasher = DefaultHashBuilder::default();
        let mut index: HashTable<u32> = HashTable::with_capacity(rows);
        let mut keys = RowKeys {
            unique_keys: Keys::with_capacity(rows),
            row_to_unique: Vec::with_capacity(rows),
        };
        let mut values: Vec<EntityValue<'_>> = Vec::with_capacity(columns.len());
        let mut key = Vec::new();
        for row in 0..rows {
            values.clear();
            for (name, column) in self.join_keys.iter().zip(columns) {
                values.push(column.value(row, name)?);
            }
            key.clear();
            self.layout.write_redis_key(&values, &self.project, &mut key)?;
            let unique_keys = &mut keys.unique_keys;
            let hash = hasher.hash_one(key.as_slice());
            let unique = match index.find(hash, |&u| unique_keys[u as usize] == key[..]) {
                Some(&unique) => unique,
                None => {
                    let unique = unique_keys.len() as u32;
                    unique_keys.push(&key);
                    index.insert_unique(hash, unique, |&u| hasher.hash_one(&unique_keys[u as usize]));
                    unique
                }
            };
            keys.row_to_unique.push(unique);
        }
        Ok(keys)
    }
}

/// Keys held end to end in one buffer: one allocation for a request's keys, not one
/// per key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keys {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Keys {
    pub fn with_capacity(keys: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(keys * 64),
            ends: Vec::with_capacity(keys),
        }
    }

    pub fn push(&mut self, key: &[u8]) {
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len());
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        (0..self.len()).map(|index| &self[index])
    }
}

impl std::ops::Index<usize> for Keys {
    type Output = [u8];

    fn index(&self, index: usize) -> &[u8] {
        let start = index.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.bytes[start..self.ends[index]]
    }
}

impl<K: AsRef<[u8]>> FromIterator<K> for Keys {
    fn from_iter<I: IntoIterator<Item = K>>(keys: I) -> Self {
        let mut out = Keys::default();
        for key in keys {
            out.push(key.as_ref());
        }
        out
    }
}

/// The Redis key of every request row, each distinct key once.
#[derive(Debug, Default)]
pub struct RowKeys {
    pub unique_keys: Keys,
    pub row_to_unique: Vec<u32>,
}

impl RowKeys {
    /// Whether every row has a key of its own, in order (no row repeats another).
    pub fn is_identity(&self) -> bool {
        self.unique_keys.len() == self.row_to_unique.len()
    }
}

/// One join key's values for every request row.
pub trait EntityColumn {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn value(&self, row: usize, join_key: &str) -> Result<EntityValue<'_>, EncodingError>;
}

impl EntityColumn for Vec<Value> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn value(&self, row: usize, join_key: &str) -> Result<EntityValue<'_>, EncodingError> {
        EntityValue::from_proto(&self[row], join_key)
    }
}

impl<C: EntityColumn> EntityColumn for &C {
    fn len(&self) -> usize {
        (**self).len()
    }

    fn value(&self, row: usize, join_key: &str) -> Result<EntityValue<'_>, EncodingError> {
        (**self).value(row, join_key)
    }
}

/// Entity values taken as plain values of the entity's declared type.
pub enum NativeColumn {
    Int64(Vec<i64>),
    Int32(Vec<i32>),
    String(Vec<String>),
    Bytes(Vec<Vec<u8>>),
}

impl EntityColumn for NativeColumn {
    fn len(&self) -> usize {
        match self {
            Self::Int64(v) => v.len(),
            Self::Int32(v) => v.len(),
            Self::String(v) => v.len(),
            Self::Bytes(v) => v.len(),
        }
    }

    fn value(&self, row: usize, _join_key: &str) -> Result<EntityValue<'_>, EncodingError> {
        Ok(match self {
            Self::Int64(v) => EntityValue::Int64(v[row]),
            Self::Int32(v) => EntityValue::Int32(v[row]),
            Self::String(v) => EntityValue::String(&v[row]),
            Self::Bytes(v) => EntityValue::Bytes(&v[row]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::proto::Val;

    fn spec(join_keys: &[&str]) -> ViewSpec {
        ViewSpec {
            project: "p".into(),
            entity_key_serialization_version: 3,
            view: "fv".into(),
            join_keys: join_keys
                .iter()
                .map(|k| (k.to_string(), "INT64".into()))
                .collect(),
            features: vec![("f".into(), "DOUBLE".into()), ("m".into(), "MAP".into())],
            timestamp_column: None,
            key_ttl_seconds: Some(0),
            skip_dedup: false,
            in_batch_ordering: true,
            near_cache: false,
        }
    }

    fn column(ids: &[i64]) -> Vec<Value> {
        ids.iter()
            .map(|&id| Value {
                val: Some(Val::Int64Val(id)),
            })
            .collect()
    }

    #[test]
    fn plans_hold_fields_and_dtypes() {
        let plan = ViewPlan::new(spec(&["driver_id"])).unwrap();
        assert_eq!(plan.read_fields.len(), 3);
        assert_eq!(plan.read_fields[2], b"_ts:fv");
        assert_eq!(plan.read_fields[0], feature_field("fv", "f"));
        assert!(plan.features[0].dtype.is_some() && plan.features[1].dtype.is_none());
        assert_eq!(plan.entity_types, vec![EntityType::Int64]);
        assert_eq!(plan.key_ttl_seconds, None);
        let mut bad = spec(&["a"]);
        bad.entity_key_serialization_version = 9;
        assert!(ViewPlan::new(bad).is_err());
    }

    #[test]
    fn keys_held_end_to_end_read_back_one_by_one() {
        let keys: Keys = [&b"ab"[..], b"", b"c"].into_iter().collect();
        assert_eq!(
            (keys.len(), &keys[0], &keys[1], &keys[2]),
            (3, &b"ab"[..], &b""[..], &b"c"[..])
        );
        assert_eq!(keys.iter().collect::<Vec<_>>(), [&b"ab"[..], b"", b"c"]);
        assert!(Keys::default().is_empty());
    }

    #[test]
    fn rows_share_keys_and_keep_their_order() {
        let plan = ViewPlan::new(spec(&["driver_id"])).unwrap();
        let keys = plan.row_keys(&[column(&[7, 3, 7, 7])]).unwrap();
        assert_eq!(keys.unique_keys.len(), 2);
        assert_eq!(keys.row_to_unique, vec![0, 1, 0, 0]);
        assert!(!keys.is_identity());
        assert!(keys.unique_keys[0].ends_with(b"p"));

        let plan = ViewPlan::new(spec(&["a", "b"])).unwrap();
        let mismatch = plan.row_keys(&[column(&[1, 2]), column(&[1])]);
        assert!(matches!(mismatch, Err(StoreError::InvalidRequest(m)) if m.contains("'b' has 1 values")));
        assert!(plan.row_keys(&[column(&[1])]).is_err());
    }
}
