//! `PressureShed`: decides per request whether to refuse it, and answers the refusal.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use tower_memory_probe::{OVERLOAD_CONTENT_TYPE, Pressure, overload_body, retry_after_seconds};
use tower_service::Service;

use super::layer::ShedConfig;
use crate::body::ResponseBody;
use crate::future::ResponseFuture;
use crate::inner::ReadyInner;

/// The service of [`PressureShedLayer`](super::PressureShedLayer).
pub struct PressureShed<S> {
    inner: ReadyInner<S>,
    config: Arc<ShedConfig>,
    /// Running credit in units of 2^-32 requests; a request is shed when the credit crosses a
    /// whole request. Shared by the clones of one service.
    credit: Arc<AtomicU64>,
}

impl<S: Clone> Clone for PressureShed<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
            credit: Arc::clone(&self.credit),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for PressureShed<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PressureShed")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// Why a request is refused; its token is the body's `reason` and the metric's label.
#[derive(Clone, Copy)]
enum Shed {
    Critical,
    Proportional,
}

impl Shed {
    fn reason(self) -> &'static str {
        match self {
            Shed::Critical => "critical",
            Shed::Proportional => "proportional",
        }
    }
}

impl<S> PressureShed<S> {
    pub(super) fn new(inner: S, config: Arc<ShedConfig>) -> Self {
        Self {
            inner: ReadyInner::new(inner),
            config,
            credit: Arc::new(AtomicU64::new(0)),
        }
    }

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

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for PressureShed<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<ReqBody>, ResBody>;

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
        let reason = shed.reason();
        metrics::counter!(crate::metrics::MEMORY_SHED_REQUESTS_TOTAL.get(), "reason" => reason)
            .increment(1);
        let retry_after = retry_after_seconds(self.config.retry_after);
        let body = overload_body(
            "memory pressure: request refused, retry later",
            reason,
            retry_after,
        );
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let headers = response.headers_mut();
        headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(OVERLOAD_CONTENT_TYPE),
        );
        ResponseFuture::ready(response)
    }
}
