//! [`LimitedBody`]: the request body the handler reads behind the layer.

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_memory_probe::BoxError;

use crate::budget::Held as Reservation;
use crate::config::StreamBodyConfig;
use crate::error::BodyError;
use crate::reject::{Rejection, Shared};
use crate::slow::{GuardError, SlowGuard};

pin_project! {
    /// The request body behind [`StreamBodyLayer`](crate::StreamBodyLayer).
    ///
    /// Buffered, it yields one frame with the whole body (and any trailers). Streaming, it yields
    /// frames of at most `chunk_size` bytes, cut from the client's frames with
    /// [`Bytes::split_to`] (no copy), and fails with a [`BodyError`] when the body grows past
    /// `max_body_size` or the client is too slow.
    pub struct LimitedBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Buffered {
            data: Option<Bytes>,
            trailers: Option<HeaderMap>,
        },
        Streaming {
            #[pin]
            inner: B,
            state: StreamState,
        },
        // A body that was polled before the handler got it (unknown length): it had to be
        // pinned then, so it stays boxed.
        Boxed {
            inner: Pin<Box<B>>,
            state: StreamState,
        },
    }
}

impl<B> fmt::Debug for LimitedBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Buffered { .. } => "Buffered",
            Kind::Streaming { .. } | Kind::Boxed { .. } => "Streaming",
        };
        f.debug_struct("LimitedBody").field("kind", &kind).finish()
    }
}

impl<B> LimitedBody<B> {
    pub(crate) fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self {
            kind: Kind::Buffered {
                data: (!data.is_empty()).then_some(data),
                trailers,
            },
        }
    }

    pub(crate) fn streaming(inner: B, state: StreamState) -> Self {
        Self {
            kind: Kind::Streaming { inner, state },
        }
    }

    pub(crate) fn boxed(inner: Pin<Box<B>>, state: StreamState) -> Self {
        Self {
            kind: Kind::Boxed { inner, state },
        }
    }
}

impl<B> Body for LimitedBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.project().kind.project() {
            KindProj::Buffered { data, trailers } => {
                if let Some(data) = data.take() {
                    Poll::Ready(Some(Ok(Frame::data(data))))
                } else {
                    Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
                }
            }
            KindProj::Streaming { inner, state } => state.poll_frame(inner, cx),
            KindProj::Boxed { inner, state } => state.poll_frame(inner.as_mut(), cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
            Kind::Streaming { inner, state } => state.is_end_stream(inner),
            Kind::Boxed { inner, state } => state.is_end_stream(&**inner),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Streaming { inner, state } => state.size_hint(inner),
            Kind::Boxed { inner, state } => state.size_hint(&**inner),
        }
    }
}

/// The state of a streaming body, the same for a pinned and a boxed inner body.
pub(crate) struct StreamState {
    /// Frames read before the handler was called (unknown length crossing the threshold).
    prefix: VecDeque<Bytes>,
    /// Budget held for `prefix`, given back frame by frame as the handler takes them.
    reservation: Option<Reservation>,
    /// The rest of a frame larger than `chunk`.
    current: Bytes,
    guard: SlowGuard,
    received: u64,
    max: u64,
    /// The declared length, checked as the body arrives (a streaming body of known length).
    declared: Option<u64>,
    chunk: usize,
    shared: Arc<Shared>,
    done: bool,
}

/// What a body of unknown length brought before it crossed the threshold and started to stream.
pub(crate) struct Prefix {
    /// The frames read so far, handed to the handler first.
    pub(crate) frames: VecDeque<Bytes>,
    /// Budget held for `frames`.
    pub(crate) reservation: Option<Reservation>,
    /// The slow-body guard that read them, carried on.
    pub(crate) guard: SlowGuard,
    /// Bytes in `frames`.
    pub(crate) received: u64,
}

impl StreamState {
    /// A body that streams from its first byte, with its declared length if known.
    pub(crate) fn new(
        config: &StreamBodyConfig,
        declared: Option<u64>,
        shared: Arc<Shared>,
    ) -> Self {
        Self::after(
            config,
            Prefix {
                frames: VecDeque::new(),
                reservation: None,
                guard: SlowGuard::new(config.slow),
                received: 0,
            },
            declared,
            shared,
        )
    }

    /// A body that streams on after `prefix`.
    pub(crate) fn after(
        config: &StreamBodyConfig,
        prefix: Prefix,
        declared: Option<u64>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            prefix: prefix.frames,
            reservation: prefix.reservation,
            current: Bytes::new(),
            guard: prefix.guard,
            received: prefix.received,
            max: config.max_body_size,
            declared,
            chunk: config.chunk_size.max(1),
            shared,
            done: false,
        }
    }

    fn take_chunk(&mut self) -> Bytes {
        if self.current.len() <= self.chunk {
            std::mem::take(&mut self.current)
        } else {
            self.current.split_to(self.chunk)
        }
    }

    fn fail(&mut self, err: BodyError) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.done = true;
        self.current = Bytes::new();
        self.prefix.clear();
        self.reservation = None;
        self.shared.violate(Rejection::from_body_error(&err));
        Poll::Ready(Some(Err(err)))
    }

    fn poll_frame<B>(
        &mut self,
        mut inner: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>>
    where
        B: Body + ?Sized,
        B::Error: Into<BoxError>,
    {
        if !self.current.is_empty() {
            return Poll::Ready(Some(Ok(Frame::data(self.take_chunk()))));
        }
        if let Some(front) = self.prefix.pop_front() {
            if let Some(reservation) = &mut self.reservation {
                reservation.release(front.len() as u64);
            }
            if self.prefix.is_empty() {
                self.reservation = None;
            }
            self.current = front;
            return Poll::Ready(Some(Ok(Frame::data(self.take_chunk()))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            let frame = match ready!(self.guard.poll_frame(inner.as_mut(), cx)) {
                None => {
                    if let Some(declared) = self.declared.filter(|&d| d != self.received) {
                        return self.fail(BodyError::LengthMismatch {
                            declared,
                            received: self.received,
                        });
                    }
                    self.done = true;
                    return Poll::Ready(None);
                }
                Some(Ok(frame)) => frame,
                Some(Err(GuardError::Slow(slow))) => return self.fail(slow.into()),
                Some(Err(GuardError::Body(e))) => return self.fail(BodyError::Read(e.into())),
            };
            match frame.into_data() {
                Ok(mut data) => {
                    let data = data.copy_to_bytes(data.remaining());
                    if data.is_empty() {
                        continue;
                    }
                    self.received += data.len() as u64;
                    if self.received > self.max {
                        return self.fail(BodyError::TooLarge { limit: self.max });
                    }
                    if let Some(declared) = self.declared.filter(|&d| self.received > d) {
                        return self.fail(BodyError::LengthMismatch {
                            declared,
                            received: self.received,
                        });
                    }
                    self.current = data;
                    return Poll::Ready(Some(Ok(Frame::data(self.take_chunk()))));
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    // A frame kind this crate does not know: nothing to pass on.
                }
            }
        }
    }

    fn buffered_len(&self) -> u64 {
        self.current.len() as u64 + self.prefix.iter().map(|b| b.len() as u64).sum::<u64>()
    }

    fn is_end_stream<B: Body + ?Sized>(&self, inner: &B) -> bool {
        self.current.is_empty() && self.prefix.is_empty() && (self.done || inner.is_end_stream())
    }

    fn size_hint<B: Body + ?Sized>(&self, inner: &B) -> SizeHint {
        if self.done {
            return SizeHint::with_exact(self.buffered_len());
        }
        let held = self.buffered_len();
        let inner = inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(held));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(held));
        }
        hint
    }
}
