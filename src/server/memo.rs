//! Answers kept for requests sent again, with the near cache on: a request whose body is
//! byte for byte one answered before, under the same catalog, gets the same answer
//! while every near-cache entry that answer was read from is still cached. Any write
//! to one of its keys (Redis' invalidation drops the entry), a flush, an eviction, an
//! entry's expiry or a catalog refresh ends it. A hot entity asked for by one model's
//! client is the same body every time: its answer is then neither parsed, read nor
//! written again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use lru::LruCache;

use crate::redis::{EntryStamp, NearCache};

/// The largest request body and answer kept: a memo is for the small, hot requests.
const MAX_BODY_BYTES: usize = 4 << 10;
const MAX_ANSWER_BYTES: usize = 64 << 10;
/// What an answer costs beyond its body, answer and stamps' keys: its map slot, LRU
/// node and allocations' headers.
const ANSWER_OVERHEAD: usize = 160;

struct Kept {
    catalog: u64,
    stamps: Vec<EntryStamp>,
    answer: Bytes,
}

impl Kept {
    fn cost(&self, body: &[u8]) -> usize {
        ANSWER_OVERHEAD
            + body.len()
            + self.answer.len()
            + self
                .stamps
                .iter()
                .map(|stamp| stamp.key().len() + size_of::<EntryStamp>())
                .sum::<usize>()
    }
}

struct Answers {
    kept: LruCache<Box<[u8]>, Kept>,
    bytes: usize,
}

pub struct AnswerMemo {
    answers: Mutex<Answers>,
    max_bytes: usize,
    reused: AtomicU64,
}

/// What the memo holds, and how often it answered.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoStats {
    pub answers: u64,
    pub bytes: u64,
    pub reused: u64,
}

impl AnswerMemo {
    /// Keeps answers in at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            answers: Mutex::new(Answers {
                kept: LruCache::unbounded(),
                bytes: 0,
            }),
            max_bytes,
            reused: AtomicU64::new(0),
        }
    }

    /// A memo within a quarter of `cache`'s bytes. (Not of its entries: an answer of
    /// one row of two entities is one of many pairs of the same entries.)
    pub fn beside(cache: &NearCache) -> Self {
        Self::new(cache.config().max_bytes / 4)
    }

    fn answers(&self) -> std::sync::MutexGuard<'_, Answers> {
        self.answers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The answer kept for `body` under `catalog`, if its entries are all current.
    pub fn answer(&self, body: &[u8], catalog: u64, cache: &NearCache) -> Option<Bytes> {
        let mut answers = self.answers();
        let kept = answers.kept.get(body)?;
        if kept.catalog != catalog || !cache.current(&kept.stamps) {
            return None;
        }
        self.reused.fetch_add(1, Ordering::Relaxed);
        Some(kept.answer.clone())
    }

    /// Keeps `answer` for `body` under `catalog`, read from the entries of `stamps`;
    /// `false` when it is too large to keep.
    pub fn keep(&self, body: &[u8], catalog: u64, stamps: Vec<EntryStamp>, answer: Bytes) -> bool {
        if body.len() > MAX_BODY_BYTES || answer.len() > MAX_ANSWER_BYTES {
            return false;
        }
        let kept = Kept {
            catalog,
            stamps,
            answer,
        };
        let cost = kept.cost(body);
        if cost > self.max_bytes {
            return false;
        }
        let mut answers = self.answers();
        if let Some(old) = answers.kept.pop(body) {
            answers.bytes -= old.cost(body);
        }
        answers.bytes += cost;
        answers.kept.push(body.into(), kept);
        while answers.bytes > self.max_bytes {
            let Some((body, old)) = answers.kept.pop_lru() else {
                break;
            };
            answers.bytes -= old.cost(&body);
        }
        true
    }

    /// Forgets every answer (a new catalog makes them all unusable).
    pub fn clear(&self) {
        let mut answers = self.answers();
        answers.kept.clear();
        answers.bytes = 0;
    }

    pub fn stats(&self) -> MemoStats {
        let answers = self.answers();
        MemoStats {
            answers: answers.kept.len() as u64,
            bytes: answers.bytes as u64,
            reused: self.reused.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::near_cache::tests::{cache, fields, invalidate, values};

    /// `key` filled with `value` in `cache`, and the stamp of the entry made.
    fn filled(cache: &NearCache, key: &[u8], value: &str) -> EntryStamp {
        let fields = fields(&["f"]);
        let mut fill = cache.begin();
        fill.stamp();
        fill.lookup([key].into_iter(), &fields);
        fill.complete(key, &fields, &values(&[Some(value)]), None);
        fill.take_stamps().unwrap().remove(0)
    }

    #[test]
    fn an_answer_is_reused_while_its_entries_are_current_under_its_catalog() {
        let cache = cache(None, 1 << 20);
        let memo = AnswerMemo::beside(&cache);
        let stamps = vec![filled(&cache, b"a", "1"), filled(&cache, b"b", "2")];
        assert!(memo.keep(b"body", 1, stamps, Bytes::from_static(b"answer")));
        assert_eq!(memo.answer(b"body", 1, &cache).as_deref(), Some(&b"answer"[..]));
        assert_eq!(memo.answer(b"other body", 1, &cache), None);
        assert_eq!(memo.answer(b"body", 2, &cache), None, "another catalog");
        // An invalidation of one of its keys ends it, the key filled again or not.
        invalidate(&cache, "b");
        assert_eq!(memo.answer(b"body", 1, &cache), None);
        filled(&cache, b"b", "3");
        assert_eq!(memo.answer(b"body", 1, &cache), None);
        assert_eq!(memo.stats().reused, 1);
    }

    #[test]
    fn a_flush_ends_every_answer() {
        let cache = cache(None, 1 << 20);
        let memo = AnswerMemo::beside(&cache);
        assert!(memo.keep(
            b"body",
            1,
            vec![filled(&cache, b"a", "1")],
            Bytes::from_static(b"answer")
        ));
        cache.flush();
        assert_eq!(memo.answer(b"body", 1, &cache), None);
    }

    #[test]
    fn answers_stay_within_their_bytes_and_size_limits() {
        let cache = cache(None, 1 << 20);
        let memo = AnswerMemo::new(10_000);
        let stamp = filled(&cache, b"a", "1");
        for n in 0..1_000 {
            let body = format!("body {n}");
            assert!(memo.keep(
                body.as_bytes(),
                1,
                vec![stamp.clone()],
                Bytes::from(vec![b'x'; 500])
            ));
            assert!(memo.stats().bytes <= 10_000);
        }
        let stats = memo.stats();
        assert!(stats.answers > 5 && stats.answers < 20, "{stats:?}");
        assert!(
            memo.answer(b"body 999", 1, &cache).is_some(),
            "the last kept is kept"
        );
        assert!(
            memo.answer(b"body 0", 1, &cache).is_none(),
            "the least recently used went"
        );
        let large = Bytes::from(vec![b'x'; MAX_ANSWER_BYTES + 1]);
        assert!(!memo.keep(b"large", 1, vec![stamp.clone()], large));
        assert!(!memo.keep(
            &[b'b'; MAX_BODY_BYTES + 1],
            1,
            vec![stamp],
            Bytes::from_static(b"answer")
        ));
    }
}
