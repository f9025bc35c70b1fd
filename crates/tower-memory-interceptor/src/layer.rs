//! `MemoryInterceptorLayer`: the builder and the `tower::Layer`.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{Method, Uri};
use tower_layer::Layer;
use tower_memory_probe::{PressureSignal, Reclaimer};

use crate::config::{Config, GovernorConfig};
use crate::inflight::InFlight;
use crate::ledger::Ledger;
use crate::report::MemoryReport;
use crate::service::MemoryInterceptor;
use crate::shared::Shared;

/// A [`tower::Layer`](tower_layer::Layer) that measures, per request, the bytes the request
/// allocates and frees.
///
/// Around every poll of the response future, every `poll_frame` of the response body and the drop
/// of each, the layer reads [`tower_memory_probe::thread_counters`] and adds the difference to that
/// request's account. The readings are taken on one thread within one poll, so they stay exact on
/// a multi-threaded runtime where the task moves between threads, and under any concurrency.
///
/// Each request ends with exactly one [`MemoryReport`] (see [`crate`] for where it goes).
///
/// The program must count allocations: install `tikv_jemallocator::Jemalloc` with
/// tower-memory-probe's `jemalloc` feature, or [`tower_memory_probe::CountingAlloc`]; otherwise every figure
/// reads zero (and `tower_memory_probe::self_check` says so).
///
/// Defaults: heavy threshold 50 MiB, a [`Reclaimer`] run after heavy requests, metrics on, no
/// ledger, no quota, no pressure aborts, `Retry-After: 1` on aborts
/// ([`tower_memory_probe::DEFAULT_RETRY_AFTER`]).
///
/// The builder methods may come in any order. What they configure is built once, when the layer
/// makes its first service (or [`in_flight`](Self::in_flight) is asked for); a builder method
/// called after that starts afresh (a new registry, aborter and governor).
#[derive(Clone)]
pub struct MemoryInterceptorLayer {
    config: Config,
    // Shared by clones, so that every service made from one layer shares one governor and one
    // registry; replaced (not emptied) by a builder method.
    shared: Arc<OnceLock<Arc<Shared>>>,
}

impl Default for MemoryInterceptorLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryInterceptorLayer {
    /// A layer with the defaults.
    #[must_use]
    pub fn new() -> Self {
        // The clock calibrates itself on first use (under a millisecond here): not on a request.
        let _ = quanta::Instant::now();
        crate::metrics::describe_metrics();
        MemoryInterceptorLayer {
            config: Config::default(),
            shared: Arc::default(),
        }
    }

    fn update(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(&mut self.config);
        self.shared = Arc::default();
        self
    }

    /// What the services share, built from the configuration on first use.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        self.shared
            .get_or_init(|| Arc::new(Shared::new(self.config.clone())))
    }

    /// The requests in flight that hold memory now, largest first (`None` when nothing keeps
    /// track of them: the layer keeps its registry of in-flight requests only with
    /// [`governor`](Self::governor) or [`abort_under_pressure`](Self::abort_under_pressure)).
    /// Take it after the last builder call: a builder call afterwards makes a new registry.
    pub fn in_flight(&self) -> Option<InFlight> {
        let shared = self.shared();
        shared
            .registry
            .as_ref()
            .map(|r| InFlight::new(Arc::clone(r), shared.register_at))
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
        self.update(|c| c.governor = Some(governor))
    }

    /// Requests that allocate at least `bytes` are heavy: a warning, the `http_heavy_requests_total`
    /// counter, and a background reclaim (default 50 MiB). A request whose held bytes cross it
    /// while it still runs is logged once at that moment too, so the cause of an OOM kill is in
    /// the logs even if the process dies before the request ends.
    #[must_use]
    pub fn heavy_threshold(self, bytes: u64) -> Self {
        self.update(|c| c.heavy_threshold = bytes)
    }

    /// The reclaimer asked to release memory after a heavy request (rate-limited and
    /// single-flight by the reclaimer itself; never awaited by the request). Share the one the rest
    /// of the service uses, so their runs are coordinated. Default: a reclaimer of its own.
    #[must_use]
    pub fn reclaimer(self, reclaimer: Reclaimer) -> Self {
        self.update(|c| c.reclaimer = Some(reclaimer))
    }

    /// Does not reclaim after heavy requests.
    #[must_use]
    pub fn without_reclaim(self) -> Self {
        self.update(|c| c.reclaimer = None)
    }

    /// Calls `f` with every report, on the thread that ends the request: keep it short.
    #[must_use]
    pub fn on_report<F>(self, f: F) -> Self
    where
        F: Fn(&MemoryReport) + Send + Sync + 'static,
    {
        self.update(|c| c.on_report = Some(Arc::new(f)))
    }

    /// Records every request's allocated bytes per route in `ledger` (the "memory-intensive
    /// endpoints" view).
    #[must_use]
    pub fn ledger(self, ledger: Ledger) -> Self {
        self.update(|c| c.ledger = Some(ledger))
    }

    /// Per-request memory quota: when a request holds more than `bytes` at a poll boundary, the
    /// layer drops the handler's future (freeing what it holds) and answers 503 with
    /// `Retry-After` and a body that says why; if the response body is already streaming, the
    /// body ends with an [`AbortError`](crate::AbortError).
    #[must_use]
    pub fn max_request_memory(self, bytes: u64) -> Self {
        self.update(|c| c.max_request_memory = Some(bytes))
    }

    /// Under [`Pressure::Critical`](tower_memory_probe::Pressure::Critical) on `signal`, aborts the
    /// in-flight requests that hold the most memory, largest first: by default one request per
    /// tick of 500 ms while the pressure stays critical, among requests holding at least 1 MiB.
    /// The watcher is a Tokio task started by the first request; it ends when the last service
    /// made by this layer is dropped.
    #[must_use]
    pub fn abort_under_pressure(self, signal: PressureSignal) -> Self {
        self.update(|c| c.pressure.signal = Some(signal))
    }

    /// How many requests to abort per pressure tick (default 1; takes effect with
    /// [`abort_under_pressure`](Self::abort_under_pressure), called before or after).
    #[must_use]
    pub fn pressure_aborts_per_tick(self, n: usize) -> Self {
        self.update(|c| c.pressure.per_tick = n.max(1))
    }

    /// Time between two rounds of aborts while pressure stays critical (default 500 ms).
    #[must_use]
    pub fn pressure_tick(self, tick: Duration) -> Self {
        self.update(|c| c.pressure.tick = tick.max(Duration::from_millis(1)))
    }

    /// Requests holding less than `bytes` are never aborted for pressure (default 1 MiB).
    #[must_use]
    pub fn pressure_abort_min_bytes(self, bytes: u64) -> Self {
        self.update(|c| c.pressure.min_bytes = bytes)
    }

    /// Names the route of requests that carry no axum `MatchedPath` (plain hyper, tonic): `f`
    /// gets the method and URI and returns a static label, or `None` for [`UNMATCHED_ROUTE`].
    /// Labels are `&'static str` so that their number stays bounded whatever clients send.
    ///
    /// [`UNMATCHED_ROUTE`]: crate::UNMATCHED_ROUTE
    #[must_use]
    pub fn route_classifier<F>(self, f: F) -> Self
    where
        F: Fn(&Method, &Uri) -> Option<&'static str> + Send + Sync + 'static,
    {
        self.update(|c| c.route_fn = Some(Arc::new(f)))
    }

    /// The `Retry-After` of abort and refusal responses (default
    /// [`DEFAULT_RETRY_AFTER`](tower_memory_probe::DEFAULT_RETRY_AFTER), 1 s; whole seconds, rounded
    /// up, at least 1).
    #[must_use]
    pub fn retry_after(self, after: Duration) -> Self {
        self.update(|c| c.retry_after = after)
    }

    /// Whether to emit the `metrics` histograms and counters (default on).
    #[must_use]
    pub fn metrics(self, enabled: bool) -> Self {
        self.update(|c| c.metrics = enabled)
    }
}

impl<S> Layer<S> for MemoryInterceptorLayer {
    type Service = MemoryInterceptor<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MemoryInterceptor::new(inner, Arc::clone(self.shared()))
    }
}

impl fmt::Debug for MemoryInterceptorLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tower_memory_probe::{MemoryBudget, PressureSignal};

    use super::*;

    /// The pressure settings the layer's services would use.
    fn pressure(layer: &MemoryInterceptorLayer) -> (usize, Duration, u64, u64) {
        let shared = layer.shared();
        let settings = &shared.config.pressure;
        assert!(shared.pressure.is_some(), "an aborter");
        (
            settings.per_tick,
            settings.tick,
            settings.min_bytes,
            shared.register_at,
        )
    }

    #[test]
    fn builder_order_does_not_matter() {
        let signal = PressureSignal::new();
        let before = MemoryInterceptorLayer::new()
            .pressure_aborts_per_tick(3)
            .pressure_tick(Duration::from_millis(20))
            .pressure_abort_min_bytes(4096)
            .abort_under_pressure(signal.clone());
        let after = MemoryInterceptorLayer::new()
            .abort_under_pressure(signal.clone())
            .pressure_abort_min_bytes(4096)
            .pressure_tick(Duration::from_millis(20))
            .pressure_aborts_per_tick(3);
        let expected = (3, Duration::from_millis(20), 4096, 4096);
        assert_eq!(pressure(&before), expected);
        assert_eq!(pressure(&after), expected);

        // The governor's floor and the pressure minimum: the smaller decides who registers,
        // whichever was set first.
        let budget = MemoryBudget::new(1 << 30);
        let a = MemoryInterceptorLayer::new()
            .governor(GovernorConfig::new(budget.clone()).admission_floor(1 << 20))
            .pressure_abort_min_bytes(8192)
            .abort_under_pressure(signal.clone());
        let b = MemoryInterceptorLayer::new()
            .abort_under_pressure(signal)
            .pressure_abort_min_bytes(8192)
            .governor(GovernorConfig::new(budget).admission_floor(1 << 20));
        assert_eq!(a.shared().register_at, 8192);
        assert_eq!(b.shared().register_at, 8192);
        assert!(a.shared().governor.is_some() && b.shared().governor.is_some());
    }

    #[test]
    fn built_once_and_shared_by_clones_until_a_builder_call() {
        let layer = MemoryInterceptorLayer::new().abort_under_pressure(PressureSignal::new());
        let clone = layer.clone();
        assert!(Arc::ptr_eq(layer.shared(), clone.shared()), "one aborter");
        assert!(Arc::ptr_eq(layer.shared(), layer.shared()), "built once");
        let first = Arc::clone(layer.shared());
        let changed = layer.pressure_aborts_per_tick(2);
        assert!(!Arc::ptr_eq(&first, changed.shared()), "built afresh");
        assert_eq!(changed.shared().config.pressure.per_tick, 2);
    }
}
