//! `MemoryInterceptorLayer`: the configuration and the `tower::Layer`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Uri};
use memory_probe::{PressureSignal, Reclaimer};
use tower_layer::Layer;

use crate::governor::{Governor, GovernorConfig};
use crate::inflight::InFlight;
use crate::ledger::Ledger;
use crate::pressure::PressureAborter;
use crate::registry::Registry;
use crate::report::{ABORTED_METRIC, ALLOCATED_METRIC, HEAVY_METRIC, MemoryReport, NET_METRIC};
use crate::service::MemoryInterceptor;

/// Requests that allocate at least this many bytes are heavy by default (50 MiB).
pub const DEFAULT_HEAVY_THRESHOLD: u64 = 50 << 20;

type ReportFn = dyn Fn(&MemoryReport) + Send + Sync;
type RouteFn = dyn Fn(&Method, &Uri) -> Option<&'static str> + Send + Sync;

/// Settings shared by every service the layer makes.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) heavy_threshold: u64,
    pub(crate) reclaimer: Option<Reclaimer>,
    pub(crate) on_report: Option<Arc<ReportFn>>,
    pub(crate) ledger: Option<Ledger>,
    pub(crate) max_request_memory: Option<u64>,
    pub(crate) pressure: Option<Arc<PressureAborter>>,
    pub(crate) pressure_settings: Option<PressureSettings>,
    pub(crate) governor: Option<Arc<Governor>>,
    pub(crate) governor_settings: Option<GovernorConfig>,
    /// In-flight accounts, kept when something picks victims among them (pressure, governor).
    pub(crate) registry: Option<Arc<Registry>>,
    /// A request joins the registry once it holds this much: no victim search looks at less.
    pub(crate) register_at: u64,
    /// The smaller of `register_at` and the heavy threshold: below it a poll boundary looks at
    /// nothing more (see `Tracker::watch`).
    pub(crate) watch_at: u64,
    /// Whether logs carry the query string (`path=/a?b=c`) rather than the path alone.
    pub(crate) log_query: bool,
    pub(crate) route_fn: Option<Arc<RouteFn>>,
    pub(crate) retry_after: Duration,
    pub(crate) metrics: bool,
    /// Whether an abort can be decided outside the owner's poll (so the owner keeps its waker in
    /// the account).
    pub(crate) external_aborts: bool,
}

#[derive(Clone)]
pub(crate) struct PressureSettings {
    pub(crate) signal: PressureSignal,
    pub(crate) per_tick: usize,
    pub(crate) tick: Duration,
    pub(crate) min_bytes: u64,
}

/// A [`tower::Layer`](tower_layer::Layer) that measures, per request, the bytes the request
/// allocates and frees.
///
/// Around every poll of the response future, every `poll_frame` of the response body and the drop
/// of each, the layer reads [`memory_probe::thread_counters`] and adds the difference to that
/// request's account. The readings are taken on one thread within one poll, so they stay exact on
/// a multi-threaded runtime where the task moves between threads, and under any concurrency.
///
/// Each request ends with exactly one [`MemoryReport`] (see [`crate`] for where it goes).
///
/// The program must count allocations: install `tikv_jemallocator::Jemalloc` with
/// memory-probe's `jemalloc` feature, or [`memory_probe::CountingAlloc`]; otherwise every figure
/// reads zero (and `memory_probe::self_check` says so).
///
/// Defaults: heavy threshold 50 MiB, a [`Reclaimer`] run after heavy requests, metrics on, no
/// ledger, no quota, no pressure aborts, `Retry-After: 5` on aborts.
#[derive(Clone)]
pub struct MemoryInterceptorLayer {
    pub(crate) config: Arc<Config>,
}

impl Default for MemoryInterceptorLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryInterceptorLayer {
    /// A layer with the defaults.
    pub fn new() -> Self {
        // The clock calibrates itself on first use (under a millisecond here): not on a request.
        let _ = quanta::Instant::now();
        metrics::describe_histogram!(
            ALLOCATED_METRIC,
            metrics::Unit::Bytes,
            "Bytes allocated while serving a request"
        );
        metrics::describe_histogram!(
            NET_METRIC,
            metrics::Unit::Bytes,
            "Bytes a request still held when it ended (allocated - freed - handed to the server)"
        );
        metrics::describe_counter!(
            HEAVY_METRIC,
            metrics::Unit::Count,
            "Requests that allocated at least the heavy threshold"
        );
        metrics::describe_counter!(
            ABORTED_METRIC,
            metrics::Unit::Count,
            "Requests aborted by the memory interceptor, by reason"
        );
        MemoryInterceptorLayer {
            config: Arc::new(Config {
                heavy_threshold: DEFAULT_HEAVY_THRESHOLD,
                reclaimer: Some(Reclaimer::new()),
                on_report: None,
                ledger: None,
                max_request_memory: None,
                pressure: None,
                pressure_settings: None,
                governor: None,
                governor_settings: None,
                registry: None,
                register_at: u64::MAX,
                watch_at: DEFAULT_HEAVY_THRESHOLD,
                log_query: false,
                route_fn: None,
                retry_after: Duration::from_secs(5),
                metrics: true,
                external_aborts: false,
            }),
        }
    }

    fn update(mut self, f: impl FnOnce(&mut Config)) -> Self {
        let config = Arc::make_mut(&mut self.config);
        f(config);
        config.external_aborts = config.max_request_memory.is_some()
            || config.pressure_settings.is_some()
            || config.governor_settings.is_some();
        let registry = (config.pressure_settings.is_some() || config.governor_settings.is_some())
            .then(|| Arc::new(Registry::new()));
        config.pressure = config.pressure_settings.clone().map(|settings| {
            Arc::new(PressureAborter::new(
                settings,
                Arc::clone(
                    registry
                        .as_ref()
                        .expect("a registry with pressure settings"),
                ),
            ))
        });
        config.governor = config.governor_settings.clone().map(|settings| {
            // The cost model lives in the ledger's route entries: a private one when the user
            // gave none.
            let ledger = config.ledger.clone().unwrap_or_default();
            Arc::new(Governor::new(
                settings,
                ledger,
                Arc::clone(registry.as_ref().expect("a registry with a governor")),
            ))
        });
        config.registry = registry;
        config.register_at = config
            .pressure_settings
            .as_ref()
            .map(|p| p.min_bytes)
            .into_iter()
            .chain(config.governor_settings.as_ref().map(|g| g.floor))
            .min()
            .unwrap_or(u64::MAX);
        config.watch_at = config.register_at.min(config.heavy_threshold);
        self
    }

    /// The requests in flight that hold memory now, largest first (`None` when nothing keeps
    /// track of them: the layer keeps its registry of in-flight requests only with
    /// [`governor`](Self::governor) or [`abort_under_pressure`](Self::abort_under_pressure)).
    /// Take it after the last builder call: each call makes a new registry.
    pub fn in_flight(&self) -> Option<InFlight> {
        self.config
            .registry
            .as_ref()
            .map(|r| InFlight::new(Arc::clone(r), self.config.register_at))
    }

    /// Whether log events carry the request's query string (default false: the path alone).
    /// Queries often carry tokens, session ids and personal data; turn this on only where logs
    /// are as protected as the requests.
    #[must_use]
    pub fn log_query_strings(self, enabled: bool) -> Self {
        self.update(|c| c.log_query = enabled)
    }

    /// Puts the request under the memory governor: admission by predicted cost against one
    /// process-wide budget, growth charged at every poll boundary, parking over capacity and
    /// aborts of the requests furthest over their reservations (see [`GovernorConfig`]). Give the
    /// body layer the same budget, so buffered bodies draw from it too.
    #[must_use]
    pub fn governor(self, governor: GovernorConfig) -> Self {
        self.update(|c| c.governor_settings = Some(governor))
    }

    /// Requests that allocate at least `bytes` are heavy: a warning, the `http_heavy_requests_total`
    /// counter, and a background reclaim (default 50 MiB). A request whose held bytes cross it
    /// while it still runs is logged once at that moment too, so the cause of an OOM kill is in
    /// the logs even if the process dies before the request ends.
    pub fn heavy_threshold(self, bytes: u64) -> Self {
        self.update(|c| c.heavy_threshold = bytes)
    }

    /// The reclaimer asked to release memory after a heavy request (rate-limited and
    /// single-flight by the reclaimer itself; never awaited by the request). Share the one the rest
    /// of the service uses, so their runs are coordinated. Default: a reclaimer of its own.
    pub fn reclaimer(self, reclaimer: Reclaimer) -> Self {
        self.update(|c| c.reclaimer = Some(reclaimer))
    }

    /// Does not reclaim after heavy requests.
    pub fn without_reclaim(self) -> Self {
        self.update(|c| c.reclaimer = None)
    }

    /// Calls `f` with every report, on the thread that ends the request: keep it short.
    pub fn on_report<F>(self, f: F) -> Self
    where
        F: Fn(&MemoryReport) + Send + Sync + 'static,
    {
        self.update(|c| c.on_report = Some(Arc::new(f)))
    }

    /// Records every request's allocated bytes per route in `ledger` (the "memory-intensive
    /// endpoints" view).
    pub fn ledger(self, ledger: Ledger) -> Self {
        self.update(|c| c.ledger = Some(ledger))
    }

    /// Per-request memory quota: when a request holds more than `bytes` at a poll boundary, the
    /// layer drops the handler's future (freeing what it holds) and answers 503 with
    /// `Retry-After` and a body that says why; if the response body is already streaming, the
    /// body ends with an [`AbortError`](crate::AbortError).
    pub fn max_request_memory(self, bytes: u64) -> Self {
        self.update(|c| c.max_request_memory = Some(bytes))
    }

    /// Under [`Pressure::Critical`](memory_probe::Pressure::Critical) on `signal`, aborts the
    /// in-flight requests that hold the most memory, largest first: by default one request per
    /// tick of 500 ms while the pressure stays critical, among requests holding at least 1 MiB.
    /// The watcher is a Tokio task started by the first request; it ends when the last service
    /// made by this layer is dropped.
    pub fn abort_under_pressure(self, signal: PressureSignal) -> Self {
        self.update(|c| {
            c.pressure_settings = Some(PressureSettings {
                signal,
                per_tick: 1,
                tick: Duration::from_millis(500),
                min_bytes: 1 << 20,
            })
        })
    }

    /// How many requests to abort per pressure tick (default 1; needs
    /// [`abort_under_pressure`](Self::abort_under_pressure)).
    pub fn pressure_aborts_per_tick(self, n: usize) -> Self {
        self.update(|c| {
            if let Some(p) = &mut c.pressure_settings {
                p.per_tick = n.max(1);
            }
        })
    }

    /// Time between two rounds of aborts while pressure stays critical (default 500 ms).
    pub fn pressure_tick(self, tick: Duration) -> Self {
        self.update(|c| {
            if let Some(p) = &mut c.pressure_settings {
                p.tick = tick.max(Duration::from_millis(1));
            }
        })
    }

    /// Requests holding less than `bytes` are never aborted for pressure (default 1 MiB).
    pub fn pressure_abort_min_bytes(self, bytes: u64) -> Self {
        self.update(|c| {
            if let Some(p) = &mut c.pressure_settings {
                p.min_bytes = bytes;
            }
        })
    }

    /// Names the route of requests that carry no axum `MatchedPath` (plain hyper, tonic): `f`
    /// gets the method and URI and returns a static label, or `None` for [`UNMATCHED_ROUTE`].
    /// Labels are `&'static str` so that their number stays bounded whatever clients send.
    ///
    /// [`UNMATCHED_ROUTE`]: crate::UNMATCHED_ROUTE
    pub fn route_classifier<F>(self, f: F) -> Self
    where
        F: Fn(&Method, &Uri) -> Option<&'static str> + Send + Sync + 'static,
    {
        self.update(|c| c.route_fn = Some(Arc::new(f)))
    }

    /// The `Retry-After` of abort responses (default 5 s, whole seconds).
    pub fn retry_after(self, after: Duration) -> Self {
        self.update(|c| c.retry_after = after)
    }

    /// Whether to emit the `metrics` histograms and counters (default on).
    pub fn metrics(self, enabled: bool) -> Self {
        self.update(|c| c.metrics = enabled)
    }
}

impl<S> Layer<S> for MemoryInterceptorLayer {
    type Service = MemoryInterceptor<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MemoryInterceptor::new(inner, Arc::clone(&self.config))
    }
}

impl fmt::Debug for MemoryInterceptorLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt(f)
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
                &self.pressure_settings.as_ref().map(|p| p.signal.current()),
            )
            .field("governor", &self.governor_settings)
            .field("route_classifier", &self.route_fn.is_some())
            .field("retry_after", &self.retry_after)
            .field("metrics", &self.metrics)
            .field("log_query_strings", &self.log_query)
            .finish()
    }
}
