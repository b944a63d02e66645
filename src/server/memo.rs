//! Answers kept for requests sent again, with the near cache on: a request whose body is
//! byte for byte one answered before, under the same catalog, gets the same answer
//! while every near-cache entry that answer was read from is still cached. Any write
//! to one of its keys (Redis' invalidation drops the entry), a flush, an eviction, an
//! entry's expiry or a catalog refresh ends it. A hot entity asked for by one model's
//! client is the same body every time: its answer is then neither parsed, read nor
//! written again.
//!
//! Once the memo is full, an answer displaces the least recently used only if its body
//! was sent before, recently: most bodies of a Zipf-like mix come once in a long while,
//! and kept at their first sighting they would push out the hot ones, each in turn
//! evicted before it came again (an LRU's worst case).

use std::hash::BuildHasher;
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
/// The bytes of kept answers per body the doorkeeper remembers: about one per answer the
/// memo can hold (a 1-row answer of a dozen features is ~1-3 KiB).
const BYTES_PER_SIGHTING: usize = 1 << 10;
/// The doorkeeper's bits per body remembered: two bits set per body, ~1.4% false
/// sightings when it is full.
const BITS_PER_SIGHTING: usize = 16;

struct Kept {
    catalog: u64,
    stamps: Vec<EntryStamp>,
    answer: Bytes,
}

impl Kept {
    fn cost(&self, body: &[u8]) -> usize {
        cost(body, &self.answer, &self.stamps)
    }
}

/// What keeping `answer` for `body` takes, counted against the memo's bound.
fn cost(body: &[u8], answer: &[u8], stamps: &[EntryStamp]) -> usize {
    ANSWER_OVERHEAD
        + body.len()
        + answer.len()
        + stamps
            .iter()
            .map(|stamp| stamp.key().len() + size_of::<EntryStamp>())
            .sum::<usize>()
}

/// The bodies seen lately (a Bloom filter, cleared once it has taken its share): the
/// memo's admission once it is full.
struct Doorkeeper {
    bits: Vec<u64>,
    hasher: hashbrown::DefaultHashBuilder,
    sightings: usize,
    capacity: usize,
}

impl Doorkeeper {
    /// A doorkeeper for a memo of `max_bytes`.
    fn new(max_bytes: usize) -> Self {
        let capacity = (max_bytes / BYTES_PER_SIGHTING).max(64);
        let words = (capacity * BITS_PER_SIGHTING).div_ceil(64).max(1);
        Self {
            bits: vec![0; words],
            hasher: hashbrown::DefaultHashBuilder::default(),
            sightings: 0,
            capacity,
        }
    }

    /// Whether `body` was seen since the last clearing; it is now.
    fn seen_again(&mut self, body: &[u8]) -> bool {
        let hash = self.hasher.hash_one(body);
        let bits = self.bits.len() * 64;
        let places = [(hash as u32) as usize % bits, (hash >> 32) as usize % bits];
        let seen = places
            .iter()
            .all(|&bit| self.bits[bit / 64] & (1 << (bit % 64)) != 0);
        if !seen {
            if self.sightings == self.capacity {
                self.bits.fill(0);
                self.sightings = 0;
            }
            for bit in places {
                self.bits[bit / 64] |= 1 << (bit % 64);
            }
            self.sightings += 1;
        }
        seen
    }
}

struct Answers {
    kept: LruCache<Box<[u8]>, Kept>,
    bytes: usize,
    doorkeeper: Doorkeeper,
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
                doorkeeper: Doorkeeper::new(max_bytes),
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

    /// Keeps `answer` for `body` under `catalog`, read from the entries of `stamps`, and
    /// gives it back shared; gives it back as it was when it is too large to keep, or
    /// the memo is full and `body` was not sent lately.
    pub fn keep(
        &self,
        body: &[u8],
        catalog: u64,
        stamps: Vec<EntryStamp>,
        mut answer: Vec<u8>,
    ) -> Result<Bytes, Vec<u8>> {
        if body.len() > MAX_BODY_BYTES || answer.len() > MAX_ANSWER_BYTES {
            return Err(answer);
        }
        let cost = cost(body, &answer, &stamps);
        if cost > self.max_bytes {
            return Err(answer);
        }
        let mut answers = self.answers();
        let replaced = answers.kept.pop(body);
        if let Some(old) = &replaced {
            answers.bytes -= old.cost(body);
        }
        let full = answers.bytes + cost > self.max_bytes;
        if full && replaced.is_none() && !answers.doorkeeper.seen_again(body) {
            return Err(answer);
        }
        // The memo counts an answer's length: it must hold no more.
        answer.shrink_to_fit();
        let answer = Bytes::from(answer);
        answers.bytes += cost;
        answers.kept.push(
            body.into(),
            Kept {
                catalog,
                stamps,
                answer: answer.clone(),
            },
        );
        while answers.bytes > self.max_bytes {
            let Some((body, old)) = answers.kept.pop_lru() else {
                break;
            };
            answers.bytes -= old.cost(&body);
        }
        Ok(answer)
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
        assert!(memo.keep(b"body", 1, stamps, b"answer".to_vec()).is_ok());
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
        assert!(memo
            .keep(b"body", 1, vec![filled(&cache, b"a", "1")], b"answer".to_vec())
            .is_ok());
        cache.flush();
        assert_eq!(memo.answer(b"body", 1, &cache), None);
    }

    #[test]
    fn answers_stay_within_their_bytes_and_size_limits() {
        let cache = cache(None, 1 << 20);
        let memo = AnswerMemo::new(10_000);
        let stamp = filled(&cache, b"a", "1");
        // Each body sent twice: the second is let in once the memo is full.
        for n in 0..1_000 {
            let body = format!("body {n}");
            for _ in 0..2 {
                let _ = memo.keep(body.as_bytes(), 1, vec![stamp.clone()], vec![b'x'; 500]);
                assert!(memo.stats().bytes <= 10_000);
            }
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
        let large = vec![b'x'; MAX_ANSWER_BYTES + 1];
        assert_eq!(
            memo.keep(b"large", 1, vec![stamp.clone()], large.clone()),
            Err(large)
        );
        assert!(memo
            .keep(&[b'b'; MAX_BODY_BYTES + 1], 1, vec![stamp], b"answer".to_vec())
            .is_err());
    }

    #[test]
    fn bodies_sent_once_do_not_push_out_those_sent_again() {
        let cache = cache(None, 1 << 20);
        let memo = AnswerMemo::new(10_000);
        let stamp = filled(&cache, b"a", "1");
        let keep = |body: &str| memo.keep(body.as_bytes(), 1, vec![stamp.clone()], vec![b'x'; 500]);
        // As many as fill the memo.
        let hot: Vec<String> = (0..14).map(|n| format!("hot {n:02}")).collect();
        for body in &hot {
            assert!(keep(body).is_ok());
        }
        assert!(keep("one more").is_err(), "full: {:?}", memo.stats());
        // A flood of bodies each sent once, between which the hot ones come again (and
        // are offered again when gone, as the server does). With least-recently-used alone,
        // every hot body would be gone by its turn.
        let (mut let_in, mut hot_missed) = (0, 0);
        for n in 0..5_000 {
            let_in += keep(&format!("once {n}")).is_ok() as usize;
            let body = &hot[n % hot.len()];
            if memo.answer(body.as_bytes(), 1, &cache).is_none() {
                hot_missed += 1;
                let _ = keep(body);
            }
            assert!(memo.stats().bytes <= 10_000);
        }
        // A Bloom filter's false sightings let a few in (~0.6% here), and each pushes out a
        // hot answer, kept again at its second offering.
        assert!(let_in < 150, "{let_in} of 5,000 bodies sent once were kept");
        assert!(hot_missed < 500, "{hot_missed} of 5,000 hot answers were gone");
        // Sent again soon after, a body is let in: the least recently used goes.
        assert!(keep("once 4999").is_ok());
        assert!(memo.answer(b"once 4999", 1, &cache).is_some());
        // An answer for a body kept already replaces it, full or not.
        assert!(memo
            .keep(hot[3].as_bytes(), 1, vec![stamp.clone()], b"newer".to_vec())
            .is_ok());
        assert_eq!(
            memo.answer(hot[3].as_bytes(), 1, &cache).as_deref(),
            Some(&b"newer"[..])
        );
    }
}
