//! The whole stack in process: `GET /api/hello` from request to collected body through every
//! layer, against the bare axum router, in one criterion group (jemalloc, the Prometheus recorder
//! installed as in the example server). Each layer alone too, so the cost of each shows.
//!
//! ```sh
//! cargo bench --features full --bench stack
//! ```
//!
//! `ONLY=<configuration> ROUNDS=<n>` runs one configuration `n` x 1,000 times without criterion,
//! for instruction counts under `valgrind --tool=callgrind` (`benches/stack_instructions.sh`).

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::Criterion;
use http::Request;
use http_body::Body as _;
use tower::Service;
use tower_memory::compression::{CompressionLayer, RequestDecompressionLayer};
use tower_memory::health::{HealthLayer, MemoryConfig, MemoryMonitor, PressureShedLayer};
use tower_memory::interceptor::{Ledger, MemoryInterceptorLayer};
use tower_memory::probe::Reclaimer;
use tower_memory::stack::MemoryStack;
use tower_memory::stream_body::StreamBodyLayer;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const BATCH: u32 = 1_000;

/// What the example server's stack is built from.
struct Parts {
    config: MemoryConfig,
    monitor: MemoryMonitor,
    ledger: Ledger,
    reclaimer: Reclaimer,
    budget: tower_memory::probe::MemoryBudget,
}

fn parts() -> Parts {
    let config = MemoryConfig::default();
    let budget = config.budget();
    let reclaimer = Reclaimer::new();
    let monitor = config
        .monitor_builder()
        .reclaimer(reclaimer.clone())
        .budget(budget.clone(), config.request_budget)
        .build()
        .unwrap();
    Parts {
        config,
        monitor,
        ledger: Ledger::new(256),
        reclaimer,
        budget,
    }
}

fn routes() -> Router {
    // `with_state` turns the handlers into services once, as serving a router does; without it
    // axum would build them (and apply every layer) again for each request.
    Router::new()
        .route("/api/hello", get(|| async { "hello" }))
        .with_state(())
}

fn health(p: &Parts) -> HealthLayer {
    HealthLayer::new(&p.monitor).ledger(p.ledger.clone(), 10)
}

fn interceptor(p: &Parts) -> MemoryInterceptorLayer {
    MemoryInterceptorLayer::new()
        .ledger(p.ledger.clone())
        .reclaimer(p.reclaimer.clone())
        .max_request_memory(1 << 30)
        .abort_under_pressure(p.monitor.signal())
        .governor(p.config.governor(p.budget.clone()))
}

fn compression(p: &Parts) -> CompressionLayer {
    CompressionLayer::new()
        .threshold(tower_memory::config::CompressionConfig::default().threshold)
        .pressure(p.monitor.signal())
}

fn body_limits(p: &Parts) -> StreamBodyLayer {
    StreamBodyLayer::new()
        .max_body_size(1 << 30)
        .buffer_threshold(tower_memory::stream_body::DEFAULT_BUFFER_THRESHOLD)
        .memory_budget(p.budget.clone())
}

fn stack() -> MemoryStack {
    MemoryStack::builder(MemoryConfig::default())
        .build()
        .unwrap()
}

/// The configurations, by name.
fn configurations() -> Vec<(&'static str, Router)> {
    let p = parts();
    vec![
        ("bare", routes()),
        // The example server's stack as of issue 10: one `Router::layer` per layer.
        (
            "stack_six_layers",
            routes()
                .layer(body_limits(&p))
                .layer(RequestDecompressionLayer::new())
                .layer(compression(&p))
                .layer(interceptor(&p))
                .layer(PressureShedLayer::new(&p.monitor))
                .layer(health(&p)),
        ),
        // What any layer costs through `Router::layer` (axum boxes the service and the body).
        (
            "noop_layer",
            routes().layer(tower::util::MapResponseLayer::new(
                |r: axum::response::Response| r,
            )),
        ),
        // The same layers as one `MemoryStackLayer` (what the example server applies).
        ("stack", routes().layer(stack().layer())),
        ("health", routes().layer(health(&p))),
        ("shed", routes().layer(PressureShedLayer::new(&p.monitor))),
        ("interceptor", routes().layer(interceptor(&p))),
        ("compression", routes().layer(compression(&p))),
        (
            "decompression",
            routes().layer(RequestDecompressionLayer::new()),
        ),
        ("stream_body", routes().layer(body_limits(&p))),
    ]
}

struct Idle;

impl Wake for Idle {
    fn wake(self: Arc<Self>) {}
}

fn request() -> Request<Body> {
    // What wrk sends, plus what a browser-ish client adds.
    Request::get("/api/hello")
        .header("host", "127.0.0.1:5000")
        .header("user-agent", "bench")
        .header("accept", "*/*")
        .body(Body::empty())
        .unwrap()
}

/// One request: call, poll the response to completion, collect the body.
#[inline(always)]
fn one_request(router: &mut Router, cx: &mut Context<'_>) {
    let mut future = pin!(Service::<Request<Body>>::call(router, request()));
    let response = loop {
        if let Poll::Ready(r) = future.as_mut().poll(cx) {
            break r.unwrap();
        }
    };
    let mut body = pin!(response.into_body());
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(cx) {
        black_box(frame.ok());
    }
}

fn main() {
    assert_eq!(
        tower_memory::probe::self_check().backend,
        tower_memory::probe::Backend::Jemalloc
    );
    // Metrics are recorded for real, as in the example server.
    let _metrics = tower_memory::health::PrometheusMetrics::install().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let waker = Waker::from(Arc::new(Idle));
    let mut cx = Context::from_waker(&waker);

    if std::env::var_os("SIZES").is_some() {
        use tower::Layer;
        fn fut<S: Service<Request<Body>>>(_: &S) -> usize {
            std::mem::size_of::<S::Future>()
        }
        #[derive(Clone)]
        struct Inner;
        impl<B> Service<Request<B>> for Inner {
            type Response = axum::response::Response;
            type Error = std::convert::Infallible;
            type Future =
                std::future::Ready<Result<axum::response::Response, std::convert::Infallible>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: Request<B>) -> Self::Future {
                std::future::ready(Ok(axum::response::Response::new(Body::empty())))
            }
        }
        let route = Inner;
        let p = parts();
        println!("route {}", fut(&route));
        println!("stack {}", fut(&stack().layer().layer(route.clone())));
        println!("health {}", fut(&health(&p).layer(route.clone())));
        println!(
            "shed {}",
            fut(&PressureShedLayer::new(&p.monitor).layer(route.clone()))
        );
        println!("interceptor {}", fut(&interceptor(&p).layer(route.clone())));
        println!("compression {}", fut(&compression(&p).layer(route.clone())));
        println!(
            "decompression {}",
            fut(&RequestDecompressionLayer::new().layer(route.clone()))
        );
        println!("stream_body {}", fut(&body_limits(&p).layer(route.clone())));
        return;
    }
    if let Ok(only) = std::env::var("ONLY") {
        let rounds: u32 = std::env::var("ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(10);
        let (_, mut router) = configurations()
            .into_iter()
            .find(|(n, _)| *n == only)
            .unwrap_or_else(|| panic!("no configuration {only}"));
        for _ in 0..rounds * BATCH {
            one_request(&mut router, &mut cx);
        }
        return;
    }

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("stack_hello");
    for (name, mut router) in configurations() {
        // Warm: the first request of a route is the governor's probe.
        one_request(&mut router, &mut cx);
        group.bench_function(name, |b| b.iter(|| one_request(&mut router, &mut cx)));
    }
    group.finish();
    criterion.final_summary();
}
