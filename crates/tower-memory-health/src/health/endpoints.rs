//! The answers of the memory endpoints: `/health`, `/health/live`, `/health/ready` and
//! `/debug/pprof/heap`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;
use tower_memory_probe::Pressure;

use super::layer::HealthConfig;
#[cfg(feature = "heap-profile")]
use crate::future::ResponseFuture;
use crate::monitor::{Liveness, MemoryMonitor};
use crate::report::HealthReport;

fn no_store(response: &mut Response<Bytes>) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

pub(super) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Bytes> {
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

pub(super) fn health(report: &HealthReport) -> Response<Bytes> {
    let status = if report.status == "critical" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let value = serde_json::to_value(report).expect("the report serializes");
    json_response(status, &value)
}

pub(super) fn live(monitor: &MemoryMonitor) -> Response<Bytes> {
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

pub(super) fn ready(config: &HealthConfig) -> Response<Bytes> {
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

/// `/metrics`: the request gauges and the monitor's figures, rendered by the recorder.
#[cfg(feature = "prometheus")]
pub(super) fn metrics(config: &HealthConfig) -> Response<Bytes> {
    let Some(metrics) = &config.metrics else {
        unreachable!("endpoint() matches /metrics only with a recorder");
    };
    #[cfg(feature = "interceptor")]
    crate::gauges::record_request_metrics(config.ledger.as_ref(), config.in_flight.as_ref());
    let text = metrics.render(Some(&config.monitor));
    let mut response = Response::new(Bytes::from(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    no_store(&mut response);
    response
}

#[cfg(feature = "heap-profile")]
pub(super) fn heap<S: tower_service::Service<R>, R, B>(
    config: &HealthConfig,
    headers: &http::HeaderMap,
) -> ResponseFuture<S, R, B> {
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
