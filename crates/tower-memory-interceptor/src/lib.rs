//! Exact per-request allocation accounting for Tower services (axum, hyper, tonic).
//!
//! Where this crate sits in the workspace, its code map and the invariants it keeps:
//! `ARCHITECTURE.md` at the repository root.
//!
//! Process-wide "memory before and after" figures belong to every request in flight at once.
//! [`MemoryInterceptorLayer`] gives each request its own: around every poll of the response future,
//! every `poll_frame` of the response body and the drop of each, it reads the calling thread's
//! allocation counters ([`tower_memory_probe::thread_counters`]) and adds the difference to that
//! request's account. Both readings are taken on one thread within one poll, so the figures stay
//! exact under any concurrency and when a work-stealing runtime moves the task between threads.
//!
//! - [`RequestMemory`] in the request extensions: live `allocated()`, `deallocated()`, `net()`,
//!   and [`instrument`](RequestMemory::instrument) to charge work the handler spawns.
//! - One [`MemoryReport`] per request when it ends (body finished, body dropped by a disconnect,
//!   future dropped, handler panicked): a `tracing` event (target `memory_interceptor`; warn for
//!   heavy and aborted requests, debug otherwise), the `metrics` histograms
//!   `http_request_allocated_bytes` and `http_request_net_allocated_bytes` and the counter
//!   `http_heavy_requests_total` (labels `method`, `route`, `status`), the optional [`Ledger`]
//!   (per-route totals, the "memory-intensive endpoints" view) and an optional callback.
//! - Heavy requests (default 50 MiB allocated) also start a background [`Reclaimer`] run
//!   (rate-limited and single-flight; never awaited by the request). A request whose held bytes
//!   cross the threshold while it runs is logged at that moment as well.
//! - [`InFlight`] lists the requests in flight that hold memory now, largest first (route,
//!   method, age, held and peak bytes).
//! - Logs show the request's path without its query string unless
//!   [`log_query_strings`](MemoryInterceptorLayer::log_query_strings) is on.
//! - An optional per-request quota (`max_request_memory`): a request holding more at a poll
//!   boundary has its handler dropped (freeing its memory) and gets 503 with `Retry-After`; a body
//!   that is already streaming ends with an [`AbortError`]. Every memory 503 of the layer (aborts
//!   and the governor's refusals) has the workspace's one format: `Retry-After` in whole seconds
//!   (default 1 s), a JSON body from [`tower_memory_probe::overload_body`] with the sentence and a
//!   `reason` token (`quota`, `pressure`, `overcommit`, `admission_timeout`, `queue_full`). With a [`PressureSignal`], under
//!   critical pressure the requests holding the most memory are aborted first, a bounded number
//!   per tick. Each abort is a warning, a report with its reason and a count in
//!   `http_requests_aborted_total{reason}`.
//!
//! # The report on the request's span
//!
//! When the request ends, its figures are also recorded on the `tracing` span that was current
//! when the layer was called: an outer tower-http `TraceLayer`'s span, or the span of an
//! `#[instrument]`ed function that calls the service. tracing-opentelemetry exports recorded
//! fields as span attributes, so each request's memory reaches the trace. `Span::record` only
//! fills fields declared when the span was created: declare the ones you want as
//! `tracing::field::Empty` (a span that declares none of them is left alone and not even kept):
//!
//! | field | type | value |
//! |---|---|---|
//! | `memory.allocated_bytes` ([`SPAN_ALLOCATED`]) | u64 | [`MemoryReport::allocated`] |
//! | `memory.deallocated_bytes` ([`SPAN_DEALLOCATED`]) | u64 | [`MemoryReport::deallocated`] |
//! | `memory.net_bytes` ([`SPAN_NET`]) | i64 | [`MemoryReport::net`] |
//! | `memory.peak_net_bytes` ([`SPAN_PEAK_NET`]) | i64 | [`MemoryReport::peak_net`] |
//! | `memory.outcome` ([`SPAN_OUTCOME`]) | str | [`Outcome::as_str`] |
//! | `memory.heavy` ([`SPAN_HEAVY`]) | bool | [`MemoryReport::heavy`] |
//!
//! ```
//! use std::convert::Infallible;
//!
//! use http::{Request, Response};
//! use tower::ServiceBuilder;
//! use tower_http::trace::TraceLayer;
//! use tower_memory_interceptor::MemoryInterceptorLayer;
//! use tracing::field::Empty;
//!
//! let service = ServiceBuilder::new()
//!     // Outside the memory layer, so that its span is current when the layer is called.
//!     .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<String>| {
//!         tracing::info_span!(
//!             "request",
//!             method = %req.method(),
//!             uri = %req.uri(),
//!             memory.allocated_bytes = Empty,
//!             memory.net_bytes = Empty,
//!             memory.peak_net_bytes = Empty,
//!             memory.outcome = Empty,
//!         )
//!     }))
//!     .layer(MemoryInterceptorLayer::new())
//!     .service_fn(|_: Request<String>| async { Ok::<_, Infallible>(Response::new(String::new())) });
//! # let _ = service;
//! ```
//!
//! The span is closed only when the last reference to it goes: the layer keeps one until the
//! report, so the recorded fields are in the exported span even though the response body ends
//! after `TraceLayer`'s `on_response`. With no subscriber installed this costs one relaxed load
//! per request; with one, a span that declares no `memory.` field costs one scan of its field
//! names. The same figures are also in the report's `tracing` event (target
//! `memory_interceptor`, debug, warn for heavy and aborted requests).
//!
//! The route label is axum's `MatchedPath` (feature `axum`; install the layer with
//! `Router::layer` so that routing has happened), else what the
//! [`route_classifier`](MemoryInterceptorLayer::route_classifier) or
//! [`RequestMemory::set_route`] says, else [`UNMATCHED_ROUTE`]: raw paths never become labels.
//!
//! The program must count allocations: `tikv_jemallocator::Jemalloc` with tower-memory-probe's
//! `jemalloc` feature, or [`tower_memory_probe::CountingAlloc`] around any allocator.
//!
//! # Example
//!
//! ```
//! use std::alloc::System;
//! use std::convert::Infallible;
//! use std::sync::{Arc, Mutex};
//!
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower_memory_interceptor::{Ledger, MemoryInterceptorLayer, RequestMemory};
//! use tower_memory_probe::CountingAlloc;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! #[global_allocator]
//! static ALLOC: CountingAlloc<System> = CountingAlloc::new(System);
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let ledger = Ledger::new(256);
//! let reports = Arc::new(Mutex::new(Vec::new()));
//! let sink = Arc::clone(&reports);
//! let service = ServiceBuilder::new()
//!     .layer(
//!         MemoryInterceptorLayer::new()
//!             .ledger(ledger.clone())
//!             .max_request_memory(256 << 20)
//!             .route_classifier(|_, uri| (uri.path() == "/report").then_some("/report"))
//!             .on_report(move |report| sink.lock().unwrap().push(report.clone())),
//!     )
//!     .service_fn(|req: Request<()>| async move {
//!         let table = vec![1u8; 4 << 20]; // 4 MiB, charged to this request
//!         let memory = req.extensions().get::<RequestMemory>().unwrap();
//!         assert!(memory.allocated() >= 4 << 20);
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(table))))
//!     });
//!
//! let response = service.oneshot(Request::get("/report").body(()).unwrap()).await.unwrap();
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(body.len(), 4 << 20);
//!
//! let report = reports.lock().unwrap().pop().expect("one report");
//! assert!(report.allocated >= 4 << 20);
//! assert_eq!(report.route, "/report");
//! assert_eq!(ledger.top(1)[0].route, "/report");
//! # }
//! ```
//!
//! [`Reclaimer`]: tower_memory_probe::Reclaimer
//! [`PressureSignal`]: tower_memory_probe::PressureSignal
//!
//! # Features
//!
//! None is on by default, and none needs a C toolchain.
//!
//! - `axum`: axum's `MatchedPath` as the route label, and [`RequestMemory`] as an extractor.

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The code map: `layer.rs` (the builder), `service.rs`, `future.rs` (`ResponseFuture`, the 503s),
// `body.rs` (`MeteredBody`) on top; below them `account/` (the per-request account, its owner's
// `Tracker` and the `Measure` around every poll), `governor/` with `cost.rs`, `pressure.rs`,
// `registry.rs`, `inflight.rs`; where a finished request goes: `emit.rs`, `labels.rs`,
// `ledger.rs`, `metrics.rs`; the data types `route.rs`, `outcome.rs`, `report.rs`, `error.rs`,
// `memory.rs`; at the bottom `config.rs`, and `shared.rs`, what one layer's services share.

mod account;
mod body;
mod config;
mod cost;
mod emit;
mod error;
mod future;
mod governor;
mod inflight;
mod labels;
mod layer;
mod ledger;
mod memory;
mod metrics;
mod outcome;
mod pressure;
mod registry;
mod report;
mod route;
mod service;
mod shared;
mod span;

pub use crate::metrics::{
    ABORTED_METRIC, ADMISSION_WAIT_METRIC, ALLOCATED_METRIC, GOVERNOR_METRIC, HEAVY_METRIC,
    NET_METRIC, describe_metrics,
};
pub use body::MeteredBody;
pub use config::{
    DEFAULT_FLOOR, DEFAULT_HEAVY_THRESHOLD, DEFAULT_PARK_TIMEOUT, DEFAULT_PROBE_TIMEOUT,
    DEFAULT_QUEUE_TIMEOUT, DEFAULT_UNSEEN_COST, GovernorConfig,
};
pub use error::AbortError;
pub use future::ResponseFuture;
pub use inflight::{InFlight, InFlightRequest, RouteInFlight};
pub use layer::MemoryInterceptorLayer;
pub use ledger::{GovernorCounts, Ledger, OTHER_ROUTE, RouteStats};
#[cfg(feature = "axum")]
pub use memory::MissingRequestMemory;
pub use memory::{Instrumented, RequestMemory};
pub use outcome::{AbortReason, Outcome};
pub use report::MemoryReport;
pub use route::{Route, UNMATCHED_ROUTE};
pub use service::MemoryInterceptor;
pub use span::{
    SPAN_ALLOCATED, SPAN_DEALLOCATED, SPAN_FIELDS, SPAN_HEAVY, SPAN_NET, SPAN_OUTCOME,
    SPAN_PEAK_NET,
};
/// The boxed error of [`MeteredBody`] (tower-memory-probe's, shared by the workspace).
pub use tower_memory_probe::BoxError;

// The unit tests measure real allocations too.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: tower_memory_probe::CountingAlloc<std::alloc::System> =
    tower_memory_probe::CountingAlloc::new(std::alloc::System);
