//! [`ResponseFuture`]: the handler's future, preceded by buffering where the layer buffers, and
//! overruled by the layer when the handler's streaming body failed.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Response;
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::budget::Held as Reservation;
use crate::buffer::Called;
use crate::reject::{Rejection, Shared};
use crate::response::ResponseBody;

/// Buffering before the handler runs. Boxed: it is an `async fn` (waiting for budget, reading
/// frames under the slow-body guard) and only bodies the layer buffers take this path, so
/// streaming requests never pay for the allocation.
type Prepare<F> = Pin<Box<dyn Future<Output = Result<Called<F>, Rejection>> + Send>>;

pin_project! {
    /// Response future of [`StreamBodyLimit`](crate::StreamBodyLimit).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        http1: bool,
        handler_grace: Duration,
    }
}

/// What the layer's own answers to a request depend on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answer {
    /// HTTP/1 (its rejections close the connection).
    pub(crate) http1: bool,
    /// How long the handler may run on after its body failed.
    pub(crate) handler_grace: Duration,
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Reject {
            rejection: Option<Rejection>,
        },
        Prepare {
            prepare: Prepare<F>,
        },
        Inner {
            #[pin]
            fut: F,
            // Held until the handler's future ends or is dropped: the buffered bytes it was given
            // stay charged to the budget while it may use them.
            reservation: Option<Reservation>,
            shared: Option<Arc<Shared>>,
            grace: Option<Pin<Box<Sleep>>>,
        },
        Done,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Reject { .. } => "Reject",
            State::Prepare { .. } => "Prepare",
            State::Inner { .. } => "Inner",
            State::Done => "Done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn reject(rejection: Rejection, answer: Answer) -> Self {
        rejection.count();
        Self::with(
            State::Reject {
                rejection: Some(rejection),
            },
            answer,
        )
    }

    pub(crate) fn prepare(prepare: Prepare<F>, answer: Answer) -> Self {
        Self::with(State::Prepare { prepare }, answer)
    }

    /// The handler's future, already called.
    #[inline]
    pub(crate) fn called(called: Called<F>, answer: Answer) -> Self {
        Self::with(
            State::Inner {
                fut: called.fut,
                reservation: called.reservation,
                shared: called.shared,
                grace: None,
            },
            answer,
        )
    }

    #[inline]
    fn with(state: State<F>, answer: Answer) -> Self {
        Self {
            state,
            http1: answer.http1,
            handler_grace: answer.handler_grace,
        }
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Reject { rejection } => {
                    let response = rejection
                        .take()
                        .map(|r| r.to_response(*this.http1))
                        .expect("ResponseFuture polled after completion");
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(response));
                }
                StateProj::Prepare { prepare } => match prepare.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(called)) => this.state.set(State::Inner {
                        fut: called.fut,
                        reservation: called.reservation,
                        shared: called.shared,
                        grace: None,
                    }),
                    Poll::Ready(Err(rejection)) => {
                        rejection.count();
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(rejection.to_response(*this.http1)));
                    }
                },
                StateProj::Inner {
                    fut, shared, grace, ..
                } => {
                    if let Poll::Ready(result) = fut.poll(cx) {
                        // A failed body decides the status, whatever the handler answered.
                        let out = match shared.as_ref().and_then(|s| s.violation()) {
                            Some(rejection) => Ok(rejection.to_response(*this.http1)),
                            None => result.map(|res| res.map(ResponseBody::inner)),
                        };
                        this.state.set(State::Done);
                        return Poll::Ready(out);
                    }
                    let Some(shared) = shared else {
                        return Poll::Pending;
                    };
                    shared.register(cx.waker());
                    let Some(rejection) = shared.violation() else {
                        return Poll::Pending;
                    };
                    // The body failed and the handler is still running: it gets
                    // `handler_grace` to finish before it is dropped.
                    let sleep = grace
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(*this.handler_grace)));
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    let response = rejection.to_response(*this.http1);
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(response));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}
