//! Feature services with `precompute_online` (Feast 0.64 on): each entity of the
//! service's first view has one stored vector holding every feature of the service,
//! and the answer is made of those vectors as Feast's
//! `OnlineStore._try_precomputed_fast_path` makes it. What that path would not answer
//! (a vector missing, other names than the service's) is left to Feast, whose flow then
//! refuses the request as stock does.

use std::collections::HashSet;
use std::sync::Arc;

use prost::Message;

use super::transform::{FeatureVector, Transformed};
use crate::encoding::proto::{PrecomputedFeatureVector, Val};
use crate::encoding::{Timestamp, Value};
use crate::store::{Hash, ViewPlan};

/// A feature service whose answers are read from its pre-computed vectors.
pub struct ServedPrecomputed {
    /// The view `__precomputed__{service}` with its one feature, `vector`, keyed by the
    /// join keys of the service's first view.
    pub plan: Arc<ViewPlan>,
    /// The TTL in whole seconds of each view of the service that has one, by the name
    /// the service gives it.
    pub ttls: Vec<(String, i64)>,
}

/// `feast.serving.FieldStatus`.
const PRESENT: i32 = 1;
const OUTSIDE_MAX_AGE: i32 = 4;

/// The answer's vectors, one per name in `names` (the service's features as the
/// request names them), from each unique entity's stored `hashes` (`vector` first) and
/// each request row's unique entity; `None` leaves the request to Feast. A feature is
/// `OUTSIDE_MAX_AGE` when its name starts with `{view}__` of a view with a TTL whose
/// features were read for the vector longer ago than that TTL, at `now` (seconds since
/// the epoch). `serialized` is filled for the gRPC contract's answer only.
pub fn vectors(
    served: &ServedPrecomputed,
    names: &[String],
    hashes: &[Hash],
    row_to_unique: &[u32],
    now: f64,
    serialize: bool,
) -> Option<Vec<Transformed>> {
    let stored: Vec<PrecomputedFeatureVector> = hashes
        .iter()
        .map(|hash| match Value::decode(hash.get(0)?).ok()?.val {
            Some(Val::BytesVal(blob)) => PrecomputedFeatureVector::decode(blob.as_slice()).ok(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let first = stored.first()?;
    // As Feast checks them: the first vector's names are the service's as a set, every
    // other vector's are the first's, as many as the service's.
    let asked: HashSet<&str> = names.iter().map(String::as_str).collect();
    let held: HashSet<&str> = first.feature_names.iter().map(String::as_str).collect();
    if asked != held
        || stored[1..]
            .iter()
            .any(|v| v.feature_names.len() != names.len() || v.feature_names != first.feature_names)
    {
        return None;
    }
    let sources: Vec<usize> = match first.feature_names == names {
        true => (0..names.len()).collect(),
        // A name held twice is read from its last place, as Feast's dict of names keeps.
        false => names
            .iter()
            .map(|name| first.feature_names.iter().rposition(|held| held == name))
            .collect::<Option<_>>()?,
    };
    let timestamps: Vec<Timestamp> = row_to_unique
        .iter()
        .map(|&unique| stored[unique as usize].precomputed_at.unwrap_or_default())
        .collect();
    let expired = |vector: &PrecomputedFeatureVector, name: &str| -> bool {
        let Some((view, _)) = name.split_once("__") else {
            return false;
        };
        let Some(&(_, ttl)) = served.ttls.iter().find(|(named, _)| named == view) else {
            return false;
        };
        // The last time given for the view, as Feast's dict of them keeps.
        match vector
            .fv_timestamps
            .iter()
            .rev()
            .find(|t| t.feature_view_name == view)
        {
            Some(read) => {
                let at = read.event_timestamp.unwrap_or_default();
                now - (at.seconds as f64 + f64::from(at.nanos) / 1e9) > ttl as f64
            }
            None => false,
        }
    };
    names
        .iter()
        .zip(sources)
        .map(|(name, source)| {
            let per_entity: Vec<(&Value, i32)> = stored
                .iter()
                .map(|vector| {
                    let status = if expired(vector, name) {
                        OUTSIDE_MAX_AGE
                    } else {
                        PRESENT
                    };
                    Some((vector.values.get(source)?, status))
                })
                .collect::<Option<_>>()?;
            let (values, statuses) = row_to_unique
                .iter()
                .map(|&unique| {
                    let (value, status) = per_entity[unique as usize];
                    (value.clone(), status)
                })
                .unzip();
            let vector = FeatureVector {
                values,
                statuses,
                event_timestamps: timestamps.clone(),
            };
            Some(Transformed {
                name: name.clone(),
                serialized: if serialize {
                    vector.encode_to_vec()
                } else {
                    Vec::new()
                },
                vector,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::proto::FeatureViewTimestamp;
    use crate::redis::Strings;
    use crate::store::ViewSpec;

    fn served(ttls: &[(&str, i64)]) -> ServedPrecomputed {
        let spec = ViewSpec::of("__precomputed__s", &[("id", "INT64")], &[("vector", "BYTES")]);
        ServedPrecomputed {
            plan: Arc::new(ViewPlan::new(spec).unwrap()),
            ttls: ttls.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect(),
        }
    }

    fn hash(names: &[&str], values: &[i64], read_at: &[(&str, i64)], at: i64) -> Hash {
        let vector = PrecomputedFeatureVector {
            feature_names: names.iter().map(|n| (*n).to_owned()).collect(),
            values: values
                .iter()
                .map(|&v| Value {
                    val: Some(Val::Int64Val(v)),
                })
                .collect(),
            fv_timestamps: read_at
                .iter()
                .map(|(view, seconds)| FeatureViewTimestamp {
                    feature_view_name: (*view).to_owned(),
                    event_timestamp: Some(Timestamp {
                        seconds: *seconds,
                        nanos: 0,
                    }),
                })
                .collect(),
            precomputed_at: Some(Timestamp {
                seconds: at,
                nanos: 0,
            }),
        };
        let stored = Value {
            val: Some(Val::BytesVal(vector.encode_to_vec())),
        }
        .encode_to_vec();
        Strings::from_items([Some(stored.as_slice()), None])
    }

    fn ints(vector: &FeatureVector) -> Vec<i64> {
        vector
            .values
            .iter()
            .map(|v| match v.val {
                Some(Val::Int64Val(i)) => i,
                _ => panic!("{v:?}"),
            })
            .collect()
    }

    #[test]
    fn answers_each_row_in_the_requests_order_with_the_names_it_asks() {
        let names = ["a__x".to_owned(), "b__y".to_owned()];
        let hashes = [
            hash(&["b__y", "a__x"], &[2, 1], &[], 100),
            hash(&["b__y", "a__x"], &[20, 10], &[], 200),
        ];
        let vectors = vectors(&served(&[]), &names, &hashes, &[1, 0, 1], 1e9, false).unwrap();
        assert_eq!(vectors[0].name, "a__x");
        assert_eq!(ints(&vectors[0].vector), [10, 1, 10]);
        assert_eq!(ints(&vectors[1].vector), [20, 2, 20]);
        let seconds: Vec<i64> = vectors[0]
            .vector
            .event_timestamps
            .iter()
            .map(|t| t.seconds)
            .collect();
        assert_eq!(seconds, [200, 100, 200]);
        assert_eq!(vectors[0].vector.statuses, [PRESENT; 3]);
    }

    #[test]
    fn a_view_read_longer_ago_than_its_ttl_is_outside_max_age() {
        let names = ["a__x".to_owned(), "b__y".to_owned()];
        let hashes = [hash(
            &["a__x", "b__y"],
            &[1, 2],
            &[("a", 1000), ("b", 1000)],
            1000,
        )];
        let vectors = vectors(&served(&[("a", 60)]), &names, &hashes, &[0], 1061.0, false).unwrap();
        assert_eq!(vectors[0].vector.statuses, [OUTSIDE_MAX_AGE]);
        assert_eq!(
            ints(&vectors[0].vector),
            [1],
            "the value is answered all the same"
        );
        assert_eq!(vectors[1].vector.statuses, [PRESENT]);
        let fresh = super::vectors(&served(&[("a", 60)]), &names, &hashes, &[0], 1059.0, false).unwrap();
        assert_eq!(fresh[0].vector.statuses, [PRESENT]);
    }

    #[test]
    fn what_feasts_fast_path_refuses_is_left_to_feast() {
        let served = served(&[]);
        let names = ["a__x".to_owned()];
        let fresh = hash(&["a__x"], &[1], &[], 1);
        let missing = Strings::from_items([None, None]);
        let other_names = hash(&["x"], &[1], &[], 1);
        let no_value = hash(&["a__x"], &[], &[], 1);
        for hashes in [
            vec![fresh.clone(), missing],
            vec![other_names],
            vec![fresh.clone(), hash(&["a__x", "a__x"], &[1, 1], &[], 1)],
            vec![no_value],
        ] {
            assert!(vectors(&served, &names, &hashes, &[0], 0.0, false).is_none());
        }
        let serialized = &vectors(&served, &names, &[fresh], &[0], 0.0, true).unwrap()[0].serialized;
        assert!(!serialized.is_empty());
    }
}
