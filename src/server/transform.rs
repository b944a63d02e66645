//! On-demand feature views on the native read path. Their source views are read here as
//! any view is; their transformations are run by Feast's own code (under the GIL, on a
//! blocking thread), handed the rows as Feast's flow holds them just before it runs
//! them; the answer is written here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use tokio::sync::Semaphore;

use crate::encoding::{Timestamp, Value};

/// What a transformation is run on: the request as it was asked, and the rows read.
pub struct Rows {
    /// The request's feature references, as asked, or its feature service.
    pub features: Vec<String>,
    pub feature_service: Option<String>,
    pub full_feature_names: bool,
    /// Each request data column the on-demand views need, as the request's JSON text.
    pub request_data: Vec<(String, String)>,
    /// A serialized `GetOnlineFeaturesResponse` with the join keys and every source
    /// feature read, as Feast's flow holds it before its transformations.
    pub read: Vec<u8>,
}

/// Feast's transformations (they may block: they run on a blocking thread).
pub trait Transform: Send + Sync + 'static {
    /// Each on-demand feature asked for, by its name in the answer, as a serialized
    /// `FeatureVector`; `None` when Feast's app should answer the request (a
    /// transformation failed, or Feast's flow would not run it).
    fn transform(&self, rows: &Rows) -> Option<Vec<(String, Vec<u8>)>>;
}

/// `feast.serving.GetOnlineFeaturesResponse.FeatureVector`.
#[derive(Clone, PartialEq, Message)]
pub struct FeatureVector {
    #[prost(message, repeated, tag = "1")]
    pub values: Vec<Value>,
    #[prost(int32, repeated, tag = "2")]
    pub statuses: Vec<i32>,
    #[prost(message, repeated, tag = "3")]
    pub event_timestamps: Vec<Timestamp>,
}

/// `feast.serving.GetOnlineFeaturesResponse` as `Rows::read` holds it: the columns'
/// names and vectors (its other fields are not read).
#[derive(Clone, PartialEq, Message)]
pub struct ReadResponse {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ReadMetadata>,
    #[prost(message, repeated, tag = "2")]
    pub results: Vec<FeatureVector>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ReadMetadata {
    #[prost(message, optional, tag = "1")]
    pub feature_names: Option<FeatureNames>,
}

#[derive(Clone, PartialEq, Message)]
pub struct FeatureNames {
    #[prost(string, repeated, tag = "1")]
    pub val: Vec<String>,
}

impl ReadResponse {
    /// Each column of `read` by name, or `None` when it is not one such response.
    pub fn columns(read: &[u8]) -> Option<Vec<(String, Vec<Value>)>> {
        let response = Self::decode(read).ok()?;
        let names = response.metadata?.feature_names?.val;
        (names.len() == response.results.len()).then(|| {
            names
                .into_iter()
                .zip(response.results.into_iter().map(|vector| vector.values))
                .collect()
        })
    }
}

/// An on-demand feature as Feast's transformation made it.
pub struct Transformed {
    /// Its name in the answer.
    pub name: String,
    pub vector: FeatureVector,
    /// The vector as Feast serialized it, for the gRPC contract's answer.
    pub serialized: Vec<u8>,
}

/// Transformations run at once: each holds a blocking thread (and, while it runs, the
/// GIL); a request past them waits for one to end, for at most the queue timeout,
/// holding its place among the reads in service, which bound and shed the rest.
pub const TRANSFORMING_AT_ONCE: usize = 4;

pub struct Transforms {
    transform: Arc<dyn Transform>,
    running: Arc<Semaphore>,
    queue_timeout: Duration,
    waiting: AtomicUsize,
}

/// A request waited `queue_timeout` for a transformation to end, in vain.
#[derive(Debug)]
pub struct TransformsBusy {
    pub waited: Duration,
}

impl TransformsBusy {
    /// Why the request is refused, and what the client should do.
    pub fn message(&self) -> String {
        format!(
            "the request waited {:.0} ms for one of the {TRANSFORMING_AT_ONCE} on-demand \
             transformations running at once to end (--transform-queue-timeout): retry shortly",
            self.waited.as_secs_f64() * 1e3
        )
    }
}

/// Counts a request waiting for a transformation while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Transforms {
    /// Feast's `transform`, which a request waits at most `queue_timeout` to run.
    pub fn new(transform: Box<dyn Transform>, queue_timeout: Duration) -> Self {
        Self {
            transform: Arc::from(transform),
            running: Arc::new(Semaphore::new(TRANSFORMING_AT_ONCE)),
            queue_timeout,
            waiting: AtomicUsize::new(0),
        }
    }

    /// Transformations running, and requests waiting for one to end.
    pub fn load(&self) -> (usize, usize) {
        let running = TRANSFORMING_AT_ONCE - self.running.available_permits();
        (running, self.waiting.load(Ordering::Relaxed))
    }

    /// The on-demand features of `rows`, by name, as Feast made them (its vectors are
    /// written as they come, as its JSON writes them), or `None` for Feast's app.
    pub async fn run(&self, rows: Rows) -> Result<Option<Vec<Transformed>>, TransformsBusy> {
        let started = Instant::now();
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let waiting = Waiting(&self.waiting);
        let acquired =
            tokio::time::timeout(self.queue_timeout, Arc::clone(&self.running).acquire_owned()).await;
        drop(waiting);
        let Ok(acquired) = acquired else {
            return Err(TransformsBusy {
                waited: started.elapsed(),
            });
        };
        let Ok(place) = acquired else {
            return Ok(None);
        };
        let transform = Arc::clone(&self.transform);
        let Ok(Some(vectors)) = tokio::task::spawn_blocking(move || {
            let _place = place;
            transform.transform(&rows)
        })
        .await
        else {
            return Ok(None);
        };
        Ok(vectors
            .into_iter()
            .map(|(name, serialized)| {
                let vector = FeatureVector::decode(serialized.as_slice()).ok()?;
                Some(Transformed {
                    name,
                    vector,
                    serialized,
                })
            })
            .collect())
    }
}

/// `feast.serving.FieldStatus`'s name for `status`, as Feast's JSON writes it.
pub fn status_name(status: i32) -> Option<&'static str> {
    Some(match status {
        0 => "INVALID",
        1 => "PRESENT",
        2 => "NULL_VALUE",
        3 => "NOT_FOUND",
        4 => "OUTSIDE_MAX_AGE",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::proto::Val;

    struct Doubled;

    impl Transform for Doubled {
        fn transform(&self, rows: &Rows) -> Option<Vec<(String, Vec<u8>)>> {
            let values: Vec<Value> = rows
                .request_data
                .iter()
                .map(|(_, text)| {
                    let number = text.parse::<i64>().ok()?;
                    Some(Value {
                        val: Some(Val::Int64Val(2 * number)),
                    })
                })
                .collect::<Option<_>>()?;
            let vector = FeatureVector {
                statuses: vec![1; values.len()],
                event_timestamps: vec![Timestamp::default(); values.len()],
                values,
            };
            Some(vec![("doubled".to_owned(), vector.encode_to_vec())])
        }
    }

    fn rows(request_data: &[&str]) -> Rows {
        Rows {
            features: vec!["odfv:doubled".to_owned()],
            feature_service: None,
            full_feature_names: false,
            request_data: request_data
                .iter()
                .map(|t| ("x".to_owned(), (*t).to_owned()))
                .collect(),
            read: Vec::new(),
        }
    }

    const QUEUE_TIMEOUT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn vectors_come_back_decoded_by_name() {
        let transforms = Transforms::new(Box::new(Doubled), QUEUE_TIMEOUT);
        let vectors = transforms.run(rows(&["21"])).await.unwrap().expect("transformed");
        assert_eq!(vectors.len(), 1);
        assert_eq!(vectors[0].name, "doubled");
        assert_eq!(vectors[0].vector.values[0].val, Some(Val::Int64Val(42)));
        assert_eq!(vectors[0].vector.encode_to_vec(), vectors[0].serialized);
    }

    #[tokio::test]
    async fn a_failed_transformation_or_a_vector_that_is_not_one_goes_to_feast() {
        let transforms = Transforms::new(Box::new(Doubled), QUEUE_TIMEOUT);
        assert!(transforms.run(rows(&["not a number"])).await.unwrap().is_none());
        struct Garbled;
        impl Transform for Garbled {
            fn transform(&self, _: &Rows) -> Option<Vec<(String, Vec<u8>)>> {
                Some(vec![("garbled".to_owned(), vec![0xff, 0xff, 0xff])])
            }
        }
        assert!(Transforms::new(Box::new(Garbled), QUEUE_TIMEOUT)
            .run(rows(&["1"]))
            .await
            .unwrap()
            .is_none());
    }

    /// Runs once released.
    struct Held(Arc<std::sync::atomic::AtomicBool>);

    impl Transform for Held {
        fn transform(&self, rows: &Rows) -> Option<Vec<(String, Vec<u8>)>> {
            while !self.0.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(1));
            }
            Doubled.transform(rows)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_the_transformations_running_a_request_waits_the_queue_timeout_then_is_refused() {
        let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let transforms = Arc::new(Transforms::new(
            Box::new(Held(Arc::clone(&released))),
            QUEUE_TIMEOUT,
        ));
        let running: Vec<_> = (0..TRANSFORMING_AT_ONCE)
            .map(|_| {
                let transforms = Arc::clone(&transforms);
                tokio::spawn(async move { transforms.run(rows(&["1"])).await })
            })
            .collect();
        while transforms.load().0 < TRANSFORMING_AT_ONCE {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let waiting = {
            let transforms = Arc::clone(&transforms);
            tokio::spawn(async move { transforms.run(rows(&["1"])).await })
        };
        tokio::time::sleep(QUEUE_TIMEOUT / 5).await;
        assert_eq!(transforms.load(), (TRANSFORMING_AT_ONCE, 1));
        let Err(busy) = waiting.await.unwrap() else {
            panic!("a request past the transformations running must be refused");
        };
        assert!(busy.waited >= QUEUE_TIMEOUT, "{busy:?}");
        assert!(busy.message().contains("--transform-queue-timeout"));
        assert_eq!(transforms.load(), (TRANSFORMING_AT_ONCE, 0));
        released.store(true, Ordering::Release);
        for transformed in running {
            assert!(transformed.await.unwrap().unwrap().is_some());
        }
        assert_eq!(transforms.load(), (0, 0));
    }

    #[test]
    fn the_rows_read_are_their_columns_by_name_or_none_when_names_and_vectors_differ() {
        let int = |v| Value {
            val: Some(Val::Int64Val(v)),
        };
        let vector = |values: Vec<Value>| FeatureVector {
            values,
            ..Default::default()
        };
        let response = |names: &[&str], results| ReadResponse {
            metadata: Some(ReadMetadata {
                feature_names: Some(FeatureNames {
                    val: names.iter().map(|n| n.to_string()).collect(),
                }),
            }),
            results,
        };
        let read = response(
            &["zipcode", "z_i64"],
            vec![
                vector(vec![int(1), int(2)]),
                vector(vec![int(3), Value::default()]),
            ],
        );
        assert_eq!(
            ReadResponse::columns(&read.encode_to_vec()),
            Some(vec![
                ("zipcode".to_string(), vec![int(1), int(2)]),
                ("z_i64".to_string(), vec![int(3), Value::default()]),
            ])
        );
        let unnamed = response(&["zipcode"], vec![vector(vec![int(1)]), vector(vec![int(3)])]);
        assert_eq!(ReadResponse::columns(&unnamed.encode_to_vec()), None);
        assert_eq!(ReadResponse::columns(b"\x0a\xff"), None);
    }

    #[test]
    fn statuses_are_named_as_feast_names_them() {
        assert_eq!(status_name(1), Some("PRESENT"));
        assert_eq!(status_name(3), Some("NOT_FOUND"));
        assert_eq!(status_name(9), None);
    }
}
