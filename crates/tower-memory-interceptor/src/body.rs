//! `MeteredBody`: measures every `poll_frame` of the response body and its drop, and emits the
//! request's report at the end.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::BoxError;
use crate::account::{Measure, Tracker, Verdict};
use crate::error::AbortError;
use crate::outcome::{AbortReason, Outcome};

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        // The service's body, measured.
        Inner { #[pin] body: B },
        // The layer's own message (the text of a 503).
        Message { data: Option<Bytes> },
        // Ended: the inner body has been dropped.
        Done,
    }
}

pin_project! {
    /// Response body of [`MemoryInterceptor`](crate::MemoryInterceptor): the service's body,
    /// with its data and trailers unchanged, measured; or the text of an abort response.
    ///
    /// Its error is boxed: the inner body's error, or an [`AbortError`] when the request was
    /// aborted while the body streamed.
    pub struct MeteredBody<B> {
        #[pin]
        kind: Kind<B>,
        // `None` once the report has been emitted (or for a message body, which has none).
        tracker: Option<Tracker>,
        // The inner body said it reached its end.
        ended: bool,
    }

    impl<B> PinnedDrop for MeteredBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if let Some(mut tracker) = this.tracker.take() {
                let ended = *this.ended;
                let measure = Measure::start(&mut tracker);
                this.kind.set(Kind::Done);
                let grew = measure.end();
                tracker.after_poll(grew, false);
                tracker.finish(if ended { Outcome::Completed } else { Outcome::BodyDropped });
            }
        }
    }
}

impl<B> MeteredBody<B> {
    /// `no_body`: the server will not send this body (it is empty, or the response to a HEAD, or
    /// a 1xx/204/304): dropping it unpolled is its normal end.
    pub(crate) fn new(body: B, tracker: Tracker, no_body: bool) -> Self {
        MeteredBody {
            kind: Kind::Inner { body },
            tracker: Some(tracker),
            ended: no_body,
        }
    }

    pub(crate) fn message(data: Bytes) -> Self {
        MeteredBody {
            kind: Kind::Message { data: Some(data) },
            tracker: None,
            ended: true,
        }
    }
}

impl<B> std::fmt::Debug for MeteredBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Message { .. } => "message",
            Kind::Done => "done",
        };
        f.debug_struct("MeteredBody").field("kind", &kind).finish()
    }
}

impl<B> Body for MeteredBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let body = match this.kind.as_mut().project() {
            KindProj::Inner { body } => body,
            KindProj::Message { data } => {
                return Poll::Ready(data.take().map(|d| Ok(Frame::data(B::Data::from(d)))));
            }
            KindProj::Done => return Poll::Ready(None),
        };
        let Some(tracker) = this.tracker.as_mut() else {
            return Poll::Ready(None);
        };
        match tracker.before_poll(cx) {
            Verdict::Abort(reason) => {
                let tracker = this.tracker.take().expect("tracker present");
                return Poll::Ready(Some(Err(abort::<B, B::Data>(
                    this.kind, tracker, reason, None,
                ))));
            }
            Verdict::Park => return Poll::Pending,
            Verdict::Continue | Verdict::OverBudget => {}
        }

        let measure = Measure::start(tracker);
        let poll = body.poll_frame(cx);
        let grew = measure.end();
        match poll {
            Poll::Pending => {
                match tracker.after_poll(grew, true) {
                    Verdict::Abort(reason) => {
                        let tracker = this.tracker.take().expect("tracker present");
                        return Poll::Ready(Some(Err(abort::<B, B::Data>(
                            this.kind, tracker, reason, None,
                        ))));
                    }
                    Verdict::OverBudget => {
                        if let Verdict::Abort(reason) = tracker.park(cx) {
                            let tracker = this.tracker.take().expect("tracker present");
                            return Poll::Ready(Some(Err(abort::<B, B::Data>(
                                this.kind, tracker, reason, None,
                            ))));
                        }
                    }
                    Verdict::Continue | Verdict::Park => {}
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    tracker.handed_off(data.remaining());
                }
                match tracker.after_poll(grew, true) {
                    Verdict::Abort(reason) => {
                        let tracker = this.tracker.take().expect("tracker present");
                        return Poll::Ready(Some(Err(abort(
                            this.kind,
                            tracker,
                            reason,
                            Some(frame),
                        ))));
                    }
                    // The frame goes out; the next poll waits for room.
                    Verdict::OverBudget => {
                        let _ = tracker.park(cx);
                    }
                    Verdict::Continue | Verdict::Park => {}
                }
                if let KindProj::Inner { body } = this.kind.as_mut().project()
                    && body.is_end_stream()
                {
                    // The last frame: end now rather than at the next poll or the drop (a server
                    // may do neither soon), so the body's memory goes and the report comes.
                    *this.ended = true;
                    let tracker = this.tracker.take().expect("tracker present");
                    end(this.kind, tracker, Outcome::Completed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                tracker.after_poll(grew, true);
                let tracker = this.tracker.take().expect("tracker present");
                end(this.kind, tracker, Outcome::Failed);
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                tracker.after_poll(grew, true);
                *this.ended = true;
                let tracker = this.tracker.take().expect("tracker present");
                end(this.kind, tracker, Outcome::Completed);
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Message { data } => data.is_none(),
            Kind::Done => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Message { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len()) as u64)
            }
            Kind::Done => SizeHint::with_exact(0),
        }
    }
}

/// Drops the inner body under measurement and emits the report.
#[inline(never)]
fn end<B>(kind: Pin<&mut Kind<B>>, mut tracker: Tracker, outcome: Outcome) {
    let measure = Measure::start(&mut tracker);
    let mut kind = kind;
    kind.set(Kind::Done);
    let grew = measure.end();
    tracker.after_poll(grew, false);
    tracker.finish(outcome);
}

/// Ends a streaming body early: drops it (and the frame in hand) under measurement, emits the
/// report and returns the error the body ends with.
#[cold]
#[inline(never)]
fn abort<B, D>(
    kind: Pin<&mut Kind<B>>,
    mut tracker: Tracker,
    reason: AbortReason,
    frame: Option<Frame<D>>,
) -> BoxError {
    let held = tracker.held();
    let over = tracker.overcommit();
    let measure = Measure::start(&mut tracker);
    let mut kind = kind;
    kind.set(Kind::Done);
    drop(frame);
    let grew = measure.end();
    tracker.after_poll(grew, false);
    let error = AbortError::new(
        reason,
        held,
        tracker.account.shared.config.max_request_memory,
        over,
    );
    tracker.finish(Outcome::Aborted(reason));
    Box::new(error)
}
