//! `PressureShedLayer`: refuse new work under memory pressure, before it allocates anything.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use memory_probe::Pressure;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::future::ResponseFuture;
use crate::inner::{InnerFuture, ReadyInner};
use crate::layer::normalize_prefix;
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
/// use memory_health::{MemoryMonitor, PressureShedLayer};
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

#[derive(Clone)]
struct ShedConfig {
    monitor: MemoryMonitor,
    retry_after: Duration,
    max_fraction: f64,
    exempt: Vec<String>,
}

impl PressureShedLayer {
    /// Sheds under `monitor`'s critical pressure, exempting `/api/health*`, `/api/metrics` and
    /// `/api/debug/pprof*`. `Retry-After` defaults to the monitor's interval (pressure cannot
    /// change sooner), at least 1 s.
    pub fn new(monitor: &MemoryMonitor) -> Self {
        Self {
            config: Arc::new(ShedConfig {
                monitor: monitor.clone(),
                retry_after: monitor.interval().max(Duration::from_secs(1)),
                max_fraction: 0.0,
                exempt: default_exempt("/api"),
            }),
        }
    }

    fn update(mut self, f: impl FnOnce(&mut ShedConfig)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// The value of `Retry-After`, rounded up to whole seconds.
    pub fn retry_after(self, retry_after: Duration) -> Self {
        self.update(|c| c.retry_after = retry_after)
    }

    /// Between the thresholds, shed `max_fraction * (ratio - warning) / (critical - warning)` of
    /// requests (clamped to `0..=1`; 0, the default, sheds only under `Critical`).
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
    pub fn health_prefix(self, prefix: &str) -> Self {
        let exempt = default_exempt(&normalize_prefix(prefix));
        self.update(|c| c.exempt = exempt)
    }

    /// Exempts `path` and everything below it (`path/...`).
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
    type Service = PressureShedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PressureShedService {
            inner: ReadyInner::new(inner),
            config: Arc::clone(&self.config),
            credit: Arc::new(AtomicU64::new(0)),
        }
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

/// The service of [`PressureShedLayer`].
pub struct PressureShedService<S> {
    inner: ReadyInner<S>,
    config: Arc<ShedConfig>,
    /// Running credit in units of 2^-32 requests; a request is shed when the credit crosses a
    /// whole request. Shared by the clones of one service.
    credit: Arc<AtomicU64>,
}

impl<S: Clone> Clone for PressureShedService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
            credit: Arc::clone(&self.credit),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for PressureShedService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PressureShedService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
enum Shed {
    Critical,
    Proportional,
}

impl<S> PressureShedService<S> {
    fn exempt(&self, path: &str) -> bool {
        self.config.exempt.iter().any(|e| {
            path.strip_prefix(e.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    fn decide(&self) -> Option<Shed> {
        let monitor = &self.config.monitor;
        match monitor.pressure() {
            Pressure::Normal => None,
            Pressure::Critical => Some(Shed::Critical),
            Pressure::Warning if self.config.max_fraction > 0.0 => {
                let ratio = monitor.usage_ratio()?;
                let t = monitor.thresholds();
                let past = ((ratio - t.warning()) / (t.critical() - t.warning())).clamp(0.0, 1.0);
                let fraction = self.config.max_fraction * past;
                if fraction <= 0.0 {
                    return None;
                }
                let step = (fraction * (1u64 << 32) as f64) as u64;
                let before = self.credit.fetch_add(step, Ordering::Relaxed);
                let crossed = (before >> 32) != (before.wrapping_add(step) >> 32);
                crossed.then_some(Shed::Proportional)
            }
            Pressure::Warning => None,
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for PressureShedService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<InnerFuture<S, Request<ReqBody>>, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Always ready, so that a refusal never waits for the inner service's capacity (see
        // `inner.rs`).
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shed = if self.exempt(req.uri().path()) {
            None
        } else {
            self.decide()
        };
        let Some(shed) = shed else {
            return ResponseFuture::inner(self.inner.call(req));
        };
        let reason = match shed {
            Shed::Critical => "critical",
            Shed::Proportional => "proportional",
        };
        metrics::counter!(crate::metrics::MEMORY_SHED_REQUESTS_TOTAL, "reason" => reason)
            .increment(1);
        let retry_after = self.config.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let body = serde_json::json!({
            "error": "memory pressure: request refused, retry later",
            "reason": reason,
            "retry_after_seconds": retry_after,
        });
        let mut response = Response::new(Bytes::from(body.to_string()));
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        ResponseFuture::ready(response)
    }
}
