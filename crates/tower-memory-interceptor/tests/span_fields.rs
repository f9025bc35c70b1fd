//! Each request's report recorded on its `tracing` span: an outer tower-http `TraceLayer` whose
//! spans declare the `memory.*` fields, a real server and client, and a subscriber layer that
//! keeps what `Span::record` delivers. Alone in its binary because it installs the global
//! subscriber.

mod common;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use common::*;
use tower_http::trace::TraceLayer;
use tower_memory_interceptor::{
    MemoryInterceptorLayer, SPAN_ALLOCATED, SPAN_DEALLOCATED, SPAN_FIELDS, SPAN_HEAVY, SPAN_NET,
    SPAN_OUTCOME, SPAN_PEAK_NET,
};
use tracing::field::{Empty, Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A field's value as the subscriber received it.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    U64(u64),
    I64(i64),
    Bool(bool),
    Str(String),
}

type Fields = BTreeMap<String, Value>;

struct Collect<'a>(&'a mut Fields);

impl Visit for Collect<'_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::U64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::I64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::Str(value.into()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::Str(format!("{value:?}")));
    }
}

/// Keeps every span's fields: those given at creation, then what `on_record` delivers; a closed
/// span moves to `closed`.
#[derive(Clone, Default)]
struct SpanCapture {
    open: Arc<Mutex<BTreeMap<u64, Fields>>>,
    closed: Arc<Mutex<Vec<Fields>>>,
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for SpanCapture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = Fields::new();
        attrs.record(&mut Collect(&mut fields));
        self.open.lock().unwrap().insert(id.into_u64(), fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut open = self.open.lock().unwrap();
        let fields = open.entry(id.into_u64()).or_default();
        let mut delivered = Fields::new();
        values.record(&mut Collect(&mut delivered));
        fields.extend(delivered);
    }

    fn on_close(&self, id: Id, _: Context<'_, S>) {
        if let Some(fields) = self.open.lock().unwrap().remove(&id.into_u64()) {
            self.closed.lock().unwrap().push(fields);
        }
    }
}

fn capture() -> &'static SpanCapture {
    static CAPTURE: OnceLock<SpanCapture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = SpanCapture::default();
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(capture.clone()),
        )
        .expect("the only subscriber of this binary");
        capture
    })
}

/// The closed span whose `path` field is `path`, waiting (bounded) for it: the report comes when
/// the server drops the response body, after the client has read it.
async fn closed_span(capture: &SpanCapture, path: &str) -> Fields {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = capture
            .closed
            .lock()
            .unwrap()
            .iter()
            .find(|f| f.get("path") == Some(&Value::Str(path.into())))
            .cloned();
        if let Some(fields) = found {
            return fields;
        }
        assert!(Instant::now() < deadline, "no closed span for {path}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn router(reports: &Reports) -> Router {
    Router::new()
        .route(
            "/alloc",
            get(|| async {
                let block = vec![1u8; 2 << 20];
                black_box(&block);
                "done"
            }),
        )
        .route("/plain", get(|| async { "plain" }))
        .layer(MemoryInterceptorLayer::new().on_report(reports.sink()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_lands_on_the_trace_layers_span() {
    let capture = capture();
    let reports = Reports::default();
    // Declared fields get the report; `/plain`'s span declares none and must get nothing.
    let app = router(&reports).layer(TraceLayer::new_for_http().make_span_with(
        |req: &http::Request<axum::body::Body>| {
            if req.uri().path() == "/plain" {
                tracing::info_span!("request", path = req.uri().path())
            } else {
                tracing::info_span!(
                    "request",
                    path = req.uri().path(),
                    memory.allocated_bytes = Empty,
                    memory.deallocated_bytes = Empty,
                    memory.net_bytes = Empty,
                    memory.peak_net_bytes = Empty,
                    memory.outcome = Empty,
                    memory.heavy = Empty,
                )
            }
        },
    ));
    let (addr, _server) = serve_axum(app).await;
    let client = client();
    assert_eq!(get_status(&client, addr, "/alloc").await, 200);

    let span = closed_span(capture, "/alloc").await;
    let report = reports
        .wait_for("/alloc", 1, Duration::from_secs(10))
        .await
        .remove(0);
    assert!(report.allocated >= 2 << 20, "{report:?}");
    assert_eq!(
        span.get(SPAN_ALLOCATED),
        Some(&Value::U64(report.allocated))
    );
    assert_eq!(
        span.get(SPAN_DEALLOCATED),
        Some(&Value::U64(report.deallocated))
    );
    assert_eq!(span.get(SPAN_NET), Some(&Value::I64(report.net)));
    assert_eq!(span.get(SPAN_PEAK_NET), Some(&Value::I64(report.peak_net)));
    assert_eq!(
        span.get(SPAN_OUTCOME),
        Some(&Value::Str("completed".into()))
    );
    assert_eq!(span.get(SPAN_HEAVY), Some(&Value::Bool(false)));
    for name in SPAN_FIELDS {
        assert!(span.contains_key(name), "{name} missing from {span:?}");
    }

    assert_eq!(get_status(&client, addr, "/plain").await, 200);
    let plain = closed_span(capture, "/plain").await;
    reports.wait_for("/plain", 1, Duration::from_secs(10)).await;
    assert!(plain.keys().all(|k| !k.starts_with("memory.")), "{plain:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instrumented_caller_span_gets_the_report_too() {
    use tower::ServiceExt;
    use tracing::Instrument;
    let capture = capture();
    let reports = Reports::default();
    let span = tracing::info_span!(
        "call",
        path = "/caller",
        memory.allocated_bytes = Empty,
        memory.outcome = Empty
    );
    let response = router(&reports)
        .oneshot(
            http::Request::get("/alloc")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .instrument(span)
        .await
        .unwrap();
    drop(response);
    let report = reports
        .wait_for("/alloc", 1, Duration::from_secs(10))
        .await
        .remove(0);
    let fields = closed_span(capture, "/caller").await;
    assert_eq!(
        fields.get(SPAN_ALLOCATED),
        Some(&Value::U64(report.allocated))
    );
    assert_eq!(
        fields.get(SPAN_OUTCOME),
        Some(&Value::Str("body_dropped".into()))
    );
}
