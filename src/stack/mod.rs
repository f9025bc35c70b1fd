//! The whole stack as one layer, built from the configuration in one call.
//!
//! Applying six layers one `Router::layer` at a time makes axum box the route's service and the
//! response body again for each of them (and clone the boxed service for every request);
//! [`MemoryStackLayer`] composes them into one service type that axum boxes once. It also holds the
//! one mapping of the configuration ([`Config`], every crate's variables) to the layers, so that
//! no program writes it by hand: [`MemoryStack::from_env`].

//!
//! The modules in tower-http's shape: [`MemoryStackBuilder`] (builder.rs) maps the
//! configuration to the layers, [`MemoryStackLayer`] (layer.rs) composes them,
//! [`MemoryStackService`] (service.rs) picks the full or the light path per request, with its
//! [`ResponseFuture`] (future.rs) and [`StackBody`] (body.rs).

mod body;
mod builder;
mod future;
mod layer;
mod service;

pub use body::StackBody;
pub use builder::{MemoryStackBuilder, StackError};
pub use future::ResponseFuture;
pub use layer::{FullService, LightService, MemoryStackLayer};
pub use service::MemoryStackService;

use std::time::Duration;

use tower_memory_health::{Drain, HealthLayer, MemoryMonitor};
use tower_memory_interceptor::{InFlight, Ledger};
use tower_memory_probe::{MemoryBudget, Reclaimer};

use crate::config::{Config, ConfigError};
pub use crate::config::{DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_REQUEST_MEMORY};
/// The boxed error of [`StackBody`].
pub use tower_memory_probe::BoxError;
/// Routes the ledger keeps by default: 256.
pub const DEFAULT_LEDGER_ROUTES: usize = 256;
/// Routes `/health` lists by default: 10.
pub const DEFAULT_TOP_ROUTES: usize = 10;

/// The whole memory-aware stack, built from a [`Config`] in one call: the monitor, the
/// process-wide budget, the ledger and the layers, outermost first
/// `HealthLayer -> PressureShedLayer -> MemoryInterceptorLayer -> CompressionLayer ->
/// RequestDecompressionLayer -> StreamBodyLayer`, applied as one [`MemoryStackLayer`].
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_memory::config::Config;
/// use tower_memory::stack::MemoryStack;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // In a program: `MemoryStack::from_env()?.build()?`, every variable of every layer.
/// let config = Config::from_vars([("MEMORY_CHECK_INTERVAL", "5000")])?;
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
    /// A builder from `config` ([`Config::from_env`]'s variables; a
    /// [`MemoryConfig`](tower_memory_health::MemoryConfig) alone takes the other layers' defaults).
    ///
    /// It applies the configuration's metric prefix (`METRICS_PREFIX`) at once: the prefix is
    /// process-wide and fixed by the first metric name resolved, so this comes before installing
    /// the exporter, as in `MemoryStack::from_env()?.metrics(PrometheusMetrics::install()?)`.
    /// A prefix that cannot be applied is [`build`](MemoryStackBuilder::build)'s error.
    pub fn builder(config: impl Into<Config>) -> MemoryStackBuilder {
        let config = config.into();
        let prefix = match &config.metric_prefix {
            Some(prefix) => tower_memory_probe::set_metric_prefix(prefix),
            None => Ok(()),
        };
        MemoryStackBuilder {
            config,
            prefix_applied: prefix,
            #[cfg(feature = "prometheus")]
            metrics: None,
            ledger_routes: DEFAULT_LEDGER_ROUTES,
            top_routes: DEFAULT_TOP_ROUTES,
            prefix: None,
            route_classifier: None,
            admin: false,
        }
    }

    /// A builder from every variable of the stack in the process environment
    /// ([`Config::from_env`]): the one call a program makes, then the builder's settings that
    /// are code (metrics recorder, route classifier, spool directory) and
    /// [`build`](MemoryStackBuilder::build).
    ///
    pub fn from_env() -> Result<MemoryStackBuilder, ConfigError> {
        Ok(Self::builder(Config::from_env()?))
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
    ) -> Option<Result<(std::path::PathBuf, u64), tower_memory_health::HeapProfileError>> {
        let path = self.exit_profile.as_ref()?;
        Some(tower_memory_health::write_heap_profile(path).map(|size| (path.clone(), size)))
    }

    /// How long the shed layer's `Retry-After` is.
    pub fn retry_after(&self) -> Duration {
        tower_memory_probe::DEFAULT_RETRY_AFTER
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
