//! The whole stack as one layer, built from the configuration in one call.
//!
//! Applying six layers one `Router::layer` at a time makes axum box the route's service and the
//! response body again for each of them (and clone the boxed service for every request);
//! [`MemoryStackLayer`] composes them into one service type that axum boxes once. It also holds the
//! one mapping of [`MemoryConfig`] to the layers, so that no program writes it by hand.

use std::time::Duration;

use compression_layer::{Compression, CompressionLayer, Decompression, DecompressionLayer};
use http::{Method, Uri};
use memory_health::{
    BuildError, Drain, HealthLayer, HealthService, MemoryConfig, MemoryMonitor, PressureShedLayer,
    PressureShedService, StartError,
};
use memory_interceptor_layer::{InFlight, Ledger, MemoryInterceptor, MemoryInterceptorLayer};
use memory_probe::{MemoryBudget, PressureSignal, Reclaimer};
use stream_body_layer::{SpoolConfig, StreamBodyLayer, StreamBodyService};
use tower_layer::Layer;

/// Default largest request body: 1 GiB.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 1 << 30;
/// Default per-request memory quota: 1 GiB.
pub const DEFAULT_MAX_REQUEST_MEMORY: u64 = 1 << 30;
/// Routes the ledger keeps by default: 256.
pub const DEFAULT_LEDGER_ROUTES: usize = 256;
/// Routes `/health` lists by default: 10.
pub const DEFAULT_TOP_ROUTES: usize = 10;

type RouteFn = dyn Fn(&Method, &Uri) -> Option<&'static str> + Send + Sync;

/// Builds a [`MemoryStack`]; every setting has a default (stated on each method).
#[must_use]
pub struct MemoryStackBuilder {
    config: MemoryConfig,
    max_body_size: u64,
    max_request_memory: u64,
    spool: Option<SpoolConfig>,
    #[cfg(feature = "prometheus")]
    metrics: Option<memory_health::PrometheusMetrics>,
    ledger_routes: usize,
    top_routes: usize,
    prefix: Option<String>,
    route_classifier: Option<std::sync::Arc<RouteFn>>,
    admin: bool,
}

impl std::fmt::Debug for MemoryStackBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStackBuilder")
            .field("config", &self.config)
            .field("max_body_size", &self.max_body_size)
            .field("max_request_memory", &self.max_request_memory)
            .field("ledger_routes", &self.ledger_routes)
            .field("top_routes", &self.top_routes)
            .field("admin_endpoints", &self.admin)
            .finish_non_exhaustive()
    }
}

/// Why a [`MemoryStack`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StackError {
    /// The monitor's settings are invalid.
    #[error("memory monitor: {0}")]
    Monitor(#[from] BuildError),
    /// The monitor could not start (no Tokio runtime).
    #[error("memory monitor: {0}")]
    Start(#[from] StartError),
    /// Heap profiles are configured (`HEAP_PROFILE_TOKEN`, `HEAP_PROFILE_ON_EXIT`) but their
    /// directory cannot take a dump.
    #[cfg(feature = "heap-profile")]
    #[error("heap profiles: {0}")]
    Profile(#[from] memory_health::HeapProfileError),
}

impl MemoryStackBuilder {
    /// Requests with a larger body get 413 (default [`DEFAULT_MAX_BODY_SIZE`], 1 GiB).
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// The interceptor's per-request quota (default [`DEFAULT_MAX_REQUEST_MEMORY`], 1 GiB).
    pub fn max_request_memory(mut self, bytes: u64) -> Self {
        self.max_request_memory = bytes;
        self
    }

    /// Where spooled request bodies go (default: the system temporary directory, refused if it
    /// is a tmpfs).
    pub fn spool(mut self, spool: SpoolConfig) -> Self {
        self.spool = Some(spool);
        self
    }

    /// Serves `/metrics` from this recorder (default: no `/metrics`).
    #[cfg(feature = "prometheus")]
    pub fn metrics(mut self, metrics: memory_health::PrometheusMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Routes the ledger keeps before it counts the rest under `<other>` (default 256).
    pub fn ledger_routes(mut self, routes: usize) -> Self {
        self.ledger_routes = routes;
        self
    }

    /// Routes `/health` lists, most memory-intensive first (default 10).
    pub fn top_routes(mut self, routes: usize) -> Self {
        self.top_routes = routes;
        self
    }

    /// Where the health endpoints are served (default `/api`).
    pub fn health_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Names routes for services without axum's `MatchedPath` (plain hyper, tonic); see
    /// [`MemoryInterceptorLayer::route_classifier`].
    pub fn route_classifier<F>(mut self, f: F) -> Self
    where
        F: Fn(&Method, &Uri) -> Option<&'static str> + Send + Sync + 'static,
    {
        self.route_classifier = Some(std::sync::Arc::new(f));
        self
    }

    /// Serves `/metrics` and `/debug/pprof/heap` on a separate layer for an admin listener
    /// ([`MemoryStack::admin_layer`], at the root: `/metrics`, `/debug/pprof/heap`, `/health`,
    /// `/health/live`, `/health/ready`) instead of under the public prefix (default false: all
    /// endpoints under the prefix). The health and probe endpoints stay on the public layer too.
    pub fn admin_endpoints(mut self, separate: bool) -> Self {
        self.admin = separate;
        self
    }

    /// Builds the monitor, the budget, the ledger and the layers (the monitor is not started:
    /// [`MemoryStack::start`]), and applies the configured allocator profile now, whether or not
    /// the monitor will run.
    pub fn build(self) -> Result<MemoryStack, StackError> {
        let c = &self.config;
        c.apply_allocator_profile();
        // One reclaimer for the monitor's schedule and the interceptor's heavy requests: their
        // runs coalesce, share one rate limit and are counted together. One budget for what
        // requests hold: the governor's admissions and growth and the buffered bodies. One
        // pressure signal, published by the monitor, read by the layers.
        let reclaimer = Reclaimer::new();
        let budget = c.budget();
        let signal = PressureSignal::new();
        let ledger = Ledger::new(self.ledger_routes);

        let mut interceptor = MemoryInterceptorLayer::new()
            .ledger(ledger.clone())
            .reclaimer(reclaimer.clone())
            .max_request_memory(self.max_request_memory)
            .abort_under_pressure(signal.clone())
            .log_query_strings(c.log_query_strings);
        if c.governor_enabled {
            interceptor = interceptor.governor(c.governor(budget.clone()));
        }
        if let Some(classify) = self.route_classifier {
            interceptor = interceptor.route_classifier(move |m, u| classify(m, u));
        }
        // Taken after the last builder call (each call makes a new registry).
        let in_flight = interceptor.in_flight();

        let mut monitor = c
            .monitor_builder()
            .signal(signal.clone())
            .reclaimer(reclaimer.clone())
            .budget(budget.clone(), c.request_budget);
        if let Some(in_flight) = &in_flight {
            monitor = monitor.in_flight(in_flight.clone());
        }
        let monitor = monitor.build()?;

        let with_views = |mut health: HealthLayer| {
            health = health.ledger(ledger.clone(), self.top_routes);
            if let Some(in_flight) = &in_flight {
                health = health.in_flight(in_flight.clone());
            }
            health
        };
        let mut health = with_views(HealthLayer::new(&monitor));
        if let Some(prefix) = &self.prefix {
            health = health.prefix(prefix.clone());
        }
        let drain = health.drain_handle();
        // The endpoints an operator should not expose publicly (metrics, heap profile) go on
        // the admin layer when there is one.
        let mut admin = self
            .admin
            .then(|| with_views(HealthLayer::new(&monitor).prefix("")).drain(drain.clone()));
        let private = admin.as_mut().unwrap_or(&mut health);
        #[cfg(feature = "prometheus")]
        if let Some(metrics) = self.metrics {
            *private = private.clone().metrics(metrics);
            // Descriptions go to the recorder installed now.
            stream_body_layer::metrics::describe();
            compression_layer::metrics::describe_metrics();
        }
        #[cfg(feature = "heap-profile")]
        {
            // Checked now, so a read-only directory stops the start with its name, instead of
            // answering 500 when an operator needs a profile.
            let dir = c.profile_dir();
            if let Some(token) = &c.profile_token {
                memory_health::check_profile_dir(&dir)?;
                *private = private.clone().heap_profile_token(token);
            }
            *private = private.clone().heap_profile_dir(dir);
            if let Some(path) = &c.heap_profile_on_exit {
                memory_health::check_profile_dir(parent_dir(path))?;
            }
        }

        // With the governor, request memory is bounded by construction: shedding between the
        // thresholds would only refuse requests that cost nothing while the budget does its
        // work. Critical pressure (memory outside the governor's reach) still sheds.
        let mut shed = PressureShedLayer::new(&monitor);
        if let Some(prefix) = &self.prefix {
            shed = shed.health_prefix(prefix);
        }
        if !c.governor_enabled {
            shed = shed.proportional(0.5);
        }

        let mut compression = CompressionLayer::new()
            .enabled(c.compression_enabled)
            .threshold(c.compression_threshold)
            .pressure(signal);
        if let Some(level) = c.compression_level {
            compression = compression.level(level);
        }

        let mut body = StreamBodyLayer::new()
            .max_body_size(self.max_body_size)
            .buffer_threshold(c.stream_file_threshold)
            .chunk_size(c.stream_chunk_size as usize)
            .memory_budget(budget.clone());
        if let Some(spool) = self.spool {
            body = body.spool(spool);
        }

        Ok(MemoryStack {
            layer: MemoryStackLayer {
                health,
                shed,
                interceptor,
                compression,
                decompression: DecompressionLayer::new(),
                body,
            },
            admin,
            monitoring: c.monitoring_enabled,
            exit_profile: c.heap_profile_on_exit.clone(),
            monitor,
            budget,
            ledger,
            in_flight,
            reclaimer,
            drain,
        })
    }
}

/// The whole memory-aware stack, built from a [`MemoryConfig`] in one call: the monitor, the
/// process-wide budget, the ledger and the layers, outermost first
/// `HealthLayer -> PressureShedLayer -> MemoryInterceptorLayer -> CompressionLayer ->
/// DecompressionLayer -> StreamBodyLayer`, applied as one [`MemoryStackLayer`].
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_memory::health::MemoryConfig;
/// use tower_memory::stack::MemoryStack;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = MemoryConfig::from_vars([("MEMORY_CHECK_INTERVAL", "5000")])?;
/// let stack = MemoryStack::builder(config).max_body_size(64 << 20).build()?;
/// stack.start()?;
/// let app: Router = Router::new()
///     .route("/api/hello", get(|| async { "hello" }))
///     // One `layer` call: axum boxes the stack once, and routing has happened (route labels).
///     .layer(stack.layer());
/// let drain = stack.drain();
/// // On SIGTERM: drain.start(), then stop the server.
/// # let _ = (app, drain);
/// # Ok(())
/// # }
/// ```
pub struct MemoryStack {
    layer: MemoryStackLayer,
    admin: Option<HealthLayer>,
    monitoring: bool,
    #[cfg_attr(not(feature = "heap-profile"), allow(dead_code))]
    exit_profile: Option<std::path::PathBuf>,
    monitor: MemoryMonitor,
    budget: MemoryBudget,
    ledger: Ledger,
    in_flight: Option<InFlight>,
    reclaimer: Reclaimer,
    drain: Drain,
}

impl std::fmt::Debug for MemoryStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStack")
            .field("monitor", &self.monitor)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl MemoryStack {
    /// A builder from `config` (the variables of [`MemoryConfig::from_env`]).
    pub fn builder(config: MemoryConfig) -> MemoryStackBuilder {
        MemoryStackBuilder {
            config,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            max_request_memory: DEFAULT_MAX_REQUEST_MEMORY,
            spool: None,
            #[cfg(feature = "prometheus")]
            metrics: None,
            ledger_routes: DEFAULT_LEDGER_ROUTES,
            top_routes: DEFAULT_TOP_ROUTES,
            prefix: None,
            route_classifier: None,
            admin: false,
        }
    }

    /// Starts the monitor's sampling task on the current Tokio runtime, unless
    /// `MEMORY_MONITORING_ENABLED` was false.
    pub fn start(&self) -> Result<(), StackError> {
        if self.monitoring {
            self.monitor.start()?;
        }
        Ok(())
    }

    /// Stops the monitor's sampling task.
    pub fn stop(&self) {
        self.monitor.stop();
    }

    /// The layer to apply (once: `Router::layer(stack.layer())`, or in a `ServiceBuilder`).
    pub fn layer(&self) -> MemoryStackLayer {
        self.layer.clone()
    }

    /// The admin endpoints at the root (`/metrics`, `/debug/pprof/heap`, `/health`,
    /// `/health/live`, `/health/ready`), for a listener of their own: `Some` with
    /// [`MemoryStackBuilder::admin_endpoints`]. Apply it to a router with no routes
    /// (`Router::new().layer(stack.admin_layer().unwrap())`): everything else is 404.
    pub fn admin_layer(&self) -> Option<HealthLayer> {
        self.admin.clone()
    }

    /// The requests in flight holding memory now, largest first (what `/health` lists).
    pub fn in_flight(&self) -> Option<&InFlight> {
        self.in_flight.as_ref()
    }

    /// The monitor.
    pub fn monitor(&self) -> &MemoryMonitor {
        &self.monitor
    }

    /// The process-wide budget.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// The ledger of memory-intensive routes.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The reclaimer the monitor and the interceptor share.
    pub fn reclaimer(&self) -> &Reclaimer {
        &self.reclaimer
    }

    /// The handle that turns readiness to 503 on shutdown.
    pub fn drain(&self) -> Drain {
        self.drain.clone()
    }

    /// Writes the heap profile to `HEAP_PROFILE_ON_EXIT` (mode 0600), when it is set: call it
    /// once the server has stopped. Blocking (a dump and a conversion). `None` when no path is
    /// configured; the path and the profile's size otherwise.
    #[cfg(feature = "heap-profile")]
    pub fn write_exit_profile(
        &self,
    ) -> Option<Result<(std::path::PathBuf, u64), memory_health::HeapProfileError>> {
        let path = self.exit_profile.as_ref()?;
        Some(memory_health::write_heap_profile(path).map(|size| (path.clone(), size)))
    }

    /// How long the shed layer's `Retry-After` is.
    pub fn retry_after(&self) -> Duration {
        self.monitor.interval().max(Duration::from_secs(1))
    }
}

/// The directory a file path lives in (`.` for a bare file name).
#[cfg(feature = "heap-profile")]
fn parent_dir(path: &std::path::Path) -> std::path::PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    }
}

/// The six layers as one [`Layer`]: see [`MemoryStack`].
#[derive(Clone)]
pub struct MemoryStackLayer {
    health: HealthLayer,
    shed: PressureShedLayer,
    interceptor: MemoryInterceptorLayer,
    compression: CompressionLayer,
    decompression: DecompressionLayer,
    body: StreamBodyLayer,
}

impl std::fmt::Debug for MemoryStackLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStackLayer")
            .field("interceptor", &self.interceptor)
            .finish_non_exhaustive()
    }
}

/// The service [`MemoryStackLayer`] makes around `S`.
pub type MemoryStackService<S> = HealthService<
    PressureShedService<MemoryInterceptor<Compression<Decompression<StreamBodyService<S>>>>>,
>;

impl<S> Layer<S> for MemoryStackLayer {
    type Service = MemoryStackService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let body = self.body.layer(inner);
        let decompression = self.decompression.layer(body);
        let compression = self.compression.layer(decompression);
        let interceptor = self.interceptor.layer(compression);
        let shed = self.shed.layer(interceptor);
        self.health.layer(shed)
    }
}
