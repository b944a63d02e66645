//! `ViewPlan`: a feature view's `crate::store::ViewPlan`, built once from a Python
//! `ViewSpec` (configuration at construction) and handed to every call with data.

use std::sync::Arc;

use pyo3::prelude::*;

use crate::store;

/// The attributes of `feast_redis_rs.plans.ViewSpec`.
#[derive(FromPyObject)]
struct PyViewSpec {
    #[pyo3(attribute)]
    project: String,
    #[pyo3(attribute)]
    entity_key_serialization_version: i64,
    #[pyo3(attribute)]
    view: String,
    #[pyo3(attribute)]
    join_keys: Vec<(String, String)>,
    #[pyo3(attribute)]
    features: Vec<(String, String)>,
    #[pyo3(attribute)]
    timestamp_column: Option<String>,
    #[pyo3(attribute)]
    key_ttl_seconds: Option<i64>,
    #[pyo3(attribute)]
    skip_dedup: bool,
    #[pyo3(attribute)]
    in_batch_ordering: bool,
    #[pyo3(attribute)]
    near_cache: bool,
}

#[pyclass(frozen, module = "feast_redis_rs._native")]
pub struct ViewPlan(pub Arc<store::ViewPlan>);

#[pymethods]
impl ViewPlan {
    #[new]
    fn new(spec: PyViewSpec) -> PyResult<Self> {
        let plan = store::ViewPlan::new(store::ViewSpec {
            project: spec.project,
            entity_key_serialization_version: spec.entity_key_serialization_version,
            view: spec.view,
            join_keys: spec.join_keys,
            features: spec.features,
            timestamp_column: spec.timestamp_column,
            key_ttl_seconds: spec.key_ttl_seconds,
            skip_dedup: spec.skip_dedup,
            in_batch_ordering: spec.in_batch_ordering,
            near_cache: spec.near_cache,
        })?;
        Ok(Self(Arc::new(plan)))
    }

    fn __repr__(&self) -> String {
        let plan = &self.0;
        let features: Vec<&str> = plan.features.iter().map(|f| f.name.as_str()).collect();
        format!(
            "ViewPlan(project={:?}, view={:?}, join_keys={:?}, features={:?})",
            plan.project, plan.view, plan.join_keys, features
        )
    }
}
