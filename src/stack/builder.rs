//! [`MemoryStackBuilder`]: the one mapping of the configuration to the layers.

use http::{Method, Uri};
use tower_memory_compression::{CompressionLayer, RequestDecompressionLayer};
use tower_memory_health::{BuildError, HealthLayer, PressureShedLayer, StartError};
use tower_memory_interceptor::{Ledger, MemoryInterceptorLayer};
use tower_memory_probe::{PressureSignal, Reclaimer};
use tower_memory_stream_body::{SpoolConfig, StreamBodyLayer};

#[cfg(feature = "heap-profile")]
use super::parent_dir;
use super::{MemoryStack, MemoryStackLayer};
use crate::config::Config;
type RouteFn = dyn Fn(&Method, &Uri) -> Option<&'static str> + Send + Sync;

/// Builds a [`MemoryStack`]; every setting has a default (stated on each method).
#[must_use]
pub struct MemoryStackBuilder {
    pub(super) config: Config,
    /// Whether the configuration's metric prefix could be applied when the builder was made.
    pub(super) prefix_applied: Result<(), tower_memory_probe::MetricPrefixError>,
    #[cfg(feature = "prometheus")]
    pub(super) metrics: Option<tower_memory_health::PrometheusMetrics>,
    pub(super) ledger_routes: usize,
    pub(super) top_routes: usize,
    pub(super) prefix: Option<String>,
    pub(super) route_classifier: Option<std::sync::Arc<RouteFn>>,
    pub(super) admin: bool,
}

impl std::fmt::Debug for MemoryStackBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStackBuilder")
            .field("config", &self.config)
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
    /// The configured metric prefix cannot be applied: a different one (or none) was fixed by
    /// metrics resolved before the stack was built.
    #[error("metric prefix: {0}")]
    MetricPrefix(#[from] tower_memory_probe::MetricPrefixError),
    /// The monitor could not start (no Tokio runtime).
    #[error("memory monitor: {0}")]
    Start(#[from] StartError),
    /// Heap profiles are configured (`HEAP_PROFILE_TOKEN`, `HEAP_PROFILE_ON_EXIT`) but their
    /// directory cannot take a dump.
    #[cfg(feature = "heap-profile")]
    #[error("heap profiles: {0}")]
    Profile(#[from] tower_memory_health::HeapProfileError),
}

impl StackError {
    /// Whether the refusal comes from the machine or the process rather than from the
    /// configuration's values: a heap-profile directory that does not exist or cannot be written
    /// here, or a metric prefix other than the one this process has fixed already.
    pub fn is_environmental(&self) -> bool {
        // A prefix that cannot be applied was checked when read: what refuses it is the
        // process's state (another prefix, or none, fixed already), not the configuration.
        if matches!(self, StackError::MetricPrefix(_)) {
            return true;
        }
        #[cfg(feature = "heap-profile")]
        if matches!(self, StackError::Profile(_)) {
            return true;
        }
        false
    }
}

impl MemoryStackBuilder {
    /// Requests with a larger body get 413 (`MAX_BODY_SIZE`; default [`DEFAULT_MAX_BODY_SIZE`](crate::config::DEFAULT_MAX_BODY_SIZE),
    /// 1 GiB).
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.config.stream_body.max_body_size = bytes;
        self
    }

    /// The interceptor's per-request quota (`MAX_REQUEST_MEMORY`; default
    /// [`DEFAULT_MAX_REQUEST_MEMORY`](crate::config::DEFAULT_MAX_REQUEST_MEMORY), 1 GiB).
    pub fn max_request_memory(mut self, bytes: u64) -> Self {
        self.config.max_request_memory = bytes;
        self
    }

    /// Where spooled request bodies go (default: the system temporary directory, refused if it
    /// is a tmpfs).
    pub fn spool(mut self, spool: SpoolConfig) -> Self {
        self.config.stream_body = self.config.stream_body.spool(spool);
        self
    }

    /// Serves `/metrics` from this recorder (default: no `/metrics`).
    #[cfg(feature = "prometheus")]
    pub fn metrics(mut self, metrics: tower_memory_health::PrometheusMetrics) -> Self {
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
        let Config {
            memory: c,
            stream_body,
            compression: compression_config,
            max_request_memory,
            metric_prefix: _,
        } = self.config;
        self.prefix_applied?;
        let c = &c;
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
            .max_request_memory(max_request_memory)
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
        #[cfg_attr(
            not(any(feature = "prometheus", feature = "heap-profile")),
            allow(unused_variables)
        )]
        let private = admin.as_mut().unwrap_or(&mut health);
        #[cfg(feature = "prometheus")]
        if let Some(metrics) = self.metrics {
            *private = private.clone().metrics(metrics);
            // Descriptions go to the recorder installed now.
            tower_memory_stream_body::describe_metrics();
            tower_memory_compression::describe_metrics();
        }
        #[cfg(feature = "heap-profile")]
        {
            // Checked now, so a read-only directory stops the start with its name, instead of
            // answering 500 when an operator needs a profile.
            let dir = c.profile_dir();
            if let Some(token) = &c.profile_token {
                tower_memory_health::check_profile_dir(&dir)?;
                *private = private.clone().heap_profile_token(token);
            }
            *private = private.clone().heap_profile_dir(dir);
            if let Some(path) = &c.heap_profile_on_exit {
                tower_memory_health::check_profile_dir(parent_dir(path))?;
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
            .enabled(compression_config.enabled)
            .threshold(compression_config.threshold)
            .pressure(signal);
        if let Some(level) = compression_config.level {
            compression = compression.level(level);
        }

        let body = StreamBodyLayer::from_config(stream_body.memory_budget(budget.clone()));

        Ok(MemoryStack {
            layer: MemoryStackLayer {
                health,
                shed,
                interceptor,
                compression,
                decompression: RequestDecompressionLayer::new(),
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
