//! [`ResponseFuture`]: the response future of either path.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use super::StackBody;

pin_project! {
    /// The response future of [`MemoryStackService`](super::MemoryStackService).
    // pin_project_lite takes no attributes on variant fields; the variants say what they hold.
    #[allow(missing_docs)]
    #[project = ResponseFutureProj]
    pub enum ResponseFuture<F, L> {
        /// Through every layer.
        Full { #[pin] future: F },
        /// Through the layers that act on this request.
        Light { #[pin] future: L },
    }
}

impl<F, L, FB, LB, E> Future for ResponseFuture<F, L>
where
    F: Future<Output = Result<Response<FB>, E>>,
    L: Future<Output = Result<Response<LB>, E>>,
{
    type Output = Result<Response<StackBody<FB, LB>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Full { future } => future
                .poll(cx)
                .map_ok(|r| r.map(|body| StackBody::Full { body })),
            ResponseFutureProj::Light { future } => future
                .poll(cx)
                .map_ok(|r| r.map(|body| StackBody::Light { body })),
        }
    }
}
