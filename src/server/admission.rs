//! Which native reads run now, which wait for a place and which are shed.
//!
//! Reads in service share what is slowest (the server's CPU, Redis' CPU, the network):
//! past the point where one of them is busy, every read added makes all of them slower;
//! below it, more reads at once only add throughput. The number in service adapts
//! between the two from how long reads take. A read's time unqueued is the mean of
//! `PROBE_READS` reads that ran with at most `least` in service; when none has been
//! seen for `PROBE_EVERY` while reads wait, only `least` are let in until it is
//! measured (as Envoy's adaptive concurrency does). Every `WINDOW` the mean time in
//! service is compared with it: well above it, the limit shrinks; near it, the limit
//! grows while it is what holds reads back.
//!
//! Reads past the limit wait, first come first served, up to `QUIET_WAIT`, behind at
//! most `most` others: a burst, or a crowd of clients each waiting for its answer
//! before asking again, is served in turn. More arrivals than the queue holds is
//! overload (they come faster than they are served): from then on, until a whole
//! `OVERLOAD_WINDOW` sheds nothing, the newest waiting read is served first and a read
//! waiting longer than `overload_wait` is shed (Facebook's adaptive LIFO with CoDel's
//! short queue timeout). What is answered under overload keeps its latency, and what
//! is refused is refused fast.
//!
//! Refusing costs CPU too. Under overload the limit also shrinks while the server's
//! workers never rest: a worker that is always busy reads the requests waiting in its
//! sockets later and later, a queue no limit here sees, and the clients' latency grows
//! without bound while every read here looks fast.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};

/// How long a read may wait for a place when the server is not overloaded.
const QUIET_WAIT: Duration = Duration::from_secs(1);
/// Overload lasts until a window this long in which no read was shed.
const OVERLOAD_WINDOW: Duration = Duration::from_millis(100);
/// How often the limit is adjusted, from the reads that ended meanwhile.
const WINDOW: Duration = Duration::from_millis(10);
/// Under overload, workers busy this share of a window are saturated: the limit
/// shrinks; it grows back only under `RESTED`.
const SATURATED: f64 = 0.95;
const RESTED: f64 = 0.9;
/// A window's mean time in service this many times the unqueued one (and `SLACK`
/// above it) means reads queue on something: the limit shrinks.
const QUEUED: f64 = 2.0;
const SLACK: Duration = Duration::from_micros(500);
/// Reads timed at the floor to measure the unqueued time, and how often.
const PROBE_READS: u32 = 16;
const PROBE_EVERY: Duration = Duration::from_secs(10);

/// Why a read got no place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// As many reads are waiting as may.
    QueueFull,
    /// It waited as long as it may.
    Waited(Duration),
}

pub struct Admission {
    state: Mutex<State>,
    /// Wakes the waiting reads when overload begins: from then on they wait
    /// `overload_wait` at most (a waiting read sleeps until its turn or its deadline).
    overload_began: Notify,
    /// Reads in service at most, and reads waiting at most.
    most: usize,
    /// Fewest reads in service the limit shrinks to.
    least: usize,
    overload_wait: Duration,
}

/// Reads ended in a span of time, and how long they were in service.
#[derive(Default)]
struct Served {
    reads: u32,
    service: Duration,
}

impl Served {
    fn mean(&self) -> f64 {
        self.service.as_secs_f64() / f64::from(self.reads.max(1))
    }
}

struct State {
    limit: usize,
    in_service: usize,
    /// Oldest first; a waiter that left is dropped when its turn comes.
    waiting: VecDeque<oneshot::Sender<()>>,
    /// Waiters still waiting.
    waiters: usize,
    overloaded: bool,
    /// The overload window: when it began, and whether a read was shed in it.
    overload_window: Instant,
    shed_in_window: bool,
    /// The limit's window, and whether the limit held reads back in it.
    adjusted: Instant,
    served: Served,
    limit_reached: bool,
    /// The mean time in service of reads that ran alone (at most `least` in service),
    /// last measured, and when; the reads since.
    unqueued: Option<f64>,
    measured: Option<Instant>,
    alone: Served,
    /// While reads are held at `least` to measure it: the limit to return to.
    probing: Option<usize>,
    /// The workers' busy time when the limit's window began.
    busy_at_window: Option<Duration>,
}

/// A read's place in service, given back when dropped.
pub struct Place<'a> {
    admission: &'a Admission,
    since: Instant,
    /// It began with at most `least` reads in service.
    alone: bool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        let admission = self.admission;
        let mut state = admission.lock();
        state.in_service -= 1;
        let service = now.duration_since(self.since);
        state.served.reads += 1;
        state.served.service += service;
        if self.alone {
            state.alone.reads += 1;
            state.alone.service += service;
        }
        state.adjust(now, admission.most, admission.least);
        state.grant_waiting();
    }
}

/// A read waiting for a place. Dropped before it is given one (its client left, or it
/// waited too long), it leaves the queue; given one meanwhile, it gives it back.
struct Ticket<'a> {
    admission: &'a Admission,
    granted: oneshot::Receiver<()>,
    placed: bool,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.placed {
            return;
        }
        let mut state = self.admission.lock();
        // Under the lock no place can be granted between these two calls.
        self.granted.close();
        if self.granted.try_recv().is_ok() {
            state.in_service -= 1;
            state.grant_waiting();
        } else {
            state.waiters -= 1;
        }
    }
}

impl State {
    /// Gives places to waiting reads, as many as the limit allows: the oldest first,
    /// the newest first under overload.
    fn grant_waiting(&mut self) {
        while self.in_service < self.limit {
            let next = if self.overloaded {
                self.waiting.pop_back()
            } else {
                self.waiting.pop_front()
            };
            let Some(waiter) = next else { return };
            if waiter.send(()).is_ok() {
                self.in_service += 1;
                self.waiters -= 1;
            }
        }
    }

    /// A read was shed: a full queue begins overload (true when it began now), any
    /// shedding prolongs it.
    fn shed(&mut self, now: Instant, why: Shed) -> bool {
        self.shed_in_window = true;
        if matches!(why, Shed::QueueFull) && !self.overloaded {
            self.overloaded = true;
            self.overload_window = now;
            return true;
        }
        false
    }

    /// Ends overload after a window in which nothing was shed.
    fn roll_overload_window(&mut self, now: Instant) {
        if !self.overloaded || now.duration_since(self.overload_window) < OVERLOAD_WINDOW {
            return;
        }
        self.overloaded = self.shed_in_window;
        self.shed_in_window = false;
        self.overload_window = now;
    }

    /// After a read ended: takes the unqueued time when enough reads ran alone (ending
    /// a measurement), starts a measurement when it is stale and reads wait; otherwise,
    /// once per window, shrinks the limit when reads queued (towards the limit under
    /// which they would not, by at most half) or, under overload, when the workers
    /// were saturated, and grows it when neither and it held reads back.
    fn adjust(&mut self, now: Instant, most: usize, least: usize) {
        if self.alone.reads >= PROBE_READS {
            // Under overload a read alone still shares the workers with the requests
            // being refused: what it measures is an upper bound.
            let measured = self.alone.mean();
            self.unqueued = Some(match self.unqueued {
                Some(before) if self.overloaded => before.min(measured),
                _ => measured,
            });
            self.measured = Some(now);
            self.alone = Served::default();
            if let Some(limit) = self.probing.take() {
                self.limit = limit;
                self.restart_window(now);
                return;
            }
        }
        if self.probing.is_some() {
            return;
        }
        let stale = self
            .measured
            .is_none_or(|at| now.duration_since(at) >= PROBE_EVERY);
        if stale && self.waiters > 0 {
            self.probing = Some(self.limit);
            self.limit = least;
            self.alone = Served::default();
            self.restart_window(now);
            return;
        }
        let window = now.duration_since(self.adjusted);
        if window < WINDOW {
            return;
        }
        let busy = workers_busy();
        let busy_share = match (busy, self.busy_at_window) {
            (Some((busy, workers)), Some(before)) => {
                busy.saturating_sub(before).as_secs_f64() / (window.as_secs_f64() * workers)
            }
            _ => 0.0,
        };
        if let Some(unqueued) = self.unqueued {
            let mean = self.served.mean();
            let unqueued_bound = (unqueued * QUEUED).max(unqueued + SLACK.as_secs_f64());
            let held_back = self.limit_reached || self.waiters > 0;
            if mean > unqueued_bound {
                let unqueued_limit = (self.limit as f64 * unqueued_bound / mean) as usize;
                self.limit = unqueued_limit.max(self.limit / 2).max(least);
            } else if self.overloaded && busy_share >= SATURATED {
                self.limit = (self.limit * 3 / 4).max(least);
            } else if held_back && !(self.overloaded && busy_share >= RESTED) {
                self.limit = (self.limit + 1 + self.limit / 8).min(most);
            }
        }
        self.restart_window_with(now, busy);
    }

    fn restart_window(&mut self, now: Instant) {
        self.restart_window_with(now, workers_busy());
    }

    /// Starts the limit's window at `now`, when the workers had been `busy`.
    fn restart_window_with(&mut self, now: Instant, busy: Option<(Duration, f64)>) {
        self.adjusted = now;
        self.busy_at_window = busy.map(|(busy, _)| busy);
        self.served = Served::default();
        self.limit_reached = false;
    }
}

/// The time the runtime's workers have been busy, all together, and how many there are.
fn workers_busy() -> Option<(Duration, f64)> {
    let metrics = tokio::runtime::Handle::try_current().ok()?.metrics();
    let workers = metrics.num_workers();
    let busy = (0..workers)
        .map(|worker| metrics.worker_total_busy_duration(worker))
        .sum();
    Some((busy, workers as f64))
}

impl Admission {
    /// At most `most` reads in service and `most` waiting; the limit in service starts
    /// at `most` and never goes under `least`.
    pub fn new(most: usize, least: usize, overload_wait: Duration) -> Self {
        let most = most.max(1);
        let least = least.clamp(1, most);
        let now = Instant::now();
        Self {
            state: Mutex::new(State {
                limit: most,
                in_service: 0,
                waiting: VecDeque::new(),
                waiters: 0,
                overloaded: false,
                overload_window: now,
                shed_in_window: false,
                adjusted: now,
                served: Served::default(),
                limit_reached: false,
                unqueued: None,
                measured: None,
                alone: Served::default(),
                probing: None,
                busy_at_window: None,
            }),
            overload_began: Notify::new(),
            most,
            least,
            overload_wait,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads in service now, and the limit on them.
    pub fn in_service(&self) -> (usize, usize) {
        let state = self.lock();
        (state.in_service, state.limit)
    }

    /// A place in service, at once or after waiting.
    pub async fn enter(&self) -> Result<Place<'_>, Shed> {
        let arrived = Instant::now();
        let granted = {
            let mut state = self.lock();
            state.roll_overload_window(arrived);
            if state.in_service < state.limit && state.waiters == 0 {
                state.in_service += 1;
                return Ok(Place {
                    admission: self,
                    since: arrived,
                    alone: state.in_service <= self.least,
                });
            }
            state.limit_reached = true;
            if state.waiters >= self.most {
                if state.shed(arrived, Shed::QueueFull) {
                    drop(state);
                    self.overload_began.notify_waiters();
                }
                return Err(Shed::QueueFull);
            }
            let (grant, granted) = oneshot::channel();
            state.waiting.push_back(grant);
            state.waiters += 1;
            granted
        };
        let mut ticket = Ticket {
            admission: self,
            granted,
            placed: false,
        };
        // Until its turn, or its deadline: `QUIET_WAIT`, or `overload_wait` while the
        // server is overloaded (overload may begin, or end, while it waits).
        let given = loop {
            let onset = self.overload_began.notified();
            tokio::pin!(onset);
            // Registered before the state is read: an onset after it wakes this read.
            onset.as_mut().enable();
            let overloaded = {
                let mut state = self.lock();
                state.roll_overload_window(Instant::now());
                state.overloaded
            };
            let deadline = arrived
                + if overloaded {
                    self.overload_wait
                } else {
                    QUIET_WAIT
                };
            if Instant::now() >= deadline {
                break false;
            }
            tokio::select! {
                biased;
                given = &mut ticket.granted => break given.is_ok(),
                () = tokio::time::sleep_until(deadline.into()) => {}
                () = &mut onset, if !overloaded => {}
            }
        };
        let mut state = self.lock();
        if given || ticket.granted.try_recv().is_ok() {
            ticket.placed = true;
            return Ok(Place {
                admission: self,
                since: Instant::now(),
                alone: state.in_service <= self.least,
            });
        }
        let waited = arrived.elapsed();
        state.shed(Instant::now(), Shed::Waited(waited));
        drop(state);
        Err(Shed::Waited(waited))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const OVERLOAD_WAIT: Duration = Duration::from_millis(5);

    #[tokio::test]
    async fn reads_past_the_limit_wait_in_order_and_get_the_place_given_back() {
        let admission = Admission::new(2, 2, OVERLOAD_WAIT);
        let first = admission.enter().await.unwrap();
        let _second = admission.enter().await.unwrap();
        let waiting = admission.enter();
        tokio::pin!(waiting);
        assert!(tokio::time::timeout(Duration::from_millis(2), &mut waiting)
            .await
            .is_err());
        drop(first);
        let _third = tokio::time::timeout(Duration::from_millis(50), waiting)
            .await
            .expect("a place given back goes to the read waiting")
            .unwrap();
        assert_eq!(admission.in_service(), (2, 2));
    }

    #[tokio::test]
    async fn a_full_queue_sheds_at_once() {
        let admission = Admission::new(1, 1, OVERLOAD_WAIT);
        let _held = admission.enter().await.unwrap();
        let waiting = admission.enter();
        tokio::pin!(waiting);
        assert!(tokio::time::timeout(Duration::from_millis(1), &mut waiting)
            .await
            .is_err());
        let started = Instant::now();
        assert_eq!(admission.enter().await.err(), Some(Shed::QueueFull));
        assert!(started.elapsed() < Duration::from_millis(20));
    }

    #[tokio::test]
    async fn a_read_that_stops_waiting_leaves_no_place_taken() {
        let admission = Admission::new(1, 1, OVERLOAD_WAIT);
        let held = admission.enter().await.unwrap();
        {
            let waiting = admission.enter();
            tokio::pin!(waiting);
            assert!(tokio::time::timeout(Duration::from_millis(1), &mut waiting)
                .await
                .is_err());
        }
        drop(held);
        assert_eq!(admission.in_service(), (0, 1));
        let _again = tokio::time::timeout(Duration::from_millis(10), admission.enter())
            .await
            .expect("the place is free")
            .unwrap();
    }

    #[tokio::test]
    async fn a_full_queue_begins_overload_where_the_newest_is_served_first_and_waits_are_short() {
        let admission = Admission::new(2, 2, OVERLOAD_WAIT);
        let first = admission.enter().await.unwrap();
        let second = admission.enter().await.unwrap();
        // Not overloaded: a waiting read is given its turn in order, within QUIET_WAIT.
        let oldest = admission.enter();
        let newest = admission.enter();
        tokio::pin!(oldest, newest);
        assert!(tokio::time::timeout(2 * OVERLOAD_WAIT, &mut oldest)
            .await
            .is_err());
        assert!(tokio::time::timeout(Duration::from_millis(1), &mut newest)
            .await
            .is_err());
        // One more than the queue holds: overload.
        assert_eq!(admission.enter().await.err(), Some(Shed::QueueFull));
        drop(first);
        let _newest = tokio::time::timeout(Duration::from_millis(50), &mut newest)
            .await
            .expect("under overload the newest waiting read is served first")
            .unwrap();
        let started = Instant::now();
        match oldest.await {
            Err(Shed::Waited(_)) => assert!(started.elapsed() < Duration::from_millis(50)),
            other => panic!("{:?}", other.err()),
        }
        drop(second);
        // A window without shedding ends overload: a lone read waits its turn again.
        tokio::time::sleep(OVERLOAD_WINDOW).await;
        let _ = admission.enter().await.unwrap();
        tokio::time::sleep(OVERLOAD_WINDOW).await;
        let held = admission.enter().await.unwrap();
        let waiting = admission.enter();
        tokio::pin!(waiting);
        assert!(tokio::time::timeout(4 * OVERLOAD_WAIT, &mut waiting)
            .await
            .is_err());
        drop(held);
        let _ = waiting.await.unwrap();
    }

    /// Reads one after another, each held `each`, for `during`.
    async fn serve_for(admission: &Admission, each: Duration, during: Duration) {
        let until = Instant::now() + during;
        while Instant::now() < until {
            let _place = admission.enter().await.unwrap();
            tokio::time::sleep(each).await;
        }
    }

    /// Reads one after another for `during`, each held `each` times the reads in service.
    async fn serve_shared(admission: &Admission, each: Duration, during: Duration) {
        let until = Instant::now() + during;
        while Instant::now() < until {
            let _place = admission.enter().await.unwrap();
            let sharing = admission.in_service().0 as u32;
            tokio::time::sleep(each * sharing).await;
        }
    }

    /// Reads one after another for `during`, each keeping a worker busy for `each` (on
    /// a worker: the test's own thread is not one).
    async fn serve_busy(admission: &Arc<Admission>, each: Duration, during: Duration) {
        let admission = Arc::clone(admission);
        tokio::spawn(async move {
            let until = Instant::now() + during;
            while Instant::now() < until {
                let _place = admission.enter().await.unwrap();
                std::thread::sleep(each);
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
    }

    /// Holds every place and fills the queue, then asks once more: overload.
    async fn overload(admission: &Admission, most: usize) {
        let mut held = Vec::new();
        for _ in 0..most {
            held.push(admission.enter().await.unwrap());
        }
        let waiting = futures_util::future::join_all((0..most).map(|_| admission.enter()));
        tokio::pin!(waiting);
        assert!(tokio::time::timeout(Duration::from_millis(1), &mut waiting)
            .await
            .is_err());
        assert_eq!(admission.enter().await.err(), Some(Shed::QueueFull));
        drop(held);
        for read in waiting.await {
            let _ = read;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn under_overload_the_limit_shrinks_while_the_workers_never_rest() {
        let admission = Arc::new(Admission::new(4, 1, OVERLOAD_WAIT));
        let each = Duration::from_millis(1);
        serve_busy(&admission, each, 2 * PROBE_READS * each).await;
        serve_busy(&admission, each, 5 * WINDOW).await;
        assert_eq!(
            admission.in_service().1,
            4,
            "reads at their unqueued time leave the limit alone, however busy the worker"
        );
        overload(&admission, 4).await;
        // The same reads, now under overload: the worker never rests, the limit shrinks.
        serve_busy(&admission, each, 5 * WINDOW).await;
        assert!(admission.in_service().1 < 4, "{:?}", admission.in_service());
    }

    #[tokio::test]
    async fn the_limit_shrinks_when_reads_queue_and_grows_back_while_it_holds_back_reads_that_do_not() {
        let admission = Admission::new(16, 2, OVERLOAD_WAIT);
        assert_eq!(admission.in_service().1, 16, "it starts at its ceiling");
        // Long enough that a timer's jitter on a busy machine does not look like queueing.
        let each = Duration::from_millis(5);
        // Reads alone: the unqueued time.
        serve_for(&admission, each, 2 * PROBE_READS * each).await;
        assert_eq!(
            admission.in_service().1,
            16,
            "unqueued reads leave the limit alone"
        );
        // Eight at once, sharing what serves them: each takes as many times longer as
        // there are reads in service (they queue on something).
        let shared = || serve_shared(&admission, each, 20 * WINDOW);
        tokio::join!(
            shared(),
            shared(),
            shared(),
            shared(),
            shared(),
            shared(),
            shared(),
            shared()
        );
        let limit = admission.in_service().1;
        assert!(
            limit < 8,
            "the limit falls under the crowd sharing the server: {limit}"
        );
        // Fast again, four at once, held back by the limit: it grows.
        tokio::join!(
            serve_for(&admission, each, 8 * WINDOW),
            serve_for(&admission, each, 8 * WINDOW),
            serve_for(&admission, each, 8 * WINDOW),
            serve_for(&admission, each, 8 * WINDOW),
        );
        assert!(admission.in_service().1 >= 4, "{:?}", admission.in_service());
    }
}
