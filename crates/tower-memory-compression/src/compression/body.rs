//! [`CompressionBody`]: the response body of the compression service.
//!
//! (Over 400 lines: one body type whose four kinds share `poll_frame`; the streaming
//! compressor is most of it.)

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::flush::FlushPolicy;
use crate::codec::Encoder;
use crate::{BoxError, Encoding};

/// Input is fed to an encoder in slices of at most this size, so that a huge input frame
/// still produces output frames of bounded size in between.
const FEED_STEP: usize = 64 * 1024;

pin_project! {
    /// The response body of [`Compression`](super::Compression): the inner body compressed,
    /// or passed through.
    pub struct CompressionBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        // Sent as it is.
        Passthrough { #[pin] body: B },
        // Sent as it is, after frames held while deciding.
        Replay { replay: Box<Replay<B>> },
        // Compressed as it streams.
        Compress { state: Box<Compressing<B>> },
        // A body computed in full (compressed in one shot, or the layer's own response).
        Full { data: Option<Bytes>, trailers: Option<HeaderMap> },
    }
}

pub(crate) struct Replay<B> {
    pub(crate) frames: VecDeque<Bytes>,
    pub(crate) trailers: Option<HeaderMap>,
    pub(crate) error: Option<BoxError>,
    /// `None` once the inner body has ended.
    pub(crate) body: Option<Pin<Box<B>>>,
}

pub(crate) struct Compressing<B> {
    body: Option<Pin<Box<B>>>,
    replay: VecDeque<Bytes>,
    input: Bytes,
    trailers: Option<HeaderMap>,
    encoder: Option<Encoder>,
    out: Vec<u8>,
    policy: FlushPolicy,
    eof: bool,
    finished: bool,
    done: bool,
    /// When the oldest input not yet flushed arrived (`None`: nothing unflushed).
    dirty_since: Option<Instant>,
    last_input: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    meter: Meter,
}

/// Input and output bytes not yet reported to the metrics.
struct Meter {
    encoding: Encoding,
    input: u64,
}

impl Meter {
    fn report(&mut self, output: u64) {
        crate::metrics::bytes(self.encoding, std::mem::take(&mut self.input), output);
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.report(0);
    }
}

impl<B> CompressionBody<B> {
    pub(crate) fn passthrough(body: B) -> Self {
        CompressionBody {
            kind: Kind::Passthrough { body },
        }
    }

    pub(crate) fn replay(replay: Replay<B>) -> Self {
        CompressionBody {
            kind: Kind::Replay {
                replay: Box::new(replay),
            },
        }
    }

    pub(crate) fn full(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        CompressionBody {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
                trailers,
            },
        }
    }

    pub(crate) fn compress(
        body: Option<Pin<Box<B>>>,
        held: VecDeque<Bytes>,
        encoder: Encoder,
        encoding: Encoding,
        policy: FlushPolicy,
        held_since: Option<(Instant, Instant)>,
    ) -> Self {
        CompressionBody {
            kind: Kind::Compress {
                state: Box::new(Compressing {
                    eof: body.is_none(),
                    body,
                    replay: held,
                    input: Bytes::new(),
                    trailers: None,
                    encoder: Some(encoder),
                    out: Vec::new(),
                    policy,
                    finished: false,
                    done: false,
                    // Held input has been waiting since it arrived.
                    dirty_since: held_since.map(|(first, _)| first),
                    last_input: held_since.map(|(_, last)| last),
                    timer: None,
                    meter: Meter { encoding, input: 0 },
                }),
            },
        }
    }
}

impl<B> std::fmt::Debug for CompressionBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Passthrough { .. } => "passthrough".to_owned(),
            Kind::Replay { .. } => "replay".to_owned(),
            Kind::Compress { state } => format!("compress({})", state.meter.encoding),
            Kind::Full { .. } => "full".to_owned(),
        };
        f.debug_struct("CompressionBody")
            .field("kind", &kind)
            .finish()
    }
}

impl<B> Body for CompressionBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Passthrough { body } => match body.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(to_bytes_frame(frame)))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            KindProj::Replay { replay } => poll_replay(replay, cx),
            KindProj::Compress { state } => state.poll(cx),
            KindProj::Full { data, trailers } => {
                if let Some(data) = data.take() {
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Passthrough { body } => body.is_end_stream(),
            Kind::Replay { replay } => {
                replay.frames.is_empty()
                    && replay.trailers.is_none()
                    && replay.error.is_none()
                    && replay.body.as_ref().is_none_or(|b| b.is_end_stream())
            }
            Kind::Compress { state } => state.done,
            Kind::Full { data, trailers } => data.is_none() && trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Passthrough { body } => body.size_hint(),
            Kind::Replay { replay } => {
                let held: u64 = replay.frames.iter().map(|f| f.len() as u64).sum();
                let rest = replay
                    .body
                    .as_ref()
                    .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint());
                let mut hint = SizeHint::new();
                hint.set_lower(held + rest.lower());
                if let Some(upper) = rest.upper() {
                    hint.set_upper(held + upper);
                }
                hint
            }
            Kind::Compress { state } if state.done => SizeHint::with_exact(0),
            Kind::Compress { .. } => SizeHint::default(),
            Kind::Full { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

fn to_bytes_frame<D: Buf>(frame: Frame<D>) -> Frame<Bytes> {
    frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))
}

fn poll_replay<B>(
    replay: &mut Replay<B>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    if let Some(data) = replay.frames.pop_front() {
        return Poll::Ready(Some(Ok(Frame::data(data))));
    }
    if let Some(e) = replay.error.take() {
        replay.body = None;
        return Poll::Ready(Some(Err(e)));
    }
    if let Some(t) = replay.trailers.take() {
        replay.body = None;
        return Poll::Ready(Some(Ok(Frame::trailers(t))));
    }
    let Some(body) = replay.body.as_mut() else {
        return Poll::Ready(None);
    };
    match body.as_mut().poll_frame(cx) {
        Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(to_bytes_frame(frame)))),
        Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
        Poll::Ready(None) => {
            replay.body = None;
            Poll::Ready(None)
        }
        Poll::Pending => Poll::Pending,
    }
}

impl<B> Compressing<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    fn emit(&mut self) -> Frame<Bytes> {
        let out = std::mem::take(&mut self.out);
        self.meter.report(out.len() as u64);
        Frame::data(Bytes::from(out))
    }

    fn timed(&self) -> bool {
        self.policy.idle.is_some() || self.policy.max_latency.is_some()
    }

    fn mark_input(&mut self) {
        if self.timed() {
            let now = Instant::now();
            self.last_input = Some(now);
            self.dirty_since.get_or_insert(now);
        }
    }

    /// When unflushed input must be flushed, if it must.
    fn deadline(&self) -> Option<Instant> {
        let since = self.dirty_since?;
        let idle = self
            .policy
            .idle
            .zip(self.last_input)
            .map(|(d, last)| last + d);
        let latency = self.policy.max_latency.map(|d| since + d);
        match (idle, latency) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn flush(&mut self) -> Result<(), BoxError> {
        let encoder = self
            .encoder
            .as_mut()
            .expect("encoder present until finished");
        let result = encoder.flush(&mut self.out);
        self.dirty_since = None;
        self.last_input = None;
        result.map_err(Into::into)
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            if self.finished {
                self.done = true;
                return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            if !self.input.is_empty() {
                let n = self.input.len().min(FEED_STEP);
                let encoder = self
                    .encoder
                    .as_mut()
                    .expect("encoder present until finished");
                let result = encoder.compress(&self.input[..n], &mut self.out);
                if let Err(e) = result {
                    self.done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                self.input.advance(n);
                self.meter.input += n as u64;
                if self.out.len() >= self.policy.frame_size {
                    return Poll::Ready(Some(Ok(self.emit())));
                }
                continue;
            }
            if let Some(held) = self.replay.pop_front() {
                self.input = held;
                continue;
            }
            if self.eof {
                let encoder = self
                    .encoder
                    .as_mut()
                    .expect("encoder present until finished");
                let result = encoder.finish(&mut self.out);
                // Dropping the encoder now returns a zstd context to the pool before the
                // response is fully written.
                self.encoder = None;
                self.finished = true;
                if let Err(e) = result {
                    self.done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                if !self.out.is_empty() {
                    return Poll::Ready(Some(Ok(self.emit())));
                }
                continue;
            }
            // Input that keeps coming is still flushed within `max_latency`.
            if let Some(deadline) = self.deadline()
                && Instant::now() >= deadline
            {
                if let Err(e) = self.flush() {
                    self.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                if !self.out.is_empty() {
                    return Poll::Ready(Some(Ok(self.emit())));
                }
            }
            let body = self.body.as_mut().expect("body present until eof");
            match body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(mut data) => {
                        let data = data.copy_to_bytes(data.remaining());
                        if !data.is_empty() {
                            self.input = data;
                            self.mark_input();
                        }
                    }
                    Err(frame) => {
                        self.trailers = frame.into_trailers().ok();
                        self.eof = true;
                        self.body = None;
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    self.done = true;
                    self.body = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(None) => {
                    self.eof = true;
                    self.body = None;
                }
                Poll::Pending => {
                    let Some(deadline) = self.deadline() else {
                        return Poll::Pending;
                    };
                    if Instant::now() < deadline {
                        let timer = self
                            .timer
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                        if timer.deadline() != deadline {
                            timer.as_mut().reset(deadline);
                        }
                        if timer.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                    }
                    if let Err(e) = self.flush() {
                        self.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                    if !self.out.is_empty() {
                        return Poll::Ready(Some(Ok(self.emit())));
                    }
                }
            }
        }
    }
}
