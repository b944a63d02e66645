//! The server's Prometheus metrics: requests and a latency histogram per endpoint and
//! status, Redis errors, requests handed to Feast's app, requests in flight.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
struct Series {
    count: u64,
    sum_seconds: f64,
    buckets: [u64; BUCKETS.len()],
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), Series>>,
    in_flight: AtomicI64,
    redis_errors: AtomicU64,
    fallbacks: AtomicU64,
}

/// Counts a request in flight while it lives.
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One metric without labels, with its HELP and TYPE lines.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP feast_redis_rs_{name} {help}");
    let _ = writeln!(out, "# TYPE feast_redis_rs_{name} {kind}");
    let _ = writeln!(out, "feast_redis_rs_{name} {value}");
}

impl Metrics {
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

    pub fn record(&self, endpoint: &str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let series = requests.entry((endpoint.to_owned(), status)).or_default();
        series.count += 1;
        series.sum_seconds += seconds;
        if let Some(bucket) = BUCKETS.iter().position(|&bound| seconds <= bound) {
            series.buckets[bucket] += 1;
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP feast_redis_rs_requests_total HTTP requests by endpoint and status.\n");
        out.push_str("# TYPE feast_redis_rs_requests_total counter\n");
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        for ((endpoint, status), series) in requests.iter() {
            let _ = writeln!(
                out,
                "feast_redis_rs_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {}",
                series.count
            );
        }
        out.push_str("# HELP feast_redis_rs_request_duration_seconds Time to answer a request.\n");
        out.push_str("# TYPE feast_redis_rs_request_duration_seconds histogram\n");
        for ((endpoint, status), series) in requests.iter() {
            let labels = format!("endpoint=\"{endpoint}\",status=\"{status}\"");
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(series.buckets) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "feast_redis_rs_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "feast_redis_rs_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                series.count
            );
            let _ = writeln!(
                out,
                "feast_redis_rs_request_duration_seconds_sum{{{labels}}} {}",
                series.sum_seconds
            );
            let _ = writeln!(
                out,
                "feast_redis_rs_request_duration_seconds_count{{{labels}}} {}",
                series.count
            );
        }
        drop(requests);
        let counters = [
            (
                "redis_errors_total",
                "counter",
                "Requests that failed talking to Redis.",
                &self.redis_errors,
            ),
            (
                "feast_fallbacks_total",
                "counter",
                "Requests answered by Feast's app.",
                &self.fallbacks,
            ),
        ];
        for (name, kind, help, value) in counters {
            single(&mut out, name, kind, help, value.load(Ordering::Relaxed));
        }
        single(
            &mut out,
            "requests_in_flight",
            "gauge",
            "Requests being answered.",
            self.in_flight.load(Ordering::Relaxed),
        );
        out
    }
}
