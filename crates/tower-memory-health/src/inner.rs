//! Calling the wrapped service so that its readiness never holds back the layers' own answers.
//!
//! Both layers report themselves ready at all times: a probe or a 503 must not queue behind a
//! saturated inner service. The plain way to do that is to clone the inner service for every
//! request and ready the clone in the request's own future (`Oneshot`), but an axum route's clone
//! is a heap allocation per request. So `poll_ready` asks the inner service too and remembers the
//! answer: when it was ready (always, for axum and most stacks) the request goes straight to it;
//! only when it was not is a clone readied on the side. As with any tower middleware that answers
//! some requests itself (tower-http's validation layers, for one), capacity the inner service
//! reserved at `poll_ready` stays reserved until the next request that goes through.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tower::util::Oneshot;
use tower_service::Service;

/// The inner service and whether it said "ready" at the last `poll_ready`.
pub(crate) struct ReadyInner<S> {
    service: S,
    ready: bool,
}

impl<S> ReadyInner<S> {
    pub(crate) fn new(service: S) -> Self {
        Self {
            service,
            ready: false,
        }
    }

    /// Always `Ready(Ok)` unless the inner service failed; records whether it is ready.
    pub(crate) fn poll_ready<R>(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>>
    where
        S: Service<R>,
    {
        if self.ready {
            return Poll::Ready(Ok(()));
        }
        match self.service.poll_ready(cx) {
            Poll::Ready(Ok(())) => {
                self.ready = true;
                Poll::Ready(Ok(()))
            }
            // A failed inner service fails every request anyway, the layer's own answers too.
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Ready(Ok(())),
        }
    }

    /// Calls the inner service directly when it is ready, else a clone readied in the future.
    #[inline]
    pub(crate) fn call<R>(&mut self, req: R) -> InnerFuture<S, R>
    where
        S: Service<R> + Clone,
    {
        let kind = if std::mem::take(&mut self.ready) {
            InnerKind::Called {
                future: self.service.call(req),
            }
        } else {
            InnerKind::Deferred {
                oneshot: Oneshot::new(self.service.clone(), req),
            }
        };
        InnerFuture { kind }
    }
}

impl<S: Clone> Clone for ReadyInner<S> {
    fn clone(&self) -> Self {
        // The clone's service has not been asked yet.
        Self::new(self.service.clone())
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for ReadyInner<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.service.fmt(f)
    }
}

pin_project! {
    /// The inner service's response future (called directly, or readied first on a clone).
    pub(crate) struct InnerFuture<S, R>
    where
        S: Service<R>,
    {
        #[pin]
        kind: InnerKind<S, R>,
    }
}

pin_project! {
    #[project = InnerKindProj]
    enum InnerKind<S, R>
    where
        S: Service<R>,
    {
        Called {
            #[pin]
            future: S::Future,
        },
        Deferred {
            #[pin]
            oneshot: Oneshot<S, R>,
        },
    }
}

impl<S, R> Future for InnerFuture<S, R>
where
    S: Service<R>,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            InnerKindProj::Called { future } => future.poll(cx),
            InnerKindProj::Deferred { oneshot } => oneshot.poll(cx),
        }
    }
}

impl<S: Service<R>, R> std::fmt::Debug for InnerFuture<S, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InnerFuture").finish_non_exhaustive()
    }
}
