//! `Health`: routes the memory endpoints to their handlers, passes everything else through.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::json;
use tower_service::Service;

use super::endpoints::{health, json_response, live, ready};
use super::layer::HealthConfig;
use crate::body::ResponseBody;
use crate::future::ResponseFuture;
use crate::inner::ReadyInner;
use crate::report::HealthReport;

/// The service of [`HealthLayer`](super::HealthLayer).
pub struct Health<S> {
    inner: ReadyInner<S>,
    config: Arc<HealthConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Health,
    Live,
    Ready,
    #[cfg(feature = "prometheus")]
    Metrics,
    #[cfg(feature = "heap-profile")]
    Heap,
}

/// The endpoint `path` names under the configured prefix, if any.
pub(crate) fn endpoint_of(config: &HealthConfig, path: &str) -> Option<Endpoint> {
    match path.strip_prefix(config.prefix.as_str())? {
        "/health" => Some(Endpoint::Health),
        "/health/live" => Some(Endpoint::Live),
        "/health/ready" => Some(Endpoint::Ready),
        #[cfg(feature = "prometheus")]
        "/metrics" if config.metrics.is_some() => Some(Endpoint::Metrics),
        #[cfg(feature = "heap-profile")]
        "/debug/pprof/heap" => Some(Endpoint::Heap),
        _ => None,
    }
}

impl<S> Health<S> {
    pub(crate) fn new(inner: S, config: Arc<HealthConfig>) -> Self {
        Self {
            inner: ReadyInner::new(inner),
            config,
        }
    }

    fn endpoint(&self, path: &str) -> Option<Endpoint> {
        endpoint_of(&self.config, path)
    }
}

impl<S: Clone> Clone for Health<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Health<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Health")
            .field("inner", &self.inner)
            .field("prefix", &self.config.prefix)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Health<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request<ReqBody>, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Always ready: probes must not queue behind a saturated inner service (see `inner.rs`).
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let Some(endpoint) = self.endpoint(req.uri().path()) else {
            return ResponseFuture::inner(self.inner.call(req));
        };
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut response = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"error": "method not allowed"}),
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return ResponseFuture::ready(response);
        }
        let config = &self.config;
        match endpoint {
            Endpoint::Live => ResponseFuture::ready(live(&config.monitor)),
            Endpoint::Ready => ResponseFuture::ready(ready(config)),
            Endpoint::Health => {
                // The report is at most `max_sample_age` old: a fresher sample than the
                // monitor's schedule is taken for it when needed (at most one per
                // `max_sample_age`, shared by concurrent requests).
                let max_age = config.max_sample_age;
                if let Some(snapshot) = config.monitor.fresh_snapshot(max_age) {
                    return ResponseFuture::ready(health(&HealthReport::build(
                        &config.monitor,
                        &snapshot,
                        config.ledger.as_ref(),
                        config.in_flight.as_ref(),
                        config.top_routes,
                    )));
                }
                let config = Arc::clone(config);
                ResponseFuture::boxed(Box::pin(async move {
                    match config.monitor.recent_snapshot(max_age).await {
                        Ok(snapshot) => health(&HealthReport::build(
                            &config.monitor,
                            &snapshot,
                            config.ledger.as_ref(),
                            config.in_flight.as_ref(),
                            config.top_routes,
                        )),
                        Err(e) => json_response(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            &json!({"status": "error", "error": e.to_string()}),
                        ),
                    }
                }))
            }
            #[cfg(feature = "prometheus")]
            Endpoint::Metrics => ResponseFuture::ready(super::endpoints::metrics(config)),
            #[cfg(feature = "heap-profile")]
            Endpoint::Heap => super::endpoints::heap(config, req.headers()),
        }
    }
}
