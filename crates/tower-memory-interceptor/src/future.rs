//! `ResponseFuture`: waits for admission when the governor says so, then measures every poll of
//! the inner service's future and its drop.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_memory_probe::{BudgetError, OVERLOAD_CONTENT_TYPE, overload_body, retry_after_seconds};
use tower_service::Service;

use crate::account::{Measure, Tracker, Verdict};
use crate::body::MeteredBody;
use crate::error::AbortError;
use crate::governor::Waiting;
use crate::outcome::{AbortReason, Outcome};

pin_project! {
    #[project = StateProj]
    enum State<S, R, F> {
        // Not admitted yet: the readied service and the request wait with it. Boxed, so that
        // the future of a request admitted at once is no larger for it.
        Waiting { pending: Box<Pending<S, R>> },
        Running { #[pin] future: F },
        Done,
    }
}

struct Pending<S, R> {
    service: Option<S>,
    request: Option<R>,
    waiting: Waiting,
}

pin_project! {
    /// Response future of [`MemoryInterceptor`](crate::MemoryInterceptor).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, Request<B>, S::Future>,
        // `None` once the request's report has been handed to the body or emitted.
        tracker: Option<Tracker>,
    }

    impl<S, B> PinnedDrop for ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if let Some(mut tracker) = this.tracker.take() {
                let ran = matches!(*this.state, State::Running { .. });
                // Dropping the handler's future frees what it holds: charge that too.
                let measure = Measure::start(&mut tracker);
                this.state.set(State::Done);
                measure.end();
                tracker.ran = ran;
                let outcome = if tracker.panicked { Outcome::Panicked } else { Outcome::Cancelled };
                tracker.finish(outcome);
            }
        }
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    #[inline]
    pub(crate) fn running(future: S::Future, tracker: Tracker) -> Self {
        ResponseFuture {
            state: State::Running { future },
            tracker: Some(tracker),
        }
    }

    pub(crate) fn waiting(
        service: S,
        request: Request<B>,
        waiting: Waiting,
        tracker: Tracker,
    ) -> Self {
        ResponseFuture {
            state: State::Waiting {
                pending: Box::new(Pending {
                    service: Some(service),
                    request: Some(request),
                    waiting,
                }),
            },
            tracker: Some(tracker),
        }
    }
}

impl<S, B> std::fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.state {
            State::Waiting { .. } => "waiting",
            State::Running { .. } => "running",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Data: From<Bytes>,
{
    type Output = Result<Response<MeteredBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let tracker = this
            .tracker
            .as_mut()
            .expect("ResponseFuture polled after completion");

        if let StateProj::Waiting { pending } = this.state.as_mut().project() {
            let account = std::sync::Arc::clone(&tracker.account);
            let governor = account
                .shared
                .governor
                .as_ref()
                .expect("only the governor makes requests wait");
            let Pending {
                service,
                request,
                waiting,
            } = &mut **pending;
            match governor.poll_admission(&account, waiting, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => {
                    let tracker = this.tracker.take().expect("tracker present");
                    return Poll::Ready(Ok(refuse(this.state, tracker, &error)));
                }
                Poll::Ready(Ok(bytes)) => {
                    tracker.reserve(bytes);
                    let mut service = service.take().expect("service kept while waiting");
                    let request = request.take().expect("request kept while waiting");
                    let measure = Measure::start(tracker);
                    let future = service.call(request);
                    this.state.set(State::Running { future });
                    drop(service);
                    let grew = measure.end();
                    tracker.after_poll(grew, false);
                }
            }
        }

        match tracker.before_poll(cx) {
            Verdict::Abort(reason) => {
                let tracker = this.tracker.take().expect("tracker present");
                return Poll::Ready(Ok(abort(this.state, tracker, reason, None)));
            }
            Verdict::Park => return Poll::Pending,
            Verdict::Continue | Verdict::OverBudget => {}
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
                match tracker.after_poll(grew, true) {
                    Verdict::Abort(reason) => {
                        let tracker = this.tracker.take().expect("tracker present");
                        return Poll::Ready(Ok(abort(this.state, tracker, reason, None)));
                    }
                    Verdict::OverBudget => {
                        if let Verdict::Abort(reason) = tracker.park(cx) {
                            let tracker = this.tracker.take().expect("tracker present");
                            return Poll::Ready(Ok(abort(this.state, tracker, reason, None)));
                        }
                    }
                    Verdict::Continue | Verdict::Park => {}
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

fn finish_ready<S, R, F, B, E>(
    mut tracker: Tracker,
    grew: bool,
    state: Pin<&mut State<S, R, F>>,
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
            tracker.response_ready();
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
fn abort<S, R, F, B>(
    state: Pin<&mut State<S, R, F>>,
    mut tracker: Tracker,
    reason: AbortReason,
    response: Option<Response<B>>,
) -> Response<MeteredBody<B>>
where
    B: Body,
    B::Data: From<Bytes>,
{
    let held = tracker.held();
    let over = tracker.overcommit();
    let measure = Measure::start(&mut tracker);
    let mut state = state;
    state.set(State::Done);
    drop(response);
    let grew = measure.end();
    tracker.after_poll(grew, false);
    tracker.status = Some(StatusCode::SERVICE_UNAVAILABLE);
    let shared = std::sync::Arc::clone(&tracker.account.shared);
    let error = AbortError::new(reason, held, shared.config.max_request_memory, over);
    tracker.finish(Outcome::Aborted(reason));
    overload_response(
        &error.to_string(),
        reason.as_str(),
        shared.config.retry_after,
    )
}

/// Answers a request the governor did not admit: it never ran.
#[cold]
#[inline(never)]
fn refuse<S, R, F, B>(
    state: Pin<&mut State<S, R, F>>,
    mut tracker: Tracker,
    error: &BudgetError,
) -> Response<MeteredBody<B>>
where
    B: Body,
    B::Data: From<Bytes>,
{
    let measure = Measure::start(&mut tracker);
    let mut state = state;
    state.set(State::Done);
    measure.end();
    tracker.ran = false;
    tracker.status = Some(StatusCode::SERVICE_UNAVAILABLE);
    let retry_after = tracker.account.shared.config.retry_after;
    tracker.finish(Outcome::Rejected);
    let message =
        format!("request refused: no room in the memory budget for its predicted cost ({error})");
    overload_response(&message, refusal_reason(error), retry_after)
}

/// The `reason` token of a refusal: what the governor's queue said.
fn refusal_reason(error: &BudgetError) -> &'static str {
    match error {
        BudgetError::Exhausted { .. } => "admission_timeout",
        BudgetError::QueueFull { .. } => "queue_full",
        // Admission never checks the size (a reservation larger than the budget runs alone);
        // kept for completeness.
        _ => "budget_exhausted",
    }
}

/// A memory 503 in the workspace's one format (tower-memory-probe's `overload_body`): JSON with the
/// sentence and the reason token, `Retry-After` in whole seconds.
fn overload_response<B>(
    error: &str,
    reason: &str,
    retry_after: Duration,
) -> Response<MeteredBody<B>>
where
    B: Body,
    B::Data: From<Bytes>,
{
    let seconds = retry_after_seconds(retry_after);
    let body = overload_body(error, reason, seconds);
    let mut response = Response::new(MeteredBody::message(Bytes::from(body)));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(OVERLOAD_CONTENT_TYPE),
    );
    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}
