//! One client for the three deployments Feast knows. Callers hand it a batch of
//! commands, each tagged with its key; the client sends one pipeline per node (the
//! nodes of a cluster in parallel), follows MOVED/ASK, retries with backoff after a
//! lost connection, finds a new master after a sentinel failover, and returns one reply
//! per command in the caller's order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::join_all;

use super::cluster::{key_slot, SlotMap};
use super::connection::{ConnectionGroup, Connector, NodeAddr, Pool, ReplyObserver, Role, Timeouts};
use super::error::ClientError;
use super::near_cache::{Invalidation, NearCache};
use super::resp::{Command, Pipeline, Reply};
use super::settings::{ClientConfig, ConnectionSettings, Topology};

/// Retries after a lost connection, and the pause before the first (doubled each time,
/// at most one second).
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub retries: u32,
    pub backoff: Duration,
}

impl RetryPolicy {
    fn pause(&self, attempt: u32) -> Duration {
        self.backoff
            .saturating_mul(1 << attempt.min(16))
            .min(Duration::from_secs(1).max(self.backoff))
    }
}

/// How often a cluster batch may be redirected or retried before giving up.
const MAX_CLUSTER_ROUNDS: usize = 16;

/// Commands to run, each with a key (its first, which decides the node in a cluster).
#[derive(Default, Clone)]
pub struct Batch {
    /// The commands in order, ready to send as they are to a single node.
    pipeline: Pipeline,
    /// Where each command's bytes end in the pipeline's.
    ends: Vec<usize>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            pipeline: Pipeline::new(),
            ends: Vec::with_capacity(capacity),
        }
    }

    /// Adds a command whose first argument after its name (after the script and the
    /// key count for EVAL/EVALSHA) is its key.
    pub fn push(&mut self, command: &Command) {
        self.pipeline.push(command);
        self.ends.push(self.pipeline.bytes().len());
    }

    /// The key of command `index`: its first argument after the name (after the script
    /// and the key count for EVAL/EVALSHA).
    fn key(&self, index: usize) -> Option<&[u8]> {
        fn line<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
            let end = rest.iter().position(|&b| b == b'\r')?;
            let line = &rest[..end];
            *rest = rest.get(end + 2..)?;
            Some(line)
        }
        fn bulk<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
            let len: usize = std::str::from_utf8(line(rest)?.get(1..)?).ok()?.parse().ok()?;
            let value = rest.get(..len)?;
            *rest = rest.get(len + 2..)?;
            Some(value)
        }
        let mut rest = self.encoded(index);
        line(&mut rest)?; // *<count>
        let name = bulk(&mut rest)?;
        if name.eq_ignore_ascii_case(b"EVALSHA") || name.eq_ignore_ascii_case(b"EVAL") {
            bulk(&mut rest)?; // the script or its SHA
            bulk(&mut rest)?; // how many keys
        }
        bulk(&mut rest)
    }

    /// The bytes of command `index`, as sent.
    fn encoded(&self, index: usize) -> &[u8] {
        let start = index.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.pipeline.bytes()[start..self.ends[index]]
    }

    /// The cluster slot of command `index`'s key; found only for a cluster, so the
    /// keys of a batch to one node are not hashed.
    fn slot(&self, index: usize) -> u16 {
        self.key(index).map_or(0, key_slot)
    }

    /// Its replies that are arrays of bulk strings and nils come as `Reply::Strings`.
    pub fn parse_strings_flat(&mut self) {
        self.pipeline.parse_strings_flat();
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

enum Deployment {
    Standalone(NodeAddr),
    Sentinel {
        sentinels: Vec<NodeAddr>,
        sentinel_pool: Box<Pool>,
        master_name: String,
        master: RwLock<Option<NodeAddr>>,
    },
    Cluster {
        seeds: Vec<NodeAddr>,
        slots: RwLock<Option<Arc<SlotMap>>>,
    },
}

pub struct RedisClient {
    pool: Pool,
    near_cache: Option<NearCache>,
    /// Set once a server refused scripting (see `script.rs`).
    pub(super) scripting_refused: AtomicBool,
    deployment: Deployment,
    retry: RetryPolicy,
    description: String,
}

enum Target {
    SlotOwner,
    Moved(NodeAddr),
    Ask(NodeAddr),
}

fn list(addrs: &[NodeAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn server_error(addr: &NodeAddr, reply: &Reply) -> Option<ClientError> {
    let message = reply.error()?.to_owned();
    let addr = addr.to_string();
    Some(match reply.error_code() {
        Some("NOAUTH" | "WRONGPASS" | "NOPERM") => ClientError::Auth {
            addr,
            reason: message,
        },
        _ => ClientError::Server { addr, message },
    })
}

/// A command's error reply, naming the key it was about (`WRONGTYPE` on which key?).
fn command_error(addr: &NodeAddr, reply: &Reply, batch: &Batch, index: usize) -> Option<ClientError> {
    match server_error(addr, reply)? {
        ClientError::Server { addr, message } => Some(ClientError::Server {
            addr,
            message: match batch.key(index) {
                Some(key) => format!("{message} (for key b\"{}\")", key.escape_ascii()),
                None => message,
            },
        }),
        other => Some(other),
    }
}

/// `CLIENT TRACKING on REDIRECT <client_id>`: the keys this connection reads next are
/// tracked, their invalidations sent to that client.
fn tracking_command(client_id: i64) -> Command {
    let mut command = Command::new("CLIENT");
    command
        .arg("TRACKING")
        .arg("on")
        .arg("REDIRECT")
        .arg(itoa::Buffer::new().format(client_id));
    command
}

/// Whether `addr` accepted a tracking command; when it did not (its listener is gone),
/// the cache learns of it.
fn tracking_accepted(cache: &NearCache, addr: &NodeAddr, reply: &Reply) -> bool {
    match server_error(addr, reply) {
        None => true,
        Some(error) => {
            cache.redirect_refused(addr, error);
            false
        }
    }
}

impl RedisClient {
    /// Builds the client a config describes; nothing is connected until the first command.
    pub fn from_config(config: &ClientConfig) -> Result<Self, ClientError> {
        let settings = config.settings()?;
        let mut client = Self::new(&settings, settings.timeouts(), config.retry.clone())?;
        if config.auto_pipelining {
            client.pool.share_across_threads();
        }
        if let Some(near_cache) = &config.near_cache {
            client.near_cache = Some(NearCache::new(
                near_cache.clone(),
                Connector::new(&settings, settings.timeouts())?,
            ));
        }
        Ok(client)
    }

    /// `redis_type at host:port,...`, without secrets.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Builds the client; nothing is connected until the first command.
    pub fn new(
        settings: &ConnectionSettings,
        timeouts: Timeouts,
        retry: RetryPolicy,
    ) -> Result<Self, ClientError> {
        let connector = Connector::new(settings, timeouts)?;
        let nodes: Vec<NodeAddr> = settings
            .nodes
            .iter()
            .map(|(host, port)| NodeAddr::new(host.clone(), *port))
            .collect();
        let deployment = match &settings.topology {
            Topology::Standalone => Deployment::Standalone(nodes[0].clone()),
            Topology::Cluster => Deployment::Cluster {
                seeds: nodes,
                slots: RwLock::new(None),
            },
            Topology::Sentinel { master_name } => Deployment::Sentinel {
                sentinels: nodes,
                sentinel_pool: Box::new(Pool::new(connector.clone(), Role::Sentinel)),
                master_name: master_name.clone(),
                master: RwLock::new(None),
            },
        };
        Ok(Self {
            pool: Pool::new(connector, Role::Data),
            near_cache: None,
            deployment,
            retry,
            description: settings.describe(),
            scripting_refused: AtomicBool::new(false),
        })
    }

    /// Runs every command of `batch` and returns their replies in order. A command that
    /// Redis answers with an error fails the batch with that error.
    pub async fn execute(&self, batch: &Batch) -> Result<Vec<Reply>, ClientError> {
        self.execute_observed(batch, &mut |_, _| {}).await
    }

    /// `execute`, showing each reply to `observe` (with its place in the batch) as soon
    /// as it arrives, where one node answers the whole batch; a cluster's batch is
    /// answered by several nodes at once and `observe` sees nothing of it. A batch sent
    /// again (a retry) shows its replies again, from 0.
    pub async fn execute_observed(
        &self,
        batch: &Batch,
        observe: &mut ReplyObserver<'_>,
    ) -> Result<Vec<Reply>, ClientError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        match &self.deployment {
            Deployment::Cluster { .. } => Ok(self.execute_cluster(batch, None).await?.0),
            _ => Ok(self.execute_on_master(batch, observe, None).await?.0),
        }
    }

    /// The near cache, when the config asks for one.
    pub fn near_cache(&self) -> Option<&NearCache> {
        self.near_cache.as_ref()
    }

    /// `execute` for commands whose replies may fill the near cache: each node's
    /// pipeline starts with `CLIENT TRACKING on REDIRECT` to that node's listener.
    /// Returns, with the replies, whether each command's key is now tracked (its node's
    /// listener was up and accepted as the redirect target).
    pub async fn execute_tracked(&self, batch: &Batch) -> Result<(Vec<Reply>, Vec<bool>), ClientError> {
        if batch.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let cache = self
            .near_cache
            .as_ref()
            .filter(|c| c.invalidation() == Invalidation::Tracking);
        match &self.deployment {
            Deployment::Cluster { .. } => self.execute_cluster(batch, cache).await,
            _ => {
                let (replies, tracked) = self.execute_on_master(batch, &mut |_, _| {}, cache).await?;
                Ok((replies, vec![tracked; batch.len()]))
            }
        }
    }

    /// Starts the near cache's listeners on every master and checks that each accepts
    /// `CLIENT TRACKING`; an error names the server that refused and what to change.
    pub async fn start_near_cache(&self) -> Result<(), ClientError> {
        let Some(cache) = self.near_cache.as_ref() else {
            return Ok(());
        };
        if cache.invalidation() != Invalidation::Tracking {
            return Ok(());
        }
        for master in self.masters().await? {
            let refused = |message: String| ClientError::TrackingRefused {
                addr: master.to_string(),
                message,
            };
            let client_id = cache.listener_id(&master).await.map_err(|err| match err {
                ClientError::Server { message, .. } => refused(message),
                ClientError::Auth { reason, .. } if reason.starts_with("NOPERM") => refused(reason),
                other => other,
            })?;
            let mut pipeline = Pipeline::new();
            pipeline.push(&tracking_command(client_id));
            let reply = self.send_with_retries(&master, &pipeline).await?.pop();
            if let Some(message) = reply.as_ref().and_then(Reply::error) {
                return Err(refused(message.to_owned()));
            }
        }
        Ok(())
    }

    /// Closes the connections `group`'s threads shared; for a group whose runtime has
    /// stopped.
    pub fn forget_group(&self, group: ConnectionGroup) {
        self.pool.forget_group(group);
        if let Deployment::Sentinel { sentinel_pool, .. } = &self.deployment {
            sentinel_pool.forget_group(group);
        }
    }

    /// The pipelines sent on connections shared by a group's threads, and the writes
    /// that carried them: what auto-pipelining saved.
    pub fn pipelining(&self) -> (u64, u64) {
        let counts = &self.pool.pipelining;
        (
            counts.pipelines.load(Ordering::Relaxed),
            counts.writes.load(Ordering::Relaxed),
        )
    }

    /// Whether this is a Redis Cluster, where one command's keys must share a slot.
    pub fn is_cluster(&self) -> bool {
        matches!(self.deployment, Deployment::Cluster { .. })
    }

    /// The masters that hold data: the one node, the sentinels' master, or every
    /// master of the cluster.
    pub async fn masters(&self) -> Result<Vec<NodeAddr>, ClientError> {
        match &self.deployment {
            Deployment::Standalone(addr) => Ok(vec![addr.clone()]),
            Deployment::Sentinel { .. } => Ok(vec![self.sentinel_master().await?]),
            Deployment::Cluster { .. } => Ok(self.slot_map().await?.masters().to_vec()),
        }
    }

    /// Every key matching `pattern` on every master (`SCAN MATCH`), in no set order.
    pub async fn scan(&self, pattern: &[u8]) -> Result<Vec<Vec<u8>>, ClientError> {
        let mut keys = Vec::new();
        for master in self.masters().await? {
            let mut cursor = 0u64;
            loop {
                let mut command = Command::new("SCAN");
                command
                    .arg(itoa::Buffer::new().format(cursor))
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg("1000");
                let mut pipeline = Pipeline::new();
                pipeline.push(&command);
                let reply = self.send_with_retries(&master, &pipeline).await?.pop();
                if let Some(err) = reply.as_ref().and_then(|reply| server_error(&master, reply)) {
                    return Err(err);
                }
                let parsed = match reply {
                    Some(Reply::Array(mut parts)) if parts.len() == 2 => {
                        let found = parts.pop();
                        let next = parts.pop();
                        match (next.and_then(|n| n.integer()), found) {
                            (Some(next), Some(Reply::Array(found))) => Some((next as u64, found)),
                            _ => None,
                        }
                    }
                    _ => None,
                };
                let Some((next, found)) = parsed else {
                    return Err(ClientError::Protocol {
                        addr: master.to_string(),
                        command: "SCAN",
                        reply: "not [cursor, keys]".into(),
                    });
                };
                keys.extend(found.iter().filter_map(|key| key.text().map(<[u8]>::to_vec)));
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(keys)
    }

    pub(super) async fn send_with_retries(
        &self,
        addr: &NodeAddr,
        pipeline: &Pipeline,
    ) -> Result<Vec<Reply>, ClientError> {
        let mut attempt = 0;
        loop {
            match self.pool.send(addr, pipeline).await {
                Err(err) if err.is_retryable() && attempt < self.retry.retries => {
                    tokio::time::sleep(self.retry.pause(attempt)).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn execute_on_master(
        &self,
        batch: &Batch,
        observe: &mut ReplyObserver<'_>,
        tracking: Option<&NearCache>,
    ) -> Result<(Vec<Reply>, bool), ClientError> {
        let mut attempt = 0;
        loop {
            let err = match self.send_to_master(batch, observe, tracking).await {
                Ok(values) => return Ok(values),
                Err(err) => err,
            };
            if !err.is_retryable() || attempt >= self.retry.retries {
                return Err(err);
            }
            self.forget_master();
            tokio::time::sleep(self.retry.pause(attempt)).await;
            attempt += 1;
        }
    }

    async fn send_to_master(
        &self,
        batch: &Batch,
        observe: &mut ReplyObserver<'_>,
        tracking: Option<&NearCache>,
    ) -> Result<(Vec<Reply>, bool), ClientError> {
        let master = self.current_master().await?;
        let (values, tracked) = match tracking.and_then(|cache| Some((cache, cache.redirect(&master)?))) {
            Some((cache, client_id)) => {
                let mut pipeline = Pipeline::new();
                if batch.pipeline.strings_flat() {
                    pipeline.parse_strings_flat();
                }
                pipeline.push(&tracking_command(client_id));
                for index in 0..batch.len() {
                    pipeline.push_encoded(batch.encoded(index));
                }
                let mut observe_batch = |index: usize, reply: &Reply| {
                    if let Some(index) = index.checked_sub(1) {
                        observe(index, reply);
                    }
                };
                let mut values = self
                    .pool
                    .send_observed(&master, &pipeline, &mut observe_batch)
                    .await?;
                let accepted = tracking_accepted(cache, &master, &values[0]);
                values.remove(0);
                (values, accepted)
            }
            None => (
                self.pool.send_observed(&master, &batch.pipeline, observe).await?,
                false,
            ),
        };
        let demoted = values.iter().any(|v| v.error_code() == Some("READONLY"));
        if demoted && matches!(self.deployment, Deployment::Sentinel { .. }) {
            // A failover made the master we knew a replica: find the new one.
            return Err(ClientError::Io {
                addr: master.to_string(),
                reason: "the server is now a read-only replica".into(),
            });
        }
        match values
            .iter()
            .enumerate()
            .find_map(|(index, v)| command_error(&master, v, batch, index))
        {
            Some(err) => Err(err),
            None => Ok((values, tracked)),
        }
    }

    async fn current_master(&self) -> Result<NodeAddr, ClientError> {
        match &self.deployment {
            Deployment::Standalone(addr) => Ok(addr.clone()),
            Deployment::Sentinel { .. } => self.sentinel_master().await,
            Deployment::Cluster { .. } => unreachable!("cluster batches are routed by slot"),
        }
    }

    fn forget_master(&self) {
        if let Deployment::Sentinel { master, .. } = &self.deployment {
            *master.write().unwrap_or_else(|e| e.into_inner()) = None;
            // The next master's writes reach no listener of the one forgotten.
            if let Some(cache) = &self.near_cache {
                cache.flush();
            }
        }
    }

    async fn sentinel_master(&self) -> Result<NodeAddr, ClientError> {
        let Deployment::Sentinel {
            sentinels,
            sentinel_pool,
            master_name,
            master,
        } = &self.deployment
        else {
            unreachable!("only sentinel deployments discover their master");
        };
        if let Some(known) = master.read().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(known);
        }
        let mut last_error = None;
        for sentinel in sentinels {
            let mut pipeline = Pipeline::new();
            pipeline.push(
                Command::new("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(master_name),
            );
            match sentinel_pool.send(sentinel, &pipeline).await {
                Ok(mut values) => match values.pop() {
                    Some(Reply::Array(parts)) if parts.len() == 2 => {
                        let host = parts[0].text().and_then(|h| std::str::from_utf8(h).ok());
                        let port = parts[1].integer().and_then(|p| u16::try_from(p).ok());
                        if let (Some(host), Some(port)) = (host, port) {
                            let found = NodeAddr::new(host, port);
                            *master.write().unwrap_or_else(|e| e.into_inner()) = Some(found.clone());
                            return Ok(found);
                        }
                    }
                    _ => {}
                },
                Err(err) => last_error = Some(err),
            }
        }
        match last_error {
            // No sentinel answered at all: that is a connection problem, not a name problem.
            Some(err) if err.is_retryable() || matches!(err, ClientError::Timeout { .. }) => Err(err),
            _ => Err(ClientError::NoMaster {
                sentinels: list(sentinels),
                master: master_name.clone(),
            }),
        }
    }

    async fn slot_map(&self) -> Result<Arc<SlotMap>, ClientError> {
        let Deployment::Cluster { slots, .. } = &self.deployment else {
            unreachable!("only a cluster has a slot map");
        };
        if let Some(map) = slots.read().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(map);
        }
        self.refresh_slots().await
    }

    async fn refresh_slots(&self) -> Result<Arc<SlotMap>, ClientError> {
        let Deployment::Cluster { seeds, slots } = &self.deployment else {
            unreachable!("only a cluster has a slot map");
        };
        let known = slots.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut candidates: Vec<NodeAddr> = known.map(|m| m.masters().to_vec()).unwrap_or_default();
        candidates.extend(
            seeds
                .iter()
                .filter(|s| !candidates.contains(s))
                .cloned()
                .collect::<Vec<_>>(),
        );
        let mut last_error = String::from("no node given");
        for node in &candidates {
            let mut pipeline = Pipeline::new();
            pipeline.push(Command::new("CLUSTER").arg("SLOTS"));
            match self.pool.send(node, &pipeline).await {
                Ok(values) => {
                    if let Some(err) = values.iter().find_map(|v| server_error(node, v)) {
                        last_error = err.to_string();
                        continue;
                    }
                    match values
                        .first()
                        .and_then(|reply| SlotMap::from_cluster_slots(reply, node))
                    {
                        Some(map) => {
                            let map = Arc::new(map);
                            *slots.write().unwrap_or_else(|e| e.into_inner()) = Some(map.clone());
                            return Ok(map);
                        }
                        None => {
                            last_error = format!("{node} sent a CLUSTER SLOTS reply that is not a slot list")
                        }
                    }
                }
                Err(err) => last_error = err.to_string(),
            }
        }
        Err(ClientError::NoClusterNodes {
            nodes: list(&candidates),
            reason: last_error,
        })
    }

    async fn execute_cluster(
        &self,
        batch: &Batch,
        tracking: Option<&NearCache>,
    ) -> Result<(Vec<Reply>, Vec<bool>), ClientError> {
        let asking = Command::new("ASKING").to_bytes();
        let asking = &asking;
        let mut replies: Vec<Option<Reply>> = vec![None; batch.len()];
        let mut tracked = vec![false; batch.len()];
        let mut pending: Vec<(usize, Target)> = (0..batch.len()).map(|i| (i, Target::SlotOwner)).collect();
        let mut last_error = None;
        for round in 0..MAX_CLUSTER_ROUNDS {
            let map = self.slot_map().await?;
            let mut groups: HashMap<NodeAddr, Vec<(usize, bool)>> = HashMap::new();
            for (index, target) in pending.drain(..) {
                let (addr, asking) = match target {
                    Target::SlotOwner => {
                        let slot = batch.slot(index);
                        let owner = map.owner(slot).ok_or(ClientError::SlotUncovered { slot })?;
                        (owner.clone(), false)
                    }
                    Target::Moved(addr) => (addr, false),
                    Target::Ask(addr) => (addr, true),
                };
                groups.entry(addr).or_default().push((index, asking));
            }
            let sends = groups.into_iter().map(|(addr, items)| async move {
                let mut pipeline = Pipeline::new();
                if batch.pipeline.strings_flat() {
                    pipeline.parse_strings_flat();
                }
                let redirect = tracking.and_then(|cache| Some((cache, cache.redirect(&addr)?)));
                if let Some((_, client_id)) = redirect {
                    pipeline.push(&tracking_command(client_id));
                }
                for &(index, ask) in &items {
                    if ask {
                        pipeline.push_encoded(asking);
                    }
                    pipeline.push_encoded(batch.encoded(index));
                }
                let result = self.pool.send(&addr, &pipeline).await.map(|mut values| {
                    let accepted = match redirect {
                        Some((cache, _)) if !values.is_empty() => {
                            tracking_accepted(cache, &addr, &values.remove(0))
                        }
                        _ => false,
                    };
                    (values, accepted)
                });
                (addr, items, result)
            });
            let mut refresh = false;
            let mut pause = false;
            for (addr, items, result) in join_all(sends).await {
                let (values, accepted) = match result {
                    Ok(sent) => sent,
                    Err(err) if err.is_retryable() => {
                        refresh = true;
                        pause = true;
                        pending.extend(items.into_iter().map(|(i, _)| (i, Target::SlotOwner)));
                        last_error = Some(err);
                        continue;
                    }
                    Err(err) => return Err(err),
                };
                let mut values = values.into_iter();
                for (index, asking) in items {
                    if asking {
                        values.next();
                    }
                    let value = values.next().ok_or_else(|| ClientError::Protocol {
                        addr: addr.to_string(),
                        command: "pipeline",
                        reply: "fewer replies than commands".into(),
                    })?;
                    let Some(error) = value.error() else {
                        replies[index] = Some(value);
                        tracked[index] = accepted;
                        continue;
                    };
                    // MOVED <slot> <host:port>
                    let redirect = || {
                        error
                            .split_whitespace()
                            .nth(2)
                            .and_then(|a| NodeAddr::parse_reply(a, &addr))
                    };
                    match value.error_code() {
                        Some("MOVED") => {
                            refresh = true;
                            // Slots moved: a cached key may now be written on a node
                            // that never tracked it for this cache.
                            if let Some(cache) = &self.near_cache {
                                cache.flush();
                            }
                            pending.push((index, redirect().map_or(Target::SlotOwner, Target::Moved)));
                        }
                        Some("ASK") => {
                            pending.push((index, redirect().map_or(Target::SlotOwner, Target::Ask)));
                        }
                        Some("TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "READONLY" | "LOADING") => {
                            refresh = true;
                            pause = true;
                            last_error = server_error(&addr, &value);
                            pending.push((index, Target::SlotOwner));
                        }
                        _ => return Err(command_error(&addr, &value, batch, index).expect("a server error")),
                    }
                }
            }
            if pending.is_empty() {
                let replies = replies.into_iter().map(|v| v.unwrap_or(Reply::Nil)).collect();
                return Ok((replies, tracked));
            }
            if pause {
                if round as u32 >= self.retry.retries {
                    break;
                }
                tokio::time::sleep(self.retry.pause(round as u32)).await;
            }
            if refresh {
                if let Err(err) = self.refresh_slots().await {
                    last_error = Some(err);
                }
            }
        }
        Err(last_error.unwrap_or(ClientError::TooManyRedirects(MAX_CLUSTER_ROUNDS)))
    }
}
