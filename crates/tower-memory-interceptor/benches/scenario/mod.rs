// The in-process scenario shared by the `overhead` (criterion) and `overhead_interleaved` benches:
// a ready trivial service, driven by hand with a no-op waker.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::Body;
use http_body_util::Full;
use tower::Service;
use tower_memory_interceptor::{GovernorConfig, Ledger, MemoryInterceptorLayer};
use tower_memory_probe::{MemoryBudget, PressureSignal};

/// A response future that is ready after `left` self-woken `Pending`s.
pub(crate) struct Yields {
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

/// Answers `Hello, World!` after `pendings` self-woken `Pending`s.
#[derive(Clone, Copy)]
pub(crate) struct Trivial {
    pub pendings: u32,
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

/// One request through `service`: call, poll the response future to completion, poll the body to
/// its end, drop everything (the layer's report is emitted on the way).
#[inline(always)]
pub(crate) fn one_request<S, B>(service: &mut S, uri: &Uri, cx: &mut Context<'_>)
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

/// The configurations compared with the bare service.
pub(crate) fn layers() -> Vec<(&'static str, MemoryInterceptorLayer)> {
    vec![
        ("layer", MemoryInterceptorLayer::new()),
        (
            "layer_ledger",
            MemoryInterceptorLayer::new().ledger(Ledger::default()),
        ),
        (
            "layer_quota_pressure",
            MemoryInterceptorLayer::new()
                .max_request_memory(256 << 20)
                .abort_under_pressure(PressureSignal::new()),
        ),
        (
            "layer_quota_pressure_governor",
            MemoryInterceptorLayer::new()
                .max_request_memory(256 << 20)
                .abort_under_pressure(PressureSignal::new())
                .governor(GovernorConfig::new(MemoryBudget::new(1 << 30))),
        ),
        (
            "layer_no_metrics",
            MemoryInterceptorLayer::new().metrics(false),
        ),
    ]
}

/// A waker that does nothing but is reference-counted like a runtime's (cloning it is an atomic
/// increment, as with Tokio's task wakers), so that keeping one costs what it costs in a server.
pub(crate) fn waker() -> Waker {
    struct Idle;
    impl Wake for Idle {
        fn wake(self: Arc<Self>) {}
    }
    Waker::from(Arc::new(Idle))
}

/// The figures mean nothing unless the counters are live.
pub(crate) fn check_counters() {
    assert_eq!(
        tower_memory_probe::self_check().backend,
        tower_memory_probe::Backend::Jemalloc,
        "the counters must be live for the figures to mean anything"
    );
}
