//! `PressureShedLayer`: the layer and its settings.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;
use tower_memory_probe::{DEFAULT_RETRY_AFTER, Pressure};

use super::service::PressureShed;
use crate::health::normalize_prefix;
use crate::monitor::MemoryMonitor;

/// Answers 503 with `Retry-After` before the inner service is called while pressure is
/// `Critical`; optionally sheds a share of requests between the thresholds, growing from 0 at
/// `warning` to `max_fraction` at `critical`. Health, metrics and profile paths are exempt.
///
/// Shedding is deterministic: with a shed fraction `f`, exactly one request in `1/f` is refused
/// (a running credit, not a coin toss), so the share holds even at low request rates.
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_memory_health::{MemoryMonitor, PressureShedLayer};
///
/// let monitor = MemoryMonitor::builder().build().unwrap();
/// let app: Router = Router::new()
///     .route("/api/work", get(|| async { "done" }))
///     .layer(PressureShedLayer::new(&monitor).proportional(0.5));
/// # let _ = app;
/// ```
#[derive(Clone)]
pub struct PressureShedLayer {
    config: Arc<ShedConfig>,
}

/// The settings the layer's services share.
#[derive(Clone)]
pub(super) struct ShedConfig {
    pub(super) monitor: MemoryMonitor,
    pub(super) retry_after: Duration,
    pub(super) max_fraction: f64,
    pub(super) exempt: Vec<String>,
}

impl PressureShedLayer {
    /// Sheds under `monitor`'s critical pressure, exempting `/api/health*`, `/api/metrics` and
    /// `/api/debug/pprof*`. `Retry-After` defaults to [`DEFAULT_RETRY_AFTER`] (1 s), as every
    /// memory 503 of the workspace: the monitor samples again on budget movements and kernel
    /// memory events, so pressure can fall well before its next scheduled sample.
    pub fn new(monitor: &MemoryMonitor) -> Self {
        Self {
            config: Arc::new(ShedConfig {
                monitor: monitor.clone(),
                retry_after: DEFAULT_RETRY_AFTER,
                max_fraction: 0.0,
                exempt: default_exempt("/api"),
            }),
        }
    }

    fn update(mut self, f: impl FnOnce(&mut ShedConfig)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// The value of `Retry-After`, rounded up to whole seconds (default [`DEFAULT_RETRY_AFTER`]).
    #[must_use]
    pub fn retry_after(self, retry_after: Duration) -> Self {
        self.update(|c| c.retry_after = retry_after)
    }

    /// Between the thresholds, shed `max_fraction * (ratio - warning) / (critical - warning)` of
    /// requests (clamped to `0..=1`; 0, the default, sheds only under `Critical`).
    #[must_use]
    pub fn proportional(self, max_fraction: f64) -> Self {
        let f = if max_fraction.is_finite() {
            max_fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.update(|c| c.max_fraction = f)
    }

    /// Replaces the exempt paths with those of a [`HealthLayer`](crate::HealthLayer) under
    /// `prefix`.
    #[must_use]
    pub fn health_prefix(self, prefix: &str) -> Self {
        let exempt = default_exempt(&normalize_prefix(prefix));
        self.update(|c| c.exempt = exempt)
    }

    /// Exempts `path` and everything below it (`path/...`).
    #[must_use]
    pub fn exempt(self, path: impl Into<String>) -> Self {
        let path = path.into();
        self.update(|c| c.exempt.push(path))
    }

    /// Whether no request would be shed now: pressure is normal, or at warning with proportional
    /// shedding off. One relaxed load; a stack that composes the layers may then route requests
    /// around this one.
    pub fn idle(&self) -> bool {
        match self.config.monitor.pressure() {
            Pressure::Normal => true,
            Pressure::Warning => self.config.max_fraction <= 0.0,
            Pressure::Critical => false,
        }
    }
}

fn default_exempt(prefix: &str) -> Vec<String> {
    vec![
        format!("{prefix}/health"),
        format!("{prefix}/metrics"),
        format!("{prefix}/debug/pprof"),
    ]
}

impl<S> Layer<S> for PressureShedLayer {
    type Service = PressureShed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PressureShed::new(inner, Arc::clone(&self.config))
    }
}

impl fmt::Debug for PressureShedLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PressureShedLayer")
            .field("retry_after", &self.config.retry_after)
            .field("max_fraction", &self.config.max_fraction)
            .field("exempt", &self.config.exempt)
            .finish_non_exhaustive()
    }
}
