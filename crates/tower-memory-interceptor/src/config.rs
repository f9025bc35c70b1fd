//! The layer's configuration: what the builder methods set. At the bottom of the crate's import
//! graph: it names the ledger, the report and tower-memory-probe's types, nothing that runs requests.
//! The pieces built from it once (the pressure aborter, the governor, the registry) are in
//! `shared.rs`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Method, Uri};
use tower_memory_probe::{DEFAULT_RETRY_AFTER, MemoryBudget, PressureSignal, Reclaimer};

use crate::ledger::Ledger;
use crate::report::MemoryReport;

/// Requests that allocate at least this many bytes are heavy by default (50 MiB).
pub const DEFAULT_HEAVY_THRESHOLD: u64 = 50 << 20;

// Defined in tower-memory-probe beside the budget, so tower-memory-health reads them without this
// crate; re-exported here, where the governor uses them.
pub use tower_memory_probe::{DEFAULT_FLOOR, DEFAULT_PARK_TIMEOUT, DEFAULT_QUEUE_TIMEOUT};

/// Default reservation of a route's first request, while its cost is unknown (1 MiB).
pub const DEFAULT_UNSEEN_COST: u64 = 1 << 20;
/// Default longest wait for a route's first request to show its cost (200 ms).
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(200);

pub(crate) type ReportFn = dyn Fn(&MemoryReport) + Send + Sync;
pub(crate) type RouteFn = dyn Fn(&Method, &Uri) -> Option<&'static str> + Send + Sync;

/// What the builder methods of [`MemoryInterceptorLayer`](crate::MemoryInterceptorLayer) set.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) heavy_threshold: u64,
    pub(crate) reclaimer: Option<Reclaimer>,
    pub(crate) on_report: Option<Arc<ReportFn>>,
    pub(crate) ledger: Option<Ledger>,
    pub(crate) max_request_memory: Option<u64>,
    pub(crate) pressure: PressureOptions,
    pub(crate) governor: Option<GovernorConfig>,
    /// Whether logs carry the query string (`path=/a?b=c`) rather than the path alone.
    pub(crate) log_query: bool,
    pub(crate) route_fn: Option<Arc<RouteFn>>,
    pub(crate) retry_after: Duration,
    pub(crate) metrics: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            heavy_threshold: DEFAULT_HEAVY_THRESHOLD,
            reclaimer: Some(Reclaimer::new()),
            on_report: None,
            ledger: None,
            max_request_memory: None,
            pressure: PressureOptions::default(),
            governor: None,
            log_query: false,
            route_fn: None,
            retry_after: DEFAULT_RETRY_AFTER,
            metrics: true,
        }
    }
}

impl Config {
    /// What logs show of a request's target: the path alone, or with its query string when the
    /// layer was told to log queries (they carry tokens often enough to stay out by default).
    pub(crate) fn logged_path<'a>(&self, target: &'a PathAndQuery) -> &'a str {
        if self.log_query {
            target.as_str()
        } else {
            target.path()
        }
    }
}

/// Largest-first aborts under critical pressure: kept whatever order the builder methods come
/// in; they take effect when a signal is given.
#[derive(Clone)]
pub(crate) struct PressureOptions {
    pub(crate) signal: Option<PressureSignal>,
    pub(crate) per_tick: usize,
    pub(crate) tick: Duration,
    pub(crate) min_bytes: u64,
}

impl Default for PressureOptions {
    fn default() -> Self {
        PressureOptions {
            signal: None,
            per_tick: 1,
            tick: Duration::from_millis(500),
            min_bytes: 1 << 20,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryInterceptorLayer")
            .field("heavy_threshold", &self.heavy_threshold)
            .field("reclaimer", &self.reclaimer)
            .field("on_report", &self.on_report.is_some())
            .field("ledger", &self.ledger)
            .field("max_request_memory", &self.max_request_memory)
            .field(
                "abort_under_pressure",
                &self.pressure.signal.as_ref().map(PressureSignal::current),
            )
            .field("governor", &self.governor)
            .field("route_classifier", &self.route_fn.is_some())
            .field("retry_after", &self.retry_after)
            .field("metrics", &self.metrics)
            .field("log_query_strings", &self.log_query)
            .finish()
    }
}

/// Settings of the memory governor: one process-wide [`MemoryBudget`] that keeps the sum of what
/// requests hold under the memory limit by construction, not by sampling.
///
/// - **Admission by predicted cost**: before the inner service is called, a request reserves its
///   route's learned cost (the `quantile`, default p95, of the peak memory its requests held,
///   recent ones weighing most). A reservation that does not fit waits in the budget's FIFO queue
///   (bounded by the budget's `max_queue` and by `admission_timeout`), then gets 503 with
///   `Retry-After`. Requests predicted under the `admission_floor` are admitted at once and never queue
///   behind heavy ones. A route's first request runs as a probe reserving `unseen_cost`; the
///   route's other requests wait for it up to `probe_timeout`.
/// - **Growth charged at poll boundaries**: what a request holds beyond its reservation (and
///   beyond the `admission_floor`, which every request may hold uncharged) is charged when its poll returns:
///   one atomic addition. Over capacity, the request is parked (not polled) until memory frees;
///   after `park_timeout` the request furthest over its reservation is aborted (503 with
///   `Retry-After`, or the body's error once streaming), largest first; after three timeouts a
///   parked request is aborted itself. Nothing stays parked for ever.
/// - **Corrected as it runs**: when the response is ready the reservation shrinks to what the
///   request holds; when it ends everything goes back, on every path.
///
/// Defaults: floor 64 KiB, unseen cost 1 MiB, quantile 0.95 with a half-life of 64 requests,
/// queue timeout 5 s, park timeout 500 ms, probe timeout 200 ms.
///
/// ```
/// use std::time::Duration;
/// use tower_memory_interceptor::{GovernorConfig, MemoryInterceptorLayer};
/// use tower_memory_probe::MemoryBudget;
///
/// let budget = MemoryBudget::new(512 << 20);
/// let layer = MemoryInterceptorLayer::new().governor(
///     GovernorConfig::new(budget.clone()).admission_timeout(Duration::from_secs(2)),
/// );
/// # let _ = layer;
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct GovernorConfig {
    pub(crate) budget: MemoryBudget,
    pub(crate) floor: u64,
    pub(crate) unseen_cost: u64,
    pub(crate) quantile: f64,
    pub(crate) half_life: u32,
    pub(crate) queue_timeout: Duration,
    pub(crate) park_timeout: Duration,
    pub(crate) probe_timeout: Duration,
}

impl fmt::Debug for GovernorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GovernorConfig")
            .field("budget", &self.budget)
            .field("floor", &self.floor)
            .field("unseen_cost", &self.unseen_cost)
            .field("quantile", &self.quantile)
            .field("half_life", &self.half_life)
            .field("queue_timeout", &self.queue_timeout)
            .field("park_timeout", &self.park_timeout)
            .field("probe_timeout", &self.probe_timeout)
            .finish()
    }
}

impl GovernorConfig {
    /// A governor over `budget` with the defaults.
    #[must_use]
    pub fn new(budget: MemoryBudget) -> Self {
        GovernorConfig {
            budget,
            floor: DEFAULT_FLOOR,
            unseen_cost: DEFAULT_UNSEEN_COST,
            quantile: 0.95,
            half_life: 64,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            park_timeout: DEFAULT_PARK_TIMEOUT,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
        }
    }

    /// Requests predicted to hold less than `bytes` are admitted without a reservation and never
    /// queue; every request may hold this much uncharged (default 64 KiB).
    #[must_use]
    pub fn admission_floor(mut self, bytes: u64) -> Self {
        self.floor = bytes;
        self
    }

    /// What a route's first request reserves while the route's cost is unknown (default 1 MiB).
    #[must_use]
    pub fn unseen_cost(mut self, bytes: u64) -> Self {
        self.unseen_cost = bytes;
        self
    }

    /// The quantile of a route's peak memory that its requests reserve (default 0.95; clamped to
    /// 0.5..=1).
    #[must_use]
    pub fn quantile(mut self, quantile: f64) -> Self {
        self.quantile = if quantile.is_finite() {
            quantile.clamp(0.5, 1.0)
        } else {
            0.95
        };
        self
    }

    /// After how many newer requests a request's peak counts half as much (default 64).
    #[must_use]
    pub fn half_life(mut self, requests: u32) -> Self {
        self.half_life = requests.max(1);
        self
    }

    /// Longest wait in the admission queue before the 503 (default 5 s).
    #[must_use]
    pub fn admission_timeout(mut self, wait: Duration) -> Self {
        self.queue_timeout = wait;
        self
    }

    /// How long a request stays parked before the request furthest over its reservation is
    /// aborted (default 500 ms).
    #[must_use]
    pub fn park_timeout(mut self, wait: Duration) -> Self {
        self.park_timeout = wait.max(Duration::from_millis(1));
        self
    }

    /// Longest wait for a route's first request to show the route's cost (default 200 ms).
    #[must_use]
    pub fn probe_timeout(mut self, wait: Duration) -> Self {
        self.probe_timeout = wait;
        self
    }

    /// The budget.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }
}
