//! `ResponseFuture`: measures every poll of the inner service's future and its drop.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::Body;
use pin_project_lite::pin_project;

use crate::account::{Measure, Tracker, Verdict};
use crate::body::MeteredBody;
use crate::error::AbortError;
use crate::report::{AbortReason, Outcome};

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running { #[pin] future: F },
        Done,
    }
}

pin_project! {
    /// Response future of [`MemoryInterceptor`](crate::MemoryInterceptor).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
        // `None` once the request's report has been handed to the body or emitted.
        tracker: Option<Tracker>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if let Some(mut tracker) = this.tracker.take() {
                // Dropping the handler's future frees what it holds: charge that too.
                let measure = Measure::start(&mut tracker);
                this.state.set(State::Done);
                measure.end();
                let outcome = if tracker.panicked { Outcome::Panicked } else { Outcome::Cancelled };
                tracker.finish(outcome);
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(future: F, tracker: Tracker) -> Self {
        ResponseFuture {
            state: State::Running { future },
            tracker: Some(tracker),
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("done", &self.tracker.is_none())
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    B::Data: From<Bytes>,
{
    type Output = Result<Response<MeteredBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let tracker = this
            .tracker
            .as_mut()
            .expect("ResponseFuture polled after completion");

        if let Verdict::Abort(reason) = tracker.before_poll(cx) {
            let tracker = this.tracker.take().expect("tracker present");
            return Poll::Ready(Ok(abort(this.state, tracker, reason, None)));
        }

        // Written so that the result is not moved across a scope: it can be a large value, and a
        // move per poll would cost more than the measurement itself.
        let measure = Measure::start(tracker);
        let StateProj::Running { future } = this.state.as_mut().project() else {
            panic!("ResponseFuture polled after completion");
        };
        let poll = future.poll(cx);
        if poll.is_ready() {
            // The handler's future is done: drop it now, measured, so what it freed is charged
            // to the request.
            this.state.set(State::Done);
        }
        let grew = measure.end();
        match poll {
            Poll::Pending => {
                if let Verdict::Abort(reason) = tracker.after_poll(grew, true) {
                    let tracker = this.tracker.take().expect("tracker present");
                    return Poll::Ready(Ok(abort(this.state, tracker, reason, None)));
                }
                Poll::Pending
            }
            Poll::Ready(result) => {
                let tracker = this.tracker.take().expect("tracker present");
                finish_ready(tracker, grew, this.state, result)
            }
        }
    }
}

fn finish_ready<F, B, E>(
    mut tracker: Tracker,
    grew: bool,
    state: Pin<&mut State<F>>,
    result: Result<Response<B>, E>,
) -> Poll<Result<Response<MeteredBody<B>>, E>>
where
    B: Body,
    B::Data: From<Bytes>,
{
    match result {
        Ok(response) => {
            tracker.status = Some(response.status());
            if let Verdict::Abort(reason) = tracker.after_poll(grew, true) {
                // The response itself may be what holds the memory (a buffered body): drop it.
                return Poll::Ready(Ok(abort(state, tracker, reason, Some(response))));
            }
            let status = response.status();
            let no_body = response.body().is_end_stream()
                || tracker.account.method == http::Method::HEAD
                || status.is_informational()
                || status == StatusCode::NO_CONTENT
                || status == StatusCode::NOT_MODIFIED;
            Poll::Ready(Ok(
                response.map(|body| MeteredBody::new(body, tracker, no_body))
            ))
        }
        Err(error) => {
            tracker.after_poll(grew, true);
            tracker.finish(Outcome::Failed);
            Poll::Ready(Err(error))
        }
    }
}

/// Drops the handler's future (and its response, if it made one) under measurement, emits the
/// report and builds the 503.
#[cold]
#[inline(never)]
fn abort<F, B>(
    state: Pin<&mut State<F>>,
    mut tracker: Tracker,
    reason: AbortReason,
    response: Option<Response<B>>,
) -> Response<MeteredBody<B>>
where
    B: Body,
    B::Data: From<Bytes>,
{
    let held = tracker.held();
    let measure = Measure::start(&mut tracker);
    let mut state = state;
    state.set(State::Done);
    drop(response);
    let grew = measure.end();
    tracker.after_poll(grew, false);
    tracker.status = Some(StatusCode::SERVICE_UNAVAILABLE);
    let config = std::sync::Arc::clone(&tracker.account.config);
    let error = AbortError::new(reason, held, config.max_request_memory);
    tracker.finish(Outcome::Aborted(reason));
    abort_response(&error, config.retry_after.as_secs())
}

pub(crate) fn abort_response<B>(error: &AbortError, retry_after: u64) -> Response<MeteredBody<B>>
where
    B: Body,
    B::Data: From<Bytes>,
{
    let mut response = Response::new(MeteredBody::message(Bytes::from(format!("{error}\n"))));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}
