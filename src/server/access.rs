//! Feast's auth on the native paths. In a repo with `auth`, a request is read (or
//! written) natively only once Feast's own code (its token parser and its permission
//! checks, as `feast serve` runs them) has allowed the request's `authorization` to read
//! what it asks for (or to write the views it writes). The decision is kept, by a digest of the header and of what was asked, for
//! as long as it holds (the token's expiry, `--auth-cache-seconds`) and until the
//! registry is read again; whatever is not allowed, or not decided, goes to Feast's app,
//! which answers its own 401 or 403. Nothing is read without a decision.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use ring::digest;
use tokio::sync::Semaphore;

/// What a request asks: to read a feature service or feature references, or to write
/// feature views (a push, a write to the online store).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Asked {
    pub service: Option<String>,
    pub features: Vec<String>,
    /// The views written (`WRITE_ONLINE` on each).
    pub written: Vec<String>,
}

/// Feast's decision, made by Feast's code (it may block: it runs on a blocking thread).
pub trait Decide: Send + Sync + 'static {
    /// How long `authorization` may read `asked`, or `None` when Feast would not answer
    /// it (a token missing, rejected or expired, a permission missing, an error).
    fn decide(&self, authorization: &str, asked: &Asked) -> Option<Duration>;
}

/// Decisions kept at most: a client sending new tokens evicts the oldest, nothing more.
const KEPT_DECISIONS: usize = 10_000;
/// Decisions Feast's code makes at once; past this a request goes to Feast's app, which
/// queues and sheds its own.
const DECIDING_AT_ONCE: usize = 4;

pub struct Access {
    decide: Arc<dyn Decide>,
    /// When each decision kept lapses, by its digest.
    kept: Mutex<LruCache<[u8; 32], Instant>>,
    /// Longest a decision is kept (`--auth-cache-seconds`); zero keeps none.
    max_age: Duration,
    /// Bumped when every decision is forgotten: one made meanwhile is not kept.
    generation: AtomicU64,
    deciding: Arc<Semaphore>,
}

/// Whether a request may be read natively, and how that was known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A decision kept from an earlier request.
    Kept,
    /// Feast's code decided it just now.
    Decided,
    /// Feast's app answers it.
    ToFeast,
}

impl Access {
    pub fn new(decide: Box<dyn Decide>, max_age: Duration) -> Self {
        Self {
            decide: Arc::from(decide),
            kept: Mutex::new(LruCache::new(
                NonZeroUsize::new(KEPT_DECISIONS).expect("non-zero"),
            )),
            max_age,
            generation: AtomicU64::new(0),
            deciding: Arc::new(Semaphore::new(DECIDING_AT_ONCE)),
        }
    }

    /// Forgets every decision (the registry was read again: its permissions may differ).
    pub fn forget(&self) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        kept.clear();
    }

    /// Whether `authorization` (the request's header, if any) may be given `asked` natively.
    pub async fn verdict(&self, authorization: Option<&[u8]>, asked: &Asked) -> Verdict {
        // Feast's app answers a request without a token (its 401), or with a header
        // that is not text.
        let Some(authorization) = authorization.and_then(|value| std::str::from_utf8(value).ok()) else {
            return Verdict::ToFeast;
        };
        let key = digest_of(authorization, asked);
        let now = Instant::now();
        {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            match kept.get(&key) {
                Some(&lapses) if lapses > now => return Verdict::Kept,
                Some(_) => {
                    kept.pop(&key);
                }
                None => {}
            }
        }
        let Ok(place) = Arc::clone(&self.deciding).try_acquire_owned() else {
            return Verdict::ToFeast;
        };
        let generation = self.generation.load(Ordering::SeqCst);
        let decide = Arc::clone(&self.decide);
        let (header, question) = (authorization.to_owned(), asked.clone());
        let decided = tokio::task::spawn_blocking(move || {
            let _place = place;
            decide.decide(&header, &question)
        })
        .await;
        let Ok(Some(holds)) = decided else {
            return Verdict::ToFeast;
        };
        let age = holds.min(self.max_age);
        if !age.is_zero() {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            if self.generation.load(Ordering::SeqCst) == generation {
                kept.put(key, now + age);
            }
        }
        Verdict::Decided
    }
}

/// SHA-256 of the header and of all that was asked (the service, even an empty one
/// Feast passes over, and every feature), each part length-prefixed: a header is never
/// kept, and no two questions share a digest.
fn digest_of(authorization: &str, asked: &Asked) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    let mut part = |bytes: &[u8]| {
        context.update(&(bytes.len() as u64).to_le_bytes());
        context.update(bytes);
    };
    part(authorization.as_bytes());
    match &asked.service {
        Some(service) => {
            part(b"service");
            part(service.as_bytes());
        }
        None => part(b"no service"),
    }
    part(b"features");
    for feature in &asked.features {
        part(feature.as_bytes());
    }
    part(b"written");
    for view in &asked.written {
        part(view.as_bytes());
    }
    let mut out = [0; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Allows the token "good" for `holds`, counting the decisions asked for.
    struct Counted {
        asked: Arc<AtomicUsize>,
        holds: Duration,
    }

    impl Decide for Counted {
        fn decide(&self, authorization: &str, _: &Asked) -> Option<Duration> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            (authorization == "Bearer good").then_some(self.holds)
        }
    }

    fn access(holds: Duration, max_age: Duration) -> (Access, Arc<AtomicUsize>) {
        let asked = Arc::new(AtomicUsize::new(0));
        let decide = Counted {
            asked: Arc::clone(&asked),
            holds,
        };
        (Access::new(Box::new(decide), max_age), asked)
    }

    fn features(names: &[&str]) -> Asked {
        Asked {
            features: names.iter().map(|n| (*n).to_owned()).collect(),
            ..Asked::default()
        }
    }

    #[tokio::test]
    async fn a_decision_is_kept_per_token_and_question_until_forgotten() {
        let (access, asked) = access(Duration::from_secs(60), Duration::from_secs(60));
        let a = features(&["v:a"]);
        assert_eq!(access.verdict(Some(b"Bearer good"), &a).await, Verdict::Decided);
        assert_eq!(access.verdict(Some(b"Bearer good"), &a).await, Verdict::Kept);
        // Another question, another token: decided again.
        assert_eq!(
            access.verdict(Some(b"Bearer good"), &features(&["v:b"])).await,
            Verdict::Decided
        );
        assert_eq!(access.verdict(Some(b"Bearer bad"), &a).await, Verdict::ToFeast);
        assert_eq!(access.verdict(Some(b"Bearer bad"), &a).await, Verdict::ToFeast);
        assert_eq!(asked.load(Ordering::SeqCst), 4, "a refusal is never kept");
        access.forget();
        assert_eq!(access.verdict(Some(b"Bearer good"), &a).await, Verdict::Decided);
        assert_eq!(access.verdict(None, &a).await, Verdict::ToFeast);
        assert_eq!(asked.load(Ordering::SeqCst), 5, "no header, no decision");
    }

    #[tokio::test]
    async fn a_decision_lapses_with_its_token_or_the_cache_bound() {
        let (access, asked) = access(Duration::from_secs(1), Duration::from_secs(60));
        let a = features(&["v:a"]);
        access.verdict(Some(b"Bearer good"), &a).await;
        assert_eq!(access.verdict(Some(b"Bearer good"), &a).await, Verdict::Kept);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(access.verdict(Some(b"Bearer good"), &a).await, Verdict::Decided);
        let (every_time, asked_every_time) = access_with_zero_age();
        every_time.verdict(Some(b"Bearer good"), &a).await;
        assert_eq!(
            every_time.verdict(Some(b"Bearer good"), &a).await,
            Verdict::Decided
        );
        assert_eq!(
            (
                asked.load(Ordering::SeqCst),
                asked_every_time.load(Ordering::SeqCst)
            ),
            (2, 2)
        );
    }

    fn access_with_zero_age() -> (Access, Arc<AtomicUsize>) {
        access(Duration::from_secs(60), Duration::ZERO)
    }

    /// Allows every token, holding each decision until `release` opens.
    struct Held(Arc<std::sync::Barrier>);

    impl Decide for Held {
        fn decide(&self, _: &str, _: &Asked) -> Option<Duration> {
            self.0.wait();
            Some(Duration::from_secs(60))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn decisions_kept_and_made_at_once_are_bounded() {
        let (access, asked) = access(Duration::from_secs(60), Duration::from_secs(60));
        // "Bearer good" is allowed: what is asked varies instead.
        for n in 0..=KEPT_DECISIONS {
            access
                .verdict(Some(b"Bearer good"), &features(&[&n.to_string()]))
                .await;
        }
        assert_eq!(asked.load(Ordering::SeqCst), KEPT_DECISIONS + 1);
        // The first was dropped to make room for the last.
        let first = features(&["0"]);
        assert_eq!(
            access.verdict(Some(b"Bearer good"), &first).await,
            Verdict::Decided
        );
        let last = features(&[&KEPT_DECISIONS.to_string()]);
        assert_eq!(access.verdict(Some(b"Bearer good"), &last).await, Verdict::Kept);

        let release = Arc::new(std::sync::Barrier::new(DECIDING_AT_ONCE + 1));
        let held = Arc::new(Access::new(
            Box::new(Held(Arc::clone(&release))),
            Duration::from_secs(60),
        ));
        let deciding: Vec<_> = (0..DECIDING_AT_ONCE)
            .map(|n| {
                let held = Arc::clone(&held);
                tokio::spawn(async move {
                    held.verdict(Some(b"Bearer t"), &features(&[&n.to_string()]))
                        .await
                })
            })
            .collect();
        while held.deciding.available_permits() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Every place taken: the next goes to Feast's app at once.
        assert_eq!(
            held.verdict(Some(b"Bearer t"), &features(&["more"])).await,
            Verdict::ToFeast
        );
        tokio::task::spawn_blocking(move || release.wait()).await.unwrap();
        for decided in deciding {
            assert_eq!(decided.await.unwrap(), Verdict::Decided);
        }
    }

    #[test]
    fn a_service_and_features_of_the_same_name_differ() {
        let service = Asked {
            service: Some("v:a".into()),
            ..Asked::default()
        };
        assert_ne!(digest_of("t", &service), digest_of("t", &features(&["v:a"])));
        assert_ne!(
            digest_of("t", &features(&["v:a", "b"])),
            digest_of("t", &features(&["v:ab"]))
        );
        // Feast decides on the features when the service is empty: so must the key.
        let empty_service = |names: &[&str]| Asked {
            service: Some(String::new()),
            features: features(names).features,
            ..Asked::default()
        };
        assert_ne!(
            digest_of("t", &empty_service(&["v:a"])),
            digest_of("t", &empty_service(&["w:secret"]))
        );
        // Reading a view is not writing it.
        let written = Asked {
            written: vec!["v".into()],
            ..Asked::default()
        };
        assert_ne!(digest_of("t", &written), digest_of("t", &features(&["v"])));
    }
}
