//! Reading ahead: a response that passed the skip decision is read until its size is known or
//! the threshold is crossed, then sent as it is, compressed in one shot (exact length), or
//! compressed as it streams.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::header::CONTENT_LENGTH;
use http::response::Parts;
use http::{HeaderMap, HeaderValue, Response};
use http_body::Body;
use tokio::time::{Instant, Sleep};

use super::body::{CompressionBody, Replay};
use super::config::Settings;
use super::decision::Plan;
use super::flush::FlushPolicy;
use super::headers::set_encoded_headers;
use super::skip::SkipReason;
use crate::codec::EncoderConfig;
use crate::{BoxError, metrics};

/// A body of unknown size that keeps delivering frames at once is collected up to this much
/// before compression starts streaming (then compressed in one shot, with an exact length, if
/// it ended by then).
const ONE_SHOT_MAX: u64 = 256 * 1024;

/// A response whose body is being read until the decision can be made.
pub(crate) struct ReadAhead<B> {
    parts: Option<Parts>,
    body: Option<Pin<Box<B>>>,
    frames: VecDeque<Bytes>,
    len: u64,
    trailers: Option<HeaderMap>,
    error: Option<BoxError>,
    ended: bool,
    known: Option<u64>,
    config: EncoderConfig,
    policy: FlushPolicy,
    streaming_type: bool,
    threshold: u64,
    hold_until: Instant,
    timer: Option<Pin<Box<Sleep>>>,
    /// When the first and the last held frame arrived.
    arrived: Option<(Instant, Instant)>,
}

impl<B> ReadAhead<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    pub(crate) fn new(parts: Parts, body: B, plan: Plan, settings: &Settings) -> Self {
        ReadAhead {
            parts: Some(parts),
            body: Some(Box::pin(body)),
            frames: VecDeque::new(),
            len: 0,
            trailers: None,
            error: None,
            ended: false,
            known: plan.known,
            config: plan.config,
            policy: plan.policy,
            streaming_type: plan.streaming_type,
            threshold: settings.threshold,
            hold_until: Instant::now() + settings.hold,
            timer: None,
            arrived: None,
        }
    }

    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Response<CompressionBody<B>>> {
        while !self.ended {
            let body = self.body.as_mut().expect("body present until ended");
            match body.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(mut data) => {
                        let data = data.copy_to_bytes(data.remaining());
                        self.len += data.len() as u64;
                        if !data.is_empty() {
                            let now = Instant::now();
                            self.arrived =
                                Some(self.arrived.map_or((now, now), |(first, _)| (first, now)));
                            self.frames.push_back(data);
                        }
                    }
                    Err(frame) => {
                        self.trailers = frame.into_trailers().ok();
                        self.ended = true;
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    self.error = Some(e.into());
                    self.ended = true;
                }
                Poll::Ready(None) => self.ended = true,
                Poll::Pending => {
                    // More will come, later: the body is a stream.
                    if self.len >= self.threshold || self.known.is_some() {
                        return Poll::Ready(self.stream());
                    }
                    // Below the threshold, size unknown: wait a little for more.
                    if Instant::now() < self.hold_until {
                        let until = self.hold_until;
                        let timer = self
                            .timer
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
                        if timer.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                    }
                    return Poll::Ready(if self.streaming_type {
                        self.stream()
                    } else {
                        self.identity(SkipReason::BelowThreshold)
                    });
                }
            }
            if self.body.as_ref().is_some_and(|b| b.is_end_stream()) {
                self.ended = true;
            }
            if !self.ended && self.len >= self.threshold.max(ONE_SHOT_MAX) {
                return Poll::Ready(self.stream());
            }
        }
        self.body = None;
        Poll::Ready(if self.error.is_some() {
            // The body failed before the decision; pass what there is, then the error.
            self.identity(SkipReason::BelowThreshold)
        } else if self.len < self.threshold {
            self.identity(SkipReason::BelowThreshold)
        } else {
            self.one_shot()
        })
    }

    fn take_parts(&mut self) -> Parts {
        self.parts.take().expect("ReadAhead resolved once")
    }

    /// Sends the body as it is (held frames first).
    fn identity(&mut self, reason: SkipReason) -> Response<CompressionBody<B>> {
        metrics::skipped(reason);
        let mut parts = self.take_parts();
        if self.ended && self.error.is_none() && !parts.headers.contains_key(CONTENT_LENGTH) {
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(self.len));
        }
        let replay = Replay {
            frames: std::mem::take(&mut self.frames),
            trailers: self.trailers.take(),
            error: self.error.take(),
            body: self.body.take(),
        };
        Response::from_parts(parts, CompressionBody::replay(replay))
    }

    /// Compresses as the body streams.
    fn stream(&mut self) -> Response<CompressionBody<B>> {
        let encoding = self.config.encoding();
        let encoder = match self.config.build(self.known, true) {
            Ok(encoder) => encoder,
            Err(e) => {
                tracing::warn!(error = %e, "compression unavailable, sending uncompressed");
                return self.identity(SkipReason::EncoderError);
            }
        };
        metrics::compressed(encoding);
        let mut parts = self.take_parts();
        set_encoded_headers(&mut parts.headers, encoding.header_value(), None);
        let body = CompressionBody::compress(
            self.body.take(),
            std::mem::take(&mut self.frames),
            encoder,
            encoding,
            self.policy,
            self.arrived,
        );
        Response::from_parts(parts, body)
    }

    /// The whole body is here: compress it at once and send its exact length.
    fn one_shot(&mut self) -> Response<CompressionBody<B>> {
        let encoding = self.config.encoding();
        let compressed = self
            .config
            .build(Some(self.len), false)
            .and_then(|mut encoder| {
                // A first guess at the output size saves most regrowth on text.
                let mut out = Vec::with_capacity((self.len / 4) as usize + 1024);
                if let [frame] = self.frames.as_slices().0 {
                    encoder.compress_all(frame, &mut out)?;
                } else {
                    for frame in &self.frames {
                        encoder.compress(frame, &mut out)?;
                    }
                    encoder.finish(&mut out)?;
                }
                Ok(out)
            });
        let out = match compressed {
            Ok(out) => out,
            Err(e) => {
                tracing::warn!(error = %e, "compression failed, sending uncompressed");
                return self.identity(SkipReason::EncoderError);
            }
        };
        if out.len() as u64 >= self.len {
            // Already dense (random, or compressed without saying so): the original is smaller.
            return self.identity(SkipReason::Incompressible);
        }
        metrics::compressed(encoding);
        metrics::bytes(encoding, self.len, out.len() as u64);
        let mut parts = self.take_parts();
        set_encoded_headers(
            &mut parts.headers,
            encoding.header_value(),
            Some(out.len() as u64),
        );
        self.frames.clear();
        Response::from_parts(
            parts,
            CompressionBody::full(Bytes::from(out), self.trailers.take()),
        )
    }
}
