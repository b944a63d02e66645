//! The near cache: hash fields read from Redis kept in the process, and evicted by
//! Redis itself when any client changes their key (server-assisted client-side
//! caching, `CLIENT TRACKING`).
//!
//! Each node that fills the cache has a listener: a connection subscribed to
//! `__redis__:invalidate`. A pipeline that fills entries starts with `CLIENT TRACKING
//! on REDIRECT <listener's id>` on whatever connection carries it, so the keys it reads
//! are tracked and their invalidations reach the listener; nothing about tracking is
//! kept per connection. What is trusted, and when all is dropped:
//! - A miss leaves a placeholder under its fill's token before its command is sent;
//!   an invalidation (or a flush) removes it, and the reply fills the entry only if
//!   its placeholder is still there. An invalidation that overtakes the reply (they
//!   come on different connections) so leaves nothing stale behind.
//! - A listener lost, silent past its ping's deadline, or refused as a redirect
//!   target drops every entry, as do `FLUSHALL`/`FLUSHDB` (a nil invalidation), a new
//!   master (sentinel) and a moved slot (cluster), and a fork (the child has no
//!   listener).
//! - No entry outlives `max_staleness`, nor its key's own expiry when read with it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use lru::LruCache;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::connection::{process_id, Connector, NodeAddr, Role};
use super::error::ClientError;
use super::resp::{self, Command, Pipeline, Reply, Strings};

/// How entries are kept correct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// Redis' invalidations (`CLIENT TRACKING`); a server that refuses them is an error.
    Tracking,
    /// No invalidation: an entry is served until `max_staleness` after it was read.
    TtlOnly,
}

#[derive(Clone, Debug)]
pub struct NearCacheConfig {
    pub max_entries: Option<usize>,
    pub max_bytes: usize,
    pub max_staleness: Duration,
    pub invalidation: Invalidation,
}

/// The cache's counters since it was made, and what it holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NearCacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Entries dropped to stay within `max_entries`/`max_bytes`.
    pub evictions: u64,
    /// Keys Redis said changed (each entry dropped, or a fill refused).
    pub invalidations: u64,
    /// Times every entry was dropped at once.
    pub flushes: u64,
    pub entries: u64,
    pub bytes: u64,
}

/// What a listener pings Redis for, and how long its pong may take: past that, its
/// connection is taken as lost (a NAT or a firewall may drop an idle one silently).
const PING_EVERY: Duration = Duration::from_secs(1);
const PONG_WITHIN: Duration = Duration::from_secs(2);
/// How long after a listener failed its node fills nothing, before one is tried again.
const LISTENER_RETRY: Duration = Duration::from_millis(500);
/// What an entry costs beyond its key and bytes: the LRU's node and map slot, the
/// entry's own fields and its allocations' headers.
const ENTRY_OVERHEAD: usize = 160;
const INVALIDATE_CHANNEL: &str = "__redis__:invalidate";

/// A field and its value, as places in the entry's bytes.
#[derive(Clone, Copy)]
struct Item {
    field: (u32, u32),
    value: Option<(u32, u32)>,
}

struct Entry {
    bytes: Vec<u8>,
    items: Vec<Item>,
    expires: Instant,
    /// Unique to this entry among all the cache ever held: an `EntryStamp` of it is
    /// current while this very entry is cached.
    version: u64,
}

/// A cached entry a reader was answered from. While it is `NearCache::current`, the
/// key's fields are what the reader got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryStamp {
    key: Box<[u8]>,
    version: u64,
}

impl EntryStamp {
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl Entry {
    fn slice(&self, (start, len): (u32, u32)) -> &[u8] {
        &self.bytes[start as usize..(start + len) as usize]
    }

    fn value(&self, field: &[u8]) -> Option<Option<&[u8]>> {
        let item = self.items.iter().find(|item| self.slice(item.field) == field)?;
        Some(item.value.map(|value| self.slice(value)))
    }

    fn cost(&self, key: &[u8]) -> usize {
        ENTRY_OVERHEAD + key.len() + self.bytes.capacity() + self.items.capacity() * size_of::<Item>()
    }

    /// This entry's fields with `fields` set to `values` (added or replaced).
    fn merged(&self, fields: &[Vec<u8>], values: &Strings, expires: Instant, version: u64) -> Entry {
        let kept = self
            .items
            .iter()
            .filter(|item| !fields.iter().any(|f| f[..] == *self.slice(item.field)))
            .map(|item| (self.slice(item.field), item.value.map(|v| self.slice(v))));
        let new = fields.iter().map(Vec::as_slice).zip(values.iter());
        Entry::new(kept.chain(new), expires.min(self.expires), version)
    }

    fn new<'a>(
        fields: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
        expires: Instant,
        version: u64,
    ) -> Entry {
        let mut bytes = Vec::new();
        let mut items = Vec::new();
        fn place(bytes: &mut Vec<u8>, data: &[u8]) -> (u32, u32) {
            bytes.extend_from_slice(data);
            ((bytes.len() - data.len()) as u32, data.len() as u32)
        }
        for (field, value) in fields {
            let field = place(&mut bytes, field);
            let value = value.map(|value| place(&mut bytes, value));
            items.push(Item { field, value });
        }
        bytes.shrink_to_fit();
        items.shrink_to_fit();
        Entry {
            bytes,
            items,
            expires,
            version,
        }
    }
}

/// A node's listener, as fills see it.
enum Listener {
    Starting,
    Up {
        client_id: i64,
    },
    /// Failed; not tried again before `retry_at`.
    Failed {
        retry_at: Instant,
        error: ClientError,
    },
}

struct State {
    entries: LruCache<Box<[u8]>, Entry>,
    bytes: usize,
    /// Keys being filled, and the token of the fill that may fill each.
    filling: HashMap<Box<[u8]>, u64>,
    listeners: HashMap<NodeAddr, Listener>,
    /// The process these entries and listeners belong to.
    pid: u32,
    /// The last entry's `version`.
    last_version: u64,
}

impl State {
    fn flush(&mut self, counters: &Counters) {
        if !self.entries.is_empty() || !self.filling.is_empty() {
            counters.flushes.fetch_add(1, Ordering::Relaxed);
        }
        self.entries.clear();
        self.bytes = 0;
        self.filling.clear();
    }

    fn remove(&mut self, key: &[u8]) -> bool {
        let filling = self.filling.remove(key).is_some();
        match self.entries.pop(key) {
            Some(entry) => {
                self.bytes -= entry.cost(key);
                true
            }
            None => filling,
        }
    }
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    invalidations: AtomicU64,
    flushes: AtomicU64,
}

struct Shared {
    config: NearCacheConfig,
    state: Mutex<State>,
    counters: Counters,
    /// The last fill's token: taken without the state's lock.
    last_token: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let pid = process_id();
        if state.pid != pid {
            // A fork: the parent's listeners are not this process'.
            state.pid = pid;
            state.flush(&self.counters);
            state.listeners.clear();
        }
        state
    }

    fn invalidate(&self, keys: &[Reply]) {
        let mut state = self.lock();
        let mut removed = 0;
        for key in keys {
            if let Some(key) = key.text() {
                removed += u64::from(state.remove(key));
            }
        }
        self.counters.invalidations.fetch_add(removed, Ordering::Relaxed);
    }

    fn flush(&self) {
        self.lock().flush(&self.counters);
    }

    /// `addr`'s listener failed: nothing it was to invalidate can be trusted. One that
    /// was up is started again at the next fill; one that could not start, not before
    /// `LISTENER_RETRY`.
    fn listener_lost(&self, addr: &NodeAddr, error: ClientError) {
        let mut state = self.lock();
        state.flush(&self.counters);
        let was_up = matches!(state.listeners.get(addr), Some(Listener::Up { .. }));
        let retry_at = Instant::now() + if was_up { Duration::ZERO } else { LISTENER_RETRY };
        state
            .listeners
            .insert(addr.clone(), Listener::Failed { retry_at, error });
    }
}

/// The thread the listeners run on: they must read invalidations while no caller is in
/// the client (a Python thread drives its runtime only during its calls).
struct Background {
    handle: tokio::runtime::Handle,
    /// Dropped with the cache: the thread then stops, closing the listeners.
    _stop: tokio::sync::oneshot::Sender<()>,
    pid: u32,
}

impl Background {
    fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("feast-redis-rs-near-cache".into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })?;
        Ok(Self {
            handle,
            _stop: stop,
            pid: process_id(),
        })
    }
}

pub struct NearCache {
    shared: Arc<Shared>,
    connector: Connector,
    background: Mutex<Option<Background>>,
}

impl NearCache {
    pub fn new(config: NearCacheConfig, connector: Connector) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    entries: LruCache::unbounded(),
                    bytes: 0,
                    filling: HashMap::new(),
                    listeners: HashMap::new(),
                    pid: process_id(),
                    last_version: 0,
                }),
                config,
                counters: Counters::default(),
                last_token: AtomicU64::new(0),
            }),
            connector,
            background: Mutex::new(None),
        }
    }

    pub fn invalidation(&self) -> Invalidation {
        self.shared.config.invalidation
    }

    pub fn stats(&self) -> NearCacheStats {
        let counters = &self.shared.counters;
        let state = self.shared.lock();
        NearCacheStats {
            hits: counters.hits.load(Ordering::Relaxed),
            misses: counters.misses.load(Ordering::Relaxed),
            evictions: counters.evictions.load(Ordering::Relaxed),
            invalidations: counters.invalidations.load(Ordering::Relaxed),
            flushes: counters.flushes.load(Ordering::Relaxed),
            entries: state.entries.len() as u64,
            bytes: state.bytes as u64,
        }
    }

    /// Drops every entry, and refuses the fills in flight.
    pub fn flush(&self) {
        self.shared.flush();
    }

    pub fn config(&self) -> &NearCacheConfig {
        &self.shared.config
    }

    /// Starts a fill: lookups through it register their misses under its token.
    pub fn begin(&self) -> Fill<'_> {
        Fill {
            cache: self,
            token: self.shared.last_token.fetch_add(1, Ordering::Relaxed) + 1,
            registered: Vec::new(),
            stamps: None,
        }
    }

    /// Whether every entry of `stamps` is still cached, unexpired (then each counts as
    /// a hit, and as recently used).
    pub fn current(&self, stamps: &[EntryStamp]) -> bool {
        let now = Instant::now();
        let mut state = self.shared.lock();
        let current = stamps.iter().all(|stamp| {
            state
                .entries
                .get(&stamp.key)
                .is_some_and(|entry| entry.version == stamp.version && entry.expires > now)
        });
        if current {
            self.shared
                .counters
                .hits
                .fetch_add(stamps.len() as u64, Ordering::Relaxed);
        }
        current
    }

    /// The client id fills of `addr` redirect their invalidations to, once its listener
    /// is up; `None` starts it (fills of `addr` are then not cached meanwhile).
    pub fn redirect(&self, addr: &NodeAddr) -> Option<i64> {
        let mut state = self.shared.lock();
        match state.listeners.get(addr) {
            Some(Listener::Up { client_id }) => return Some(*client_id),
            Some(Listener::Starting) => return None,
            Some(Listener::Failed { retry_at, .. }) if Instant::now() < *retry_at => return None,
            _ => {}
        }
        state.listeners.insert(addr.clone(), Listener::Starting);
        drop(state);
        let spawned = self.background_handle().map(|handle| {
            let shared = Arc::downgrade(&self.shared);
            handle.spawn(listen(shared, self.connector.clone(), addr.clone()))
        });
        if let Err(err) = spawned {
            let reason = format!("cannot start the near cache's listener thread: {err}");
            let error = ClientError::Io {
                addr: addr.to_string(),
                reason,
            };
            self.shared.listener_lost(addr, error);
        }
        None
    }

    /// `addr` refused `CLIENT TRACKING ... REDIRECT` to its listener: its
    /// invalidations may have been lost.
    pub fn redirect_refused(&self, addr: &NodeAddr, error: ClientError) {
        self.shared.listener_lost(addr, error);
    }

    /// Waits until `addr`'s listener is up (within the connect and command timeouts),
    /// starting it if needed; returns its client id, or why it could not start.
    pub async fn listener_id(&self, addr: &NodeAddr) -> Result<i64, ClientError> {
        let timeouts = &self.connector.timeouts;
        let deadline = Instant::now() + timeouts.connect + timeouts.command;
        loop {
            if let Some(id) = self.redirect(addr) {
                return Ok(id);
            }
            if let Some(Listener::Failed { error, .. }) = self.shared.lock().listeners.get(addr) {
                return Err(error.clone());
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout {
                    addr: addr.to_string(),
                    timeout: timeouts.connect + timeouts.command,
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn background_handle(&self) -> std::io::Result<tokio::runtime::Handle> {
        let mut background = self.background.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = background.take_if(|b| b.pid != process_id()) {
            // The parent's thread does not exist here; its runtime must not be dropped.
            std::mem::forget(old);
        }
        if background.is_none() {
            *background = Some(Background::start()?);
        }
        Ok(background.as_ref().map(|b| b.handle.clone()).expect("started"))
    }
}

/// One request's lookups and the fills of its misses. Dropped, it removes its
/// placeholders that no reply filled.
pub struct Fill<'a> {
    cache: &'a NearCache,
    token: u64,
    registered: Vec<Box<[u8]>>,
    /// The entries hits were read from and fills made, when asked for.
    stamps: Option<Vec<EntryStamp>>,
}

impl Fill<'_> {
    /// Keeps a stamp of each entry a lookup hits or a fill makes from here on.
    pub fn stamp(&mut self) {
        self.stamps.get_or_insert_with(Vec::new);
    }

    /// The stamps kept since `stamp`, in the order of their lookups and fills.
    pub fn take_stamps(&mut self) -> Option<Vec<EntryStamp>> {
        self.stamps.take()
    }

    /// Each key's cached `fields` (in order), or `None` for a miss, whose placeholder
    /// is then registered.
    pub fn lookup<'k>(
        &mut self,
        keys: impl Iterator<Item = &'k [u8]>,
        fields: &[Vec<u8>],
    ) -> Vec<Option<Strings>> {
        let shared = &self.cache.shared;
        let now = Instant::now();
        let mut state = shared.lock();
        let (mut hits, mut misses) = (0, 0);
        let found = keys
            .map(|key| {
                let (hit, expired) = match state.entries.get(key) {
                    Some(entry) if entry.expires > now => {
                        let values: Option<Vec<Option<&[u8]>>> =
                            fields.iter().map(|f| entry.value(f)).collect();
                        if let (Some(stamps), Some(_)) = (&mut self.stamps, &values) {
                            stamps.push(EntryStamp {
                                key: key.into(),
                                version: entry.version,
                            });
                        }
                        (values.map(Strings::from_items), false)
                    }
                    found => (None, found.is_some()),
                };
                if expired {
                    state.remove(key);
                }
                if hit.is_some() {
                    hits += 1;
                } else {
                    misses += 1;
                    state.filling.insert(key.into(), self.token);
                    self.registered.push(key.into());
                }
                hit
            })
            .collect();
        shared.counters.hits.fetch_add(hits, Ordering::Relaxed);
        shared.counters.misses.fetch_add(misses, Ordering::Relaxed);
        found
    }

    /// Caches `key`'s `fields` as `values` read, unless an invalidation or a flush came
    /// since its lookup. `expires_in` is the key's own remaining time to live.
    pub fn complete(
        &mut self,
        key: &[u8],
        fields: &[Vec<u8>],
        values: &Strings,
        expires_in: Option<Duration>,
    ) {
        let shared = &self.cache.shared;
        let config = &shared.config;
        let staleness = expires_in.map_or(config.max_staleness, |ttl| ttl.min(config.max_staleness));
        let expires = Instant::now() + staleness;
        let mut state = shared.lock();
        if state.filling.get(key) != Some(&self.token) {
            return;
        }
        state.filling.remove(key);
        state.last_version += 1;
        let version = state.last_version;
        let entry = match state.entries.pop(key) {
            Some(old) => {
                state.bytes -= old.cost(key);
                old.merged(fields, values, expires, version)
            }
            None => Entry::new(
                fields.iter().map(Vec::as_slice).zip(values.iter()),
                expires,
                version,
            ),
        };
        let cost = entry.cost(key);
        if cost > config.max_bytes {
            return;
        }
        if let Some(stamps) = &mut self.stamps {
            stamps.push(EntryStamp {
                key: key.into(),
                version,
            });
        }
        state.bytes += cost;
        state.entries.push(key.into(), entry);
        let mut evicted = 0;
        while state.bytes > config.max_bytes
            || config.max_entries.is_some_and(|max| state.entries.len() > max)
        {
            let Some((key, entry)) = state.entries.pop_lru() else {
                break;
            };
            state.bytes -= entry.cost(&key);
            evicted += 1;
        }
        shared.counters.evictions.fetch_add(evicted, Ordering::Relaxed);
    }
}

impl Drop for Fill<'_> {
    fn drop(&mut self) {
        if self.registered.is_empty() {
            return;
        }
        let mut state = self.cache.shared.lock();
        for key in self.registered.drain(..) {
            if state.filling.get(&key) == Some(&self.token) {
                state.filling.remove(&key);
            }
        }
    }
}

/// Asks `connection` for its client id and subscribes it to invalidations.
async fn subscribe(
    connection: &mut super::connection::Connection,
    addr: &NodeAddr,
    timeout: Duration,
) -> Result<i64, ClientError> {
    let mut setup = Pipeline::new();
    setup.push(Command::new("CLIENT").arg("ID"));
    setup.push(Command::new("SUBSCRIBE").arg(INVALIDATE_CHANNEL));
    let replies = tokio::time::timeout(timeout, connection.exchange_replies(&setup, addr))
        .await
        .map_err(|_| ClientError::Timeout {
            addr: addr.to_string(),
            timeout,
        })??;
    if let Some(err) = replies
        .iter()
        .find_map(|reply| super::client::server_error(addr, reply))
    {
        return Err(err);
    }
    replies[0].integer().ok_or_else(|| ClientError::Protocol {
        addr: addr.to_string(),
        command: "CLIENT ID",
        reply: "not an integer".into(),
    })
}

/// Runs `addr`'s listener until its connection fails or the cache is dropped: applies
/// each invalidation, and pings to learn of a connection lost without a word.
async fn listen(shared: Weak<Shared>, connector: Connector, addr: NodeAddr) {
    let listened = async {
        let mut connection = connector.connect(&addr, Role::Data).await?;
        let client_id = subscribe(&mut connection, &addr, connector.timeouts.command).await?;
        {
            let Some(shared) = shared.upgrade() else {
                return Ok(());
            };
            shared
                .lock()
                .listeners
                .insert(addr.clone(), Listener::Up { client_id });
        }
        let pong_within = PONG_WITHIN.min(connector.timeouts.command);
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut unanswered_since: Option<Instant> = None;
        let ping_bytes = Command::new("PING").to_bytes();
        let lost = |reason: String| ClientError::Io {
            addr: addr.to_string(),
            reason,
        };
        let mut messages = Vec::new();
        loop {
            resp::parse_replies(&mut connection.received, usize::MAX, false, &mut messages)
                .map_err(|err| lost(err.to_string()))?;
            let Some(cache) = shared.upgrade() else {
                return Ok(());
            };
            for message in messages.drain(..) {
                match message {
                    Reply::Array(mut parts) if parts.len() == 3 && parts[0].text() == Some(b"message") => {
                        match parts.pop() {
                            Some(Reply::Array(keys)) => cache.invalidate(&keys),
                            // FLUSHALL/FLUSHDB: a nil for "every key".
                            _ => cache.flush(),
                        }
                    }
                    Reply::Array(parts) if parts.first().and_then(Reply::text) == Some(b"pong") => {
                        unanswered_since = None;
                    }
                    other => {
                        if let Some(err) = super::client::server_error(&addr, &other) {
                            return Err(err);
                        }
                    }
                }
            }
            drop(cache);
            tokio::select! {
                read = connection.io.read_buf(&mut connection.received) => {
                    if read.map_err(|err| lost(err.to_string()))? == 0 {
                        return Err(lost("closed by the server".into()));
                    }
                }
                _ = ping.tick() => {
                    if unanswered_since.is_some_and(|since| since.elapsed() > pong_within) {
                        return Err(lost(format!("no answer to PING within {pong_within:?}")));
                    }
                    if unanswered_since.is_none() {
                        connection.io.write_all(&ping_bytes).await.map_err(|err| lost(err.to_string()))?;
                        unanswered_since = Some(Instant::now());
                    }
                }
            }
        }
    };
    let result: Result<(), ClientError> = listened.await;
    if let (Err(error), Some(shared)) = (result, shared.upgrade()) {
        shared.listener_lost(&addr, error);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A cache that is filled by hand (its connector's address is never dialled).
    pub(crate) fn cache(max_entries: Option<usize>, max_bytes: usize) -> NearCache {
        let settings =
            super::super::ConnectionSettings::parse("localhost:1", super::super::Topology::Standalone)
                .unwrap();
        let connector = Connector::new(&settings, settings.timeouts()).unwrap();
        NearCache::new(
            NearCacheConfig {
                max_entries,
                max_bytes,
                max_staleness: Duration::from_secs(60),
                invalidation: Invalidation::Tracking,
            },
            connector,
        )
    }

    /// Redis' invalidation of `key`, as the listener hands it over.
    pub(crate) fn invalidate(cache: &NearCache, key: &'static str) {
        cache.shared.invalidate(&[Reply::Bulk(key.into())]);
    }

    pub(crate) fn fields(names: &[&str]) -> Vec<Vec<u8>> {
        names.iter().map(|n| n.as_bytes().to_vec()).collect()
    }

    pub(crate) fn values(items: &[Option<&str>]) -> Strings {
        Strings::from_items(items.iter().map(|v| v.map(str::as_bytes)))
    }

    /// `key` looked up (a miss) and filled with `value` for `fields`' one field.
    fn fill_one(cache: &NearCache, key: &[u8], fields: &[Vec<u8>], value: &str, key_ttl: Option<Duration>) {
        let mut fill = cache.begin();
        fill.lookup([key].into_iter(), fields);
        fill.complete(key, fields, &values(&[Some(value)]), key_ttl);
    }

    #[test]
    fn a_filled_key_is_a_hit_for_its_fields_and_a_miss_for_others() {
        let cache = cache(None, 1 << 20);
        let (ab, c) = (fields(&["a", "b"]), fields(&["c"]));
        let mut fill = cache.begin();
        assert!(fill.lookup([&b"k"[..]].into_iter(), &ab)[0].is_none());
        fill.complete(b"k", &ab, &values(&[Some("1"), None]), None);
        drop(fill);
        let mut fill = cache.begin();
        let hit = fill
            .lookup([&b"k"[..]].into_iter(), &fields(&["b", "a"]))
            .remove(0)
            .unwrap();
        assert_eq!((hit.get(0), hit.get(1)), (None, Some(&b"1"[..])));
        assert!(fill.lookup([&b"k"[..]].into_iter(), &c)[0].is_none());
        fill.complete(b"k", &c, &values(&[Some("3")]), None);
        let merged = fill
            .lookup([&b"k"[..]].into_iter(), &fields(&["c", "a"]))
            .remove(0)
            .unwrap();
        assert_eq!((merged.get(0), merged.get(1)), (Some(&b"3"[..]), Some(&b"1"[..])));
        assert_eq!((cache.stats().hits, cache.stats().misses), (2, 2));
    }

    #[test]
    fn an_invalidation_or_flush_during_a_fill_refuses_its_reply() {
        let cache = cache(None, 1 << 20);
        let f = fields(&["a"]);
        let mut fill = cache.begin();
        fill.lookup([&b"k"[..], &b"j"[..]].into_iter(), &f);
        invalidate(&cache, "k");
        fill.complete(b"k", &f, &values(&[Some("old")]), None);
        fill.complete(b"j", &f, &values(&[Some("1")]), None);
        assert_eq!(cache.stats().entries, 1, "only j is cached");
        let mut fill = cache.begin();
        fill.lookup([&b"k"[..]].into_iter(), &f);
        cache.flush();
        fill.complete(b"k", &f, &values(&[Some("old")]), None);
        assert_eq!(cache.stats().entries, 0);
    }

    #[test]
    fn a_later_fill_of_the_same_key_takes_the_placeholder_over() {
        let cache = cache(None, 1 << 20);
        let f = fields(&["a"]);
        let mut first = cache.begin();
        first.lookup([&b"k"[..]].into_iter(), &f);
        let mut second = cache.begin();
        second.lookup([&b"k"[..]].into_iter(), &f);
        first.complete(b"k", &f, &values(&[Some("1")]), None);
        assert_eq!(
            cache.stats().entries,
            0,
            "the first fill's placeholder was replaced"
        );
        drop(first);
        second.complete(b"k", &f, &values(&[Some("2")]), None);
        assert_eq!(cache.stats().entries, 1);
    }

    #[test]
    fn entries_and_bytes_stay_within_their_bounds_evicting_the_least_recently_used() {
        let cache = cache(Some(3), 1 << 20);
        let f = fields(&["a"]);
        let keys: Vec<Vec<u8>> = (0..5).map(|i| format!("k{i}").into_bytes()).collect();
        for key in &keys {
            fill_one(&cache, key, &f, "v", None);
            // k0 stays the most recently used.
            cache.begin().lookup([&keys[0][..]].into_iter(), &f);
        }
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.evictions), (3, 2));
        assert!(cache.begin().lookup([&keys[0][..]].into_iter(), &f)[0].is_some());
        assert!(cache.begin().lookup([&keys[1][..]].into_iter(), &f)[0].is_none());
    }

    #[test]
    fn bytes_stay_within_their_bound() {
        let cache = cache(None, 4096);
        let f = fields(&["field"]);
        let value = "x".repeat(100);
        for i in 0..1000 {
            fill_one(&cache, format!("key{i}").as_bytes(), &f, &value, None);
        }
        let stats = cache.stats();
        assert!(stats.evictions > 900 && stats.bytes <= 4096, "{stats:?}");
    }

    #[test]
    fn an_entry_is_not_served_past_its_keys_expiry() {
        let cache = cache(None, 1 << 20);
        let f = fields(&["a"]);
        fill_one(&cache, b"k", &f, "1", Some(Duration::from_millis(20)));
        assert!(cache.begin().lookup([&b"k"[..]].into_iter(), &f)[0].is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(cache.begin().lookup([&b"k"[..]].into_iter(), &f)[0].is_none());
    }
}
