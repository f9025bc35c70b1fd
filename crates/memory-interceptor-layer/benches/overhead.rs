//! In-process cost of `MemoryInterceptorLayer` against the bare service, on a ready trivial service:
//! one request = call, poll the response future to completion, poll the body to its end, drop it
//! (the report is emitted then).
//!
//! - `per_request/*`: the service answers on its first poll.
//! - `per_poll/*/polls=N`: the response future returns `Pending` N-1 times first (waking itself),
//!   so the cost of one extra poll is the slope between `polls=1` and `polls=17`.
//!
//! Run: `cargo bench -p memory-interceptor-layer --bench overhead`
//! (short run: append `-- --warm-up-time 1 --measurement-time 2`).

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, Uri};
use http_body::Body;
use http_body_util::Full;
use memory_interceptor_layer::{Ledger, MemoryInterceptorLayer};
use memory_probe::PressureSignal;
use tower::{Layer, Service};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A response future that is ready after `left` self-woken `Pending`s.
struct Yields {
    left: u32,
}

impl Future for Yields {
    type Output = Result<Response<Full<Bytes>>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.left == 0 {
            return Poll::Ready(Ok(Response::new(Full::new(Bytes::from_static(
                b"Hello, World!",
            )))));
        }
        self.left -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[derive(Clone, Copy)]
struct Trivial {
    pendings: u32,
}

impl Service<Request<()>> for Trivial {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Yields;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: Request<()>) -> Yields {
        Yields {
            left: self.pendings,
        }
    }
}

/// One request through `service`, driven by hand with a no-op waker.
#[inline(always)]
fn one_request<S, B>(service: &mut S, uri: &Uri, cx: &mut Context<'_>)
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
{
    let _ = service.poll_ready(cx);
    // A clone of a parsed URI, like the shared bytes of a URI that hyper parsed.
    let mut request = Request::new(());
    *request.uri_mut() = uri.clone();
    let mut future = pin!(service.call(request));
    let response = loop {
        if let Poll::Ready(result) = future.as_mut().poll(cx) {
            break result.unwrap();
        }
    };
    let mut body = pin!(response.into_body());
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(cx) {
        black_box(frame.ok());
    }
}

fn layers() -> Vec<(&'static str, Option<MemoryInterceptorLayer>)> {
    vec![
        ("bare", None),
        ("layer", Some(MemoryInterceptorLayer::new())),
        (
            "layer_ledger",
            Some(MemoryInterceptorLayer::new().ledger(Ledger::default())),
        ),
        (
            "layer_quota_pressure",
            Some(
                MemoryInterceptorLayer::new()
                    .max_request_memory(256 << 20)
                    .abort_under_pressure(PressureSignal::new()),
            ),
        ),
        (
            "layer_no_metrics",
            Some(MemoryInterceptorLayer::new().metrics(false)),
        ),
    ]
}

fn bench_group(c: &mut Criterion, group_name: &str, polls: &[u32]) {
    assert_eq!(
        memory_probe::self_check().backend,
        memory_probe::Backend::Jemalloc,
        "the counters must be live for the figures to mean anything"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Inside a runtime, as in a server (the pressure watcher needs one).
    let _guard = runtime.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let uri = Uri::from_static("/api/hello");
    let mut group = c.benchmark_group(group_name);
    for &n in polls {
        for (name, layer) in layers() {
            let id = if polls.len() > 1 {
                format!("{name}/polls={n}")
            } else {
                name.to_string()
            };
            let inner = Trivial { pendings: n - 1 };
            match layer {
                None => {
                    let mut service = inner;
                    group.bench_function(id, |b| {
                        b.iter(|| one_request(&mut service, &uri, &mut cx))
                    });
                }
                Some(layer) => {
                    let mut service = layer.layer(inner);
                    group.bench_function(id, |b| {
                        b.iter(|| one_request(&mut service, &uri, &mut cx))
                    });
                }
            }
        }
    }
    group.finish();
}

fn per_request(c: &mut Criterion) {
    bench_group(c, "per_request", &[1]);
}

fn per_poll(c: &mut Criterion) {
    bench_group(c, "per_poll", &[1, 17]);
}

criterion_group!(benches, per_request, per_poll);
criterion_main!(benches);
