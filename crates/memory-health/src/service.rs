//! `HealthService`: answers the memory endpoints, passes everything else through.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use memory_probe::Pressure;
use serde_json::json;
use tower_service::Service;

use crate::body::ResponseBody;
use crate::future::ResponseFuture;
use crate::inner::{InnerFuture, ReadyInner};
use crate::layer::HealthConfig;
use crate::monitor::{Liveness, MemoryMonitor};
use crate::report::HealthReport;

/// The service of [`HealthLayer`](crate::HealthLayer).
pub struct HealthService<S> {
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

impl<S> HealthService<S> {
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

impl<S: Clone> Clone for HealthService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for HealthService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthService")
            .field("inner", &self.inner)
            .field("prefix", &self.config.prefix)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HealthService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<InnerFuture<S, Request<ReqBody>>, ResBody>;

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
                    return ResponseFuture::ready(health(&HealthReport::new(
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
                        Ok(snapshot) => health(&HealthReport::new(
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
            Endpoint::Metrics => {
                let Some(metrics) = &config.metrics else {
                    unreachable!("endpoint() matches /metrics only with a recorder");
                };
                crate::gauges::record_request_metrics(
                    config.ledger.as_ref(),
                    config.in_flight.as_ref(),
                );
                let text = metrics.render(Some(&config.monitor));
                let mut response = Response::new(Bytes::from(text));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                no_store(&mut response);
                ResponseFuture::ready(response)
            }
            #[cfg(feature = "heap-profile")]
            Endpoint::Heap => heap(config, req.headers()),
        }
    }
}

fn no_store(response: &mut Response<Bytes>) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Bytes> {
    let body = serde_json::to_vec(value).expect("a JSON value serializes");
    let mut response = Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    no_store(&mut response);
    response
}

fn health(report: &HealthReport) -> Response<Bytes> {
    let status = if report.status == "critical" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let value = serde_json::to_value(report).expect("the report serializes");
    json_response(status, &value)
}

fn live(monitor: &MemoryMonitor) -> Response<Bytes> {
    let stall_after = monitor.stall_after().as_secs_f64();
    match monitor.liveness() {
        Liveness::NotRunning => json_response(
            StatusCode::OK,
            &json!({"status": "not_running", "since_last_sample_seconds": null, "stall_after_seconds": stall_after}),
        ),
        Liveness::Alive { since_last_sample } => json_response(
            StatusCode::OK,
            &json!({"status": "alive", "since_last_sample_seconds": since_last_sample.as_secs_f64(), "stall_after_seconds": stall_after}),
        ),
        Liveness::Stalled { since_last_sample } => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "stalled", "since_last_sample_seconds": since_last_sample.as_secs_f64(), "stall_after_seconds": stall_after}),
        ),
    }
}

fn ready(config: &HealthConfig) -> Response<Bytes> {
    let pressure = config.monitor.pressure();
    let draining = config.drain.is_draining();
    let reason = if draining {
        Some("draining")
    } else if pressure == Pressure::Critical {
        Some("memory_critical")
    } else {
        None
    };
    let status = if reason.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json_response(
        status,
        &json!({
            "status": if reason.is_some() { "not_ready" } else { "ready" },
            "reason": reason,
            "pressure": pressure.as_str(),
            "draining": draining,
        }),
    )
}

#[cfg(feature = "heap-profile")]
fn heap<F, B>(config: &HealthConfig, headers: &http::HeaderMap) -> ResponseFuture<F, B> {
    use crate::profile::{heap_profile_in, heap_profiling_status};

    let Some(token) = &config.token else {
        return ResponseFuture::ready(json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "heap profiling endpoint is not configured"}),
        ));
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| bearer(v.as_bytes()));
    let unauthorized = |challenge: &'static str, message: &str| {
        let mut response = json_response(StatusCode::UNAUTHORIZED, &json!({"error": message}));
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        ResponseFuture::ready(response)
    };
    match presented {
        None => {
            return unauthorized(
                "Bearer realm=\"heap-profile\"",
                "a bearer token is required",
            );
        }
        Some(presented) if !token.matches(presented) => {
            return unauthorized(
                "Bearer realm=\"heap-profile\", error=\"invalid_token\"",
                "invalid token",
            );
        }
        Some(_) => {}
    }
    if let Err(e) = heap_profiling_status() {
        return ResponseFuture::ready(json_response(
            StatusCode::NOT_IMPLEMENTED,
            &json!({"error": e.to_string()}),
        ));
    }
    let dir = config.profile_dir.clone();
    ResponseFuture::boxed(Box::pin(async move {
        let result = match tokio::task::spawn_blocking(move || heap_profile_in(&dir)).await {
            Ok(result) => result,
            Err(e) => Err(crate::HeapProfileError::Dump(e.to_string())),
        };
        match result {
            Ok(profile) => {
                let mut response = Response::new(Bytes::from(profile));
                let headers = response.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                headers.insert(
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_static("attachment; filename=\"heap.pb.gz\""),
                );
                no_store(&mut response);
                response
            }
            Err(e) => json_response(
                if e.is_unavailable() {
                    StatusCode::NOT_IMPLEMENTED
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                },
                &json!({"error": e.to_string()}),
            ),
        }
    }))
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 7235).
#[cfg(feature = "heap-profile")]
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = value[7..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(all(test, feature = "heap-profile"))]
mod tests {
    use super::bearer;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer   abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bearer"), None);
    }
}
