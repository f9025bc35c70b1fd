//! `HealthLayer`: the health, readiness, metrics and heap-profile endpoints.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::service::Health;
use crate::drain::Drain;
use crate::monitor::MemoryMonitor;
use crate::requests::{InFlight, Ledger};

/// Default of [`HealthLayer::max_sample_age`]: 1 s.
pub(crate) const DEFAULT_MAX_SAMPLE_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves the memory endpoints under a prefix (default `/api`) in any Tower stack and passes
/// every other request to the inner service untouched:
///
/// | path | answer |
/// |---|---|
/// | `GET {prefix}/health` | JSON report; 200 when healthy or warning, 503 when critical |
/// | `GET {prefix}/health/live` | 200 while the monitor samples on schedule, 503 when it stalled |
/// | `GET {prefix}/health/ready` | 200; 503 under critical pressure or while draining |
/// | `GET {prefix}/metrics` | Prometheus text (when a recorder is set with `metrics`, feature `prometheus`) |
/// | `GET {prefix}/debug/pprof/heap` | gzipped pprof heap profile (feature `heap-profile`), bearer token only |
///
/// The service is always ready: a request that passes through waits for the inner service's
/// readiness in its own future, so a saturated inner service never delays a probe.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_memory_health::{HealthLayer, MemoryMonitor};
///
/// let monitor = MemoryMonitor::builder().build().unwrap();
/// let health = HealthLayer::new(&monitor).prefix("/api");
/// let drain = health.drain_handle();
/// let app: Router = Router::new()
///     .route("/api/hello", get(|| async { "hello" }))
///     .layer(health);
/// // On SIGTERM: `drain.start()`, wait for the load balancer, then shut down.
/// # let _ = (app, drain);
/// ```
#[derive(Clone)]
pub struct HealthLayer {
    config: Arc<HealthConfig>,
}

/// The settings the layer's services share.
#[derive(Clone)]
pub(crate) struct HealthConfig {
    pub(crate) monitor: MemoryMonitor,
    pub(crate) prefix: String,
    pub(crate) drain: Drain,
    pub(crate) ledger: Option<Ledger>,
    pub(crate) in_flight: Option<InFlight>,
    pub(crate) top_routes: usize,
    pub(crate) max_sample_age: std::time::Duration,
    #[cfg(feature = "prometheus")]
    pub(crate) metrics: Option<crate::PrometheusMetrics>,
    #[cfg(feature = "heap-profile")]
    pub(crate) token: Option<crate::profile::TokenDigest>,
    #[cfg(feature = "heap-profile")]
    pub(crate) profile_dir: std::path::PathBuf,
}

impl HealthLayer {
    /// Endpoints for `monitor` under `/api`, with a new [`Drain`], no ledger, no metrics and (with
    /// `heap-profile`) no token, so `/debug/pprof/heap` answers 404.
    pub fn new(monitor: &MemoryMonitor) -> Self {
        Self {
            config: Arc::new(HealthConfig {
                monitor: monitor.clone(),
                prefix: "/api".into(),
                drain: Drain::new(),
                ledger: None,
                in_flight: None,
                top_routes: 10,
                max_sample_age: DEFAULT_MAX_SAMPLE_AGE,
                #[cfg(feature = "prometheus")]
                metrics: None,
                #[cfg(feature = "heap-profile")]
                token: None,
                #[cfg(feature = "heap-profile")]
                profile_dir: std::env::temp_dir(),
            }),
        }
    }

    fn update(mut self, f: impl FnOnce(&mut HealthConfig)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// The path prefix (default `/api`; `""` or `/` for the root). A trailing slash is dropped.
    #[must_use]
    pub fn prefix(self, prefix: impl Into<String>) -> Self {
        let prefix = normalize_prefix(&prefix.into());
        self.update(|c| c.prefix = prefix)
    }

    /// Uses `drain` as the readiness switch (to share it with other parts of the program).
    #[must_use]
    pub fn drain(self, drain: Drain) -> Self {
        self.update(|c| c.drain = drain)
    }

    /// The readiness switch: [`Drain::start`] makes `/health/ready` answer 503.
    pub fn drain_handle(&self) -> Drain {
        self.config.drain.clone()
    }

    /// Shows the `top` routes of `ledger` (from `tower-memory-interceptor`) in `/health`. Feature
    /// `interceptor`.
    #[must_use]
    #[cfg(feature = "interceptor")]
    pub fn ledger(self, ledger: Ledger, top: usize) -> Self {
        self.update(|c| {
            c.ledger = Some(ledger);
            c.top_routes = top;
        })
    }

    /// Lists the largest requests in flight (from `tower-memory-interceptor`'s
    /// [`MemoryInterceptorLayer::in_flight`](tower_memory_interceptor::MemoryInterceptorLayer::in_flight))
    /// in `/health`, as many as routes, and their held bytes per route in `/metrics`. Feature
    /// `interceptor`.
    #[must_use]
    #[cfg(feature = "interceptor")]
    pub fn in_flight(self, in_flight: InFlight) -> Self {
        self.update(|c| c.in_flight = Some(in_flight))
    }

    /// How old the sample `/health` shows may be before a new one is taken for it (default
    /// 1 s). Between the monitor's scheduled samples, `/health` thus
    /// shows memory as it is now, at the cost of at most one extra sample per `age`.
    #[must_use]
    pub fn max_sample_age(self, age: std::time::Duration) -> Self {
        self.update(|c| c.max_sample_age = age)
    }

    /// Serves `/metrics` from `metrics` (feature `prometheus`).
    #[must_use]
    #[cfg(feature = "prometheus")]
    pub fn metrics(self, metrics: crate::PrometheusMetrics) -> Self {
        self.update(|c| c.metrics = Some(metrics))
    }

    /// Serves `/debug/pprof/heap` to requests with `Authorization: Bearer <token>` (feature
    /// `heap-profile`). Only a digest of the token is kept.
    #[must_use]
    #[cfg(feature = "heap-profile")]
    pub fn heap_profile_token(self, token: impl AsRef<str>) -> Self {
        let digest = crate::profile::TokenDigest::new(token.as_ref());
        self.update(|c| c.token = Some(digest))
    }

    /// Where `/debug/pprof/heap` has jemalloc write its dump before converting it (feature
    /// `heap-profile`; default: the system temp dir, read when the layer is made). The dump is
    /// mode 0600 and removed at once; check the directory at start-up with
    /// [`check_profile_dir`](crate::check_profile_dir).
    #[must_use]
    #[cfg(feature = "heap-profile")]
    pub fn heap_profile_dir(self, dir: impl Into<std::path::PathBuf>) -> Self {
        let dir = dir.into();
        self.update(|c| c.profile_dir = dir)
    }

    /// The prefix in use.
    pub fn prefix_path(&self) -> &str {
        &self.config.prefix
    }

    /// Whether this layer answers `path` itself (a health, metrics or profile endpoint) rather
    /// than passing the request on. A stack that composes the layers may route other requests
    /// around it.
    pub fn serves(&self, path: &str) -> bool {
        super::service::endpoint_of(&self.config, path).is_some()
    }
}

pub(crate) fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else if trimmed.starts_with('/') {
        trimmed.to_string()
    } else {
        format!("/{trimmed}")
    }
}

impl<S> Layer<S> for HealthLayer {
    type Service = Health<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Health::new(inner, Arc::clone(&self.config))
    }
}

impl fmt::Debug for HealthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthLayer")
            .field("prefix", &self.config.prefix)
            .field("drain", &self.config.drain)
            .finish_non_exhaustive()
    }
}
