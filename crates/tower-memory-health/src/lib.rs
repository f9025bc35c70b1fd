//! Memory monitor, pressure, reclaim schedule, health/readiness/metrics/heap-profile endpoints and
//! load shedding for Tower services.
//!
//! Where this crate sits in the workspace, its code map and the invariants it keeps:
//! `ARCHITECTURE.md` at the repository root.
//!
//! - [`MemoryMonitor`] samples the process every `interval` (default 30 s) through a
//!   [`SampleSource`] ([`ProbeSource`] reads `/proc`, the cgroup and the allocator), measures
//!   usage (the larger of RSS and cgroup working set) against a limit (configured, else the
//!   cgroup's effective limit, else physical memory), publishes [`Pressure`]
//!   with hysteresis, fits the growth trend and warns about leaks, and reclaims freed memory on
//!   entering `Critical` and every `reclaim_interval`.
//! - [`HealthLayer`] (module [`health`]) serves `/health`, `/health/live`, `/health/ready`,
//!   `/metrics` and (feature `heap-profile`) `/debug/pprof/heap` under a prefix in any Tower
//!   stack.
//! - [`PressureShedLayer`] (module [`shed`]) refuses work with 503 and `Retry-After` under
//!   pressure, before it allocates; the health paths are exempt. The 503 is the workspace's one
//!   memory 503 ([`tower_memory_probe::overload_body`]).
//! - [`describe_metrics`] describes every metric this crate emits (its doc is the table).
//! - [`MemoryConfig::from_env`] reads the `MEMORY_*` and `HEAP_PROFILE_*` variables;
//!   [`AllocatorProfile`] trades throughput for a small resident set (jemalloc);
//!   [`warn_unrecognized_env`] names the counterpart of every variable meant for it that it does
//!   not read (the Node.js guide's `NODE_*` settings, misspellings).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use tower_memory_health::{HealthLayer, MemoryConfig, PressureShedLayer};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let config = MemoryConfig::from_vars([("MEMORY_CHECK_INTERVAL", "10000")]).unwrap();
//! let monitor = config.monitor_builder().build().unwrap();
//! if config.monitoring_enabled {
//!     monitor.start().unwrap();
//! }
//! let health = HealthLayer::new(&monitor);
//! // `/api/metrics` (feature `prometheus`, on by default).
//! #[cfg(feature = "prometheus")]
//! let health = health.metrics(tower_memory_health::PrometheusMetrics::install().unwrap());
//! let drain = health.drain_handle();
//!
//! // Outermost first: the health endpoints never meet the shedding.
//! let app: Router = Router::new()
//!     .route("/api/work", get(|| async { "done" }))
//!     .layer(PressureShedLayer::new(&monitor).proportional(0.5))
//!     .layer(health);
//!
//! let snapshot = monitor.sample_now().await.unwrap();
//! println!("{:?} of {:?} bytes", snapshot.usage_bytes, snapshot.limit);
//! // On SIGTERM: drain.start() turns /api/health/ready to 503 before the server stops.
//! drain.start();
//! # let _ = app;
//! # }
//! ```
//!
//! # Metrics: a shared recorder, names, OpenTelemetry
//!
//! - **An application with its own recorder** (its own `PrometheusBuilder::install_recorder()`,
//!   axum-prometheus) hands its handle to
//!   [`PrometheusMetrics::from_handle`](crate::PrometheusMetrics::from_handle) (feature
//!   `prometheus`): `/metrics` renders the application's metrics and this workspace's together.
//!   The `Upkeep` argument says who folds the exporter's histogram samples (without upkeep they
//!   pile up in memory); `Upkeep::Spawn` unless the application runs it.
//! - **Names**: every metric of the workspace is a Prometheus name spelled once per crate (the
//!   table is [`describe_metrics`]). [`tower_memory_probe::set_metric_prefix`] prefixes all of
//!   them, and only them, for a shared Prometheus (`myapp_memory_usage_bytes`); default none,
//!   which the deploy rules, dashboard and autoscaling rule expect. With a prefix they follow by
//!   rewriting: every `memory_*`, `http_*` and `process_*` word in `deploy/` is one of these
//!   metric names, so `sed -E 's/\b(memory|http|process)_/myapp_\1_/g'` over the alert rules,
//!   their tests, the dashboard and the adapter and HPA manifests gives the prefixed set (the
//!   rewritten rules pass `promtool test rules` against their rewritten tests).
//! - **Process gauges**: `process_resident_memory_bytes` and `process_virtual_memory_bytes` are
//!   on by default; [`MemoryMonitorBuilder::process_metrics`] turns them off where
//!   `metrics-process` already emits them.
//! - **OpenTelemetry**: install a facade-to-OpenTelemetry recorder (`metrics-exporter-otel`,
//!   alone or in a metrics-util fanout beside Prometheus) and call [`record_metrics`] on a timer,
//!   since no scrape does. Each request's memory report reaches traces through its span
//!   (tower-memory-interceptor's `memory.*` span fields and tracing-opentelemetry).
//!   `docs/opentelemetry.md` at the repository root has the code and the crate versions.
//!
//! # Features
//!
//! The defaults (`prometheus`, `interceptor`) need no C toolchain; `jemalloc` and `heap-profile`
//! build jemalloc (C).
//!
//! - `prometheus` (default): `/metrics` through `metrics-exporter-prometheus`.
//! - `interceptor` (default): tower-memory-interceptor's per-request views: the memory-intensive
//!   routes (`HealthLayer::ledger`) and the requests in flight (`HealthLayer::in_flight`,
//!   `MemoryMonitorBuilder::in_flight`) in `/health`, `/metrics` and the critical-pressure log
//!   event, and `MemoryConfig::governor`. Without it those parts are absent (empty lists in
//!   `/health`) and everything else works.
//! - `jemalloc`: [`AllocatorProfile`] and jemalloc statistics and purge in `tower-memory-probe`; the
//!   program installs `tikv_jemallocator::Jemalloc` as its global allocator.
//! - `heap-profile`: jemalloc built with profiling, `/debug/pprof/heap` and
//!   `write_heap_profile`; the program starts jemalloc with `prof:true`.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod allocator;
mod body;
mod budget;
mod config;
mod drain;
mod error;
mod future;
mod gauges;
pub mod health;
mod inner;
mod limit;
mod metrics;
mod migration;
mod monitor;
#[cfg(feature = "heap-profile")]
mod profile;
#[cfg(feature = "prometheus")]
mod prometheus;
mod reclaim;
mod report;
mod requests;
mod sample;
pub mod shed;
mod thresholds;
mod trend;

pub use self::metrics::{BUDGET_QUEUE, describe_metrics};
pub use allocator::{
    AllocatorProfile, MEMORY_FIRST_DIRTY_DECAY_MS, ProfileError, ProfileReport, UnknownProfile,
};
pub use body::ResponseBody;
pub use budget::BudgetCapacity;
pub use config::{
    AGGRESSIVE_RECLAIM_INTERVAL, ConfigError, DEPRECATED_VARIABLES, MemoryConfig, VARIABLES,
};
pub use drain::Drain;
pub use error::{BuildError, StartError};
pub use gauges::record_metrics;
#[cfg(feature = "interceptor")]
pub use gauges::record_request_metrics;
pub use health::{Health, HealthLayer};
pub use limit::{LimitSource, MemoryLimit, usage_bytes};
pub use migration::{
    Counterpart, UnrecognizedVariable, unrecognized_variables, unrecognized_variables_among,
    warn_unrecognized_env, warn_unrecognized_env_among,
};
pub use monitor::{LeakThreshold, Liveness, MemoryMonitor, MemoryMonitorBuilder, MemorySnapshot};
#[cfg(feature = "heap-profile")]
pub use profile::{
    HeapProfileError, check_profile_dir, heap_profile, heap_profile_in, heap_profiling_status,
    write_heap_profile,
};
#[cfg(feature = "prometheus")]
pub use prometheus::{MetricsError, PrometheusMetrics, Upkeep};
pub use reclaim::ReclaimSummary;
pub use report::{
    AllocatorReport, BudgetReport, CgroupReport, HealthReport, InFlightReport, LastReclaimReport,
    ProcessReport, QueueReport, ReclaimTotalsReport, RouteGovernorReport, RouteReport,
    ThresholdsReport, TrendReport,
};
pub use sample::{ProbeSource, Sample, SampleError, SampleSource};
pub use shed::{PressureShed, PressureShedLayer};
pub use thresholds::Thresholds;
pub use trend::{GrowthTrend, TrendEstimate};

// Re-exported so that users need not depend on tower-memory-probe for the types they handle.
pub use tower_memory_probe::{
    MemoryBudget, Pressure, PressureSignal, ReclaimTrigger, Reclaimer, TriggerStats,
};
