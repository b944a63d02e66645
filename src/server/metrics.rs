//! The server's Prometheus metrics: requests and a latency histogram per route and
//! status, Redis errors, requests handed to Feast's app and those refused, connections
//! open and ended, log lines dropped. A route is one of a fixed list of path templates
//! (the native ones and Feast's app's), every other path counts as `other`: a client
//! cannot add series. Requests record into atomics; the lock is taken only to add a
//! series and, briefly, to list them when rendering.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::connection::{Closed, ClosedCounts};
use super::memo::MemoStats;
use crate::redis::NearCacheStats;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The label of every path that matches no route.
const OTHER_ROUTE: &str = "other";

#[derive(Default)]
struct Series {
    count: AtomicU64,
    sum_nanos: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
}

impl Series {
    fn observe(&self, elapsed: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Why a request was refused before it was answered.
#[derive(Clone, Copy, Debug)]
pub enum Refused {
    BodyTooLarge,
    BodyTimeout,
    TooManyRows,
    TooManyCells,
    MemoryBudget,
    Overloaded,
    FallbackQueueFull,
    FallbackQueueTimeout,
    Streams,
    TransformQueueTimeout,
}

impl Refused {
    const ALL: [Refused; 10] = [
        Refused::BodyTooLarge,
        Refused::BodyTimeout,
        Refused::TooManyRows,
        Refused::TooManyCells,
        Refused::MemoryBudget,
        Refused::Overloaded,
        Refused::FallbackQueueFull,
        Refused::FallbackQueueTimeout,
        Refused::Streams,
        Refused::TransformQueueTimeout,
    ];

    fn label(self) -> &'static str {
        match self {
            Refused::BodyTooLarge => "body_too_large",
            Refused::BodyTimeout => "body_timeout",
            Refused::TooManyRows => "too_many_rows",
            Refused::TooManyCells => "too_many_cells",
            Refused::MemoryBudget => "memory_budget",
            Refused::Overloaded => "overloaded",
            Refused::FallbackQueueFull => "fallback_queue_full",
            Refused::FallbackQueueTimeout => "fallback_queue_timeout",
            Refused::Streams => "streaming_calls",
            Refused::TransformQueueTimeout => "transform_queue_timeout",
        }
    }
}

/// Values the server reads from elsewhere when the metrics are rendered.
pub struct Gauges {
    pub connections_open: usize,
    pub log_lines_dropped: u64,
    pub reads_in_service: usize,
    pub read_limit: usize,
    /// On-demand transformations running, and reads waiting for one to end.
    pub transformations: (usize, usize),
    /// Pipelines sent to Redis on the server's shared connections, and the writes that
    /// carried them.
    pub redis_pipelines: u64,
    pub redis_writes: u64,
    /// The client's near cache, when the config asks for one, and the answers kept
    /// beside it.
    pub near_cache: Option<(NearCacheStats, MemoStats)>,
}

/// A request series: its route, HTTP status and gRPC code (for gRPC calls).
type SeriesKey = (usize, u16, Option<i32>);

pub struct Metrics {
    routes: Vec<String>,
    series: RwLock<HashMap<SeriesKey, Arc<Series>>>,
    in_flight: AtomicI64,
    redis_errors: AtomicU64,
    fallbacks: AtomicU64,
    auth_decisions: AtomicU64,
    refused: [AtomicU64; Refused::ALL.len()],
    pub closed: Arc<ClosedCounts>,
}

/// Counts a request in flight while it lives.
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Whether `path` is an instance of `template` (`{name}` matches one segment).
fn matches(template: &str, path: &str) -> bool {
    if !template.contains('{') {
        return template == path;
    }
    let mut segments = path.split('/');
    template.split('/').all(|part| {
        segments
            .next()
            .is_some_and(|segment| part == segment || (part.starts_with('{') && !segment.is_empty()))
    }) && segments.next().is_none()
}

/// One metric without labels, with its HELP and TYPE lines.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP feast_redis_rs_{name} {help}");
    let _ = writeln!(out, "# TYPE feast_redis_rs_{name} {kind}");
    let _ = writeln!(out, "feast_redis_rs_{name} {value}");
}

impl Metrics {
    /// Metrics whose requests are counted by `routes` (path templates).
    pub fn new(routes: Vec<String>) -> Self {
        Self {
            routes,
            series: RwLock::default(),
            in_flight: AtomicI64::default(),
            redis_errors: AtomicU64::default(),
            fallbacks: AtomicU64::default(),
            auth_decisions: AtomicU64::default(),
            refused: Default::default(),
            closed: Arc::default(),
        }
    }

    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    pub fn redis_error(&self) {
        self.redis_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// Feast's code decided a request of a repo with `auth` for the native path.
    pub fn auth_decided(&self) {
        self.auth_decisions.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self, why: Refused) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The route of `path`: the index of the first template it matches (an unknown path
    /// counts as "other").
    pub fn route(&self, path: &str) -> usize {
        self.routes
            .iter()
            .position(|template| matches(template, path))
            .unwrap_or(self.routes.len())
    }

    /// Counts a request to `route` answered with `status` (and, for a gRPC call, the
    /// code its headers carry: a call answered with a message carries its OK in the
    /// trailers) in `elapsed`. The write lock is taken only for a series' first request.
    pub fn record(&self, route: usize, status: u16, grpc_code: Option<i32>, elapsed: Duration) {
        let key = (route, status, grpc_code);
        if let Some(series) = self.series.read().unwrap_or_else(|e| e.into_inner()).get(&key) {
            series.observe(elapsed);
            return;
        }
        let mut series = self.series.write().unwrap_or_else(|e| e.into_inner());
        series.entry(key).or_default().observe(elapsed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut listed: Vec<(SeriesKey, Arc<Series>)> = {
            let series = self.series.read().unwrap_or_else(|e| e.into_inner());
            series
                .iter()
                .map(|(key, series)| (*key, Arc::clone(series)))
                .collect()
        };
        listed.sort_by_key(|(key, _)| *key);
        let labels: Vec<String> = listed
            .iter()
            .map(|((route, status, grpc_code), _)| {
                let mut labels = String::from("endpoint=\"");
                label(
                    &mut labels,
                    self.routes.get(*route).map_or(OTHER_ROUTE, String::as_str),
                );
                let _ = write!(labels, "\",status=\"{status}\"");
                if let Some(code) = grpc_code {
                    let _ = write!(labels, ",grpc_code=\"{:?}\"", tonic::Code::from_i32(*code));
                }
                labels
            })
            .collect();
        let mut out = String::new();
        out.push_str(
            "# HELP feast_redis_rs_requests_total Requests by endpoint and status (and gRPC code).\n",
        );
        out.push_str("# TYPE feast_redis_rs_requests_total counter\n");
        for (labels, (_, series)) in labels.iter().zip(&listed) {
            let count = series.count.load(Ordering::Relaxed);
            let _ = writeln!(out, "feast_redis_rs_requests_total{{{labels}}} {count}");
        }
        out.push_str("# HELP feast_redis_rs_request_duration_seconds Time to answer a request.\n");
        out.push_str("# TYPE feast_redis_rs_request_duration_seconds histogram\n");
        for (labels, (_, series)) in labels.iter().zip(&listed) {
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(&series.buckets) {
                cumulative += count.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "feast_redis_rs_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let count = series.count.load(Ordering::Relaxed).max(cumulative);
            let seconds = series.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "feast_redis_rs_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "feast_redis_rs_request_duration_seconds_sum{{{labels}}} {seconds}"
            );
            let _ = writeln!(
                out,
                "feast_redis_rs_request_duration_seconds_count{{{labels}}} {count}"
            );
        }
        out.push_str("# HELP feast_redis_rs_requests_refused_total Requests refused at a limit, by limit.\n");
        out.push_str("# TYPE feast_redis_rs_requests_refused_total counter\n");
        for why in Refused::ALL {
            let count = self.refused[why as usize].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "feast_redis_rs_requests_refused_total{{limit=\"{}\"}} {count}",
                why.label()
            );
        }
        out.push_str(
            "# HELP feast_redis_rs_connections_closed_total Connections the server ended, by reason.\n",
        );
        out.push_str("# TYPE feast_redis_rs_connections_closed_total counter\n");
        for reason in Closed::ALL {
            let count = self.closed.get(reason);
            let _ = writeln!(
                out,
                "feast_redis_rs_connections_closed_total{{reason=\"{}\"}} {count}",
                reason.label()
            );
        }
        let counters = [
            (
                "redis_errors_total",
                "Requests that failed talking to Redis.",
                &self.redis_errors,
            ),
            (
                "feast_fallbacks_total",
                "Requests answered by Feast's app.",
                &self.fallbacks,
            ),
            (
                "auth_decisions_total",
                "Decisions Feast's auth made for requests read natively (kept decisions not counted).",
                &self.auth_decisions,
            ),
        ];
        for (name, help, value) in counters {
            single(&mut out, name, "counter", help, value.load(Ordering::Relaxed));
        }
        single(
            &mut out,
            "log_lines_dropped_total",
            "counter",
            "Log lines dropped because stderr was full or closed.",
            gauges.log_lines_dropped,
        );
        single(
            &mut out,
            "requests_in_flight",
            "gauge",
            "Requests being answered.",
            self.in_flight.load(Ordering::Relaxed),
        );
        single(
            &mut out,
            "connections_open",
            "gauge",
            "Client connections open.",
            gauges.connections_open,
        );
        single(
            &mut out,
            "reads_in_service",
            "gauge",
            "Online requests being read natively.",
            gauges.reads_in_service,
        );
        single(
            &mut out,
            "read_limit",
            "gauge",
            "Online requests that may be read natively at once now (adapts to the load, up to --max-concurrent-reads).",
            gauges.read_limit,
        );
        single(
            &mut out,
            "transformations_running",
            "gauge",
            "On-demand transformations Feast's code is running for native reads.",
            gauges.transformations.0,
        );
        single(
            &mut out,
            "transformations_waiting",
            "gauge",
            "Native reads waiting for a transformation to end (at most --transform-queue-timeout).",
            gauges.transformations.1,
        );
        single(
            &mut out,
            "redis_pipelines_total",
            "counter",
            "Pipelines (a request's commands to one node) sent to Redis.",
            gauges.redis_pipelines,
        );
        single(
            &mut out,
            "redis_writes_total",
            "counter",
            "Writes to Redis that carried them: pipelines of concurrent requests share a write.",
            gauges.redis_writes,
        );
        if let Some((cache, memo)) = &gauges.near_cache {
            let counts: [(&str, &str, &str, u64); 10] = [
                ("near_cache_hits_total", "counter", "Entity keys answered from the near cache.", cache.hits),
                ("near_cache_misses_total", "counter", "Entity keys of cached views read from Redis.", cache.misses),
                ("near_cache_evictions_total", "counter", "Entries dropped to stay within max_entries/max_bytes.", cache.evictions),
                ("near_cache_invalidations_total", "counter", "Cached keys Redis invalidated (written, deleted or expired by any client).", cache.invalidations),
                ("near_cache_flushes_total", "counter", "Times every entry was dropped: a lost invalidation connection, FLUSHALL, failover, moved slots.", cache.flushes),
                ("near_cache_entries", "gauge", "Entries in the near cache.", cache.entries),
                ("near_cache_bytes", "gauge", "Bytes the near cache holds (counted against max_bytes).", cache.bytes),
                ("near_cache_answers_reused_total", "counter", "Requests answered with the answer kept for the same body, every entry it was read from still cached.", memo.reused),
                ("near_cache_answers", "gauge", "Answers kept for requests sent again.", memo.answers),
                ("near_cache_answer_bytes", "gauge", "Bytes the kept answers are counted for (at most a quarter of max_bytes).", memo.bytes),
            ];
            for (name, kind, help, value) in counts {
                single(&mut out, name, kind, help, value);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_count_under_their_route_template_or_other() {
        let metrics = Metrics::new(vec!["/push".into(), "/items/{name}".into()]);
        assert_eq!(metrics.route("/push"), 0);
        assert_eq!(metrics.route("/items/a"), 1);
        assert_eq!(metrics.route("/items/"), 2);
        assert_eq!(metrics.route("/items/a/b"), 2);
        assert_eq!(metrics.route("/anything"), 2);
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        label(&mut out, "a\"b\\c\nd");
        assert_eq!(out, "a\\\"b\\\\c\\nd");
    }
}
