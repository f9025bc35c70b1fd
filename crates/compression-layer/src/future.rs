//! [`ResponseFuture`]: decides, per response, whether and how to compress.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, VARY,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::Body;
use memory_probe::Pressure;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::body::{CompressionBody, Replay};
use crate::codec::EncoderConfig;
use crate::layer::Settings;
use crate::negotiate::Negotiated;
use crate::skip::{STREAMING_TYPES, essence, is_grpc};
use crate::{BoxError, FlushPolicy, SkipCompression, SkipReason, encoding::compiled_list, metrics};

/// A body of unknown size that keeps delivering frames at once is collected up to this much
/// before compression starts streaming (then compressed in one shot, with an exact length, if
/// it ended by then).
const ONE_SHOT_MAX: u64 = 256 * 1024;

/// What the service knew when it called the inner service.
pub(crate) struct RequestInfo {
    pub(crate) settings: Arc<Settings>,
    pub(crate) negotiated: Negotiated,
    pub(crate) head: bool,
}

pin_project! {
    /// The response future of [`Compression`](crate::Compression).
    pub struct ResponseFuture<F, B> {
        #[pin]
        inner: Option<F>,
        info: Option<RequestInfo>,
        hold: Option<Box<Hold<B>>>,
    }
}

impl<F, B> ResponseFuture<F, B> {
    #[inline]
    pub(crate) fn new(inner: F, info: RequestInfo) -> Self {
        ResponseFuture {
            inner: Some(inner),
            info: Some(info),
            hold: None,
        }
    }

    /// Answers 406 without a response from the inner service.
    pub(crate) fn not_acceptable(info: RequestInfo) -> Self {
        ResponseFuture {
            inner: None,
            info: Some(info),
            hold: None,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<CompressionBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some(hold) = this.hold.as_mut() {
            return hold.poll(cx).map(Ok);
        }
        let Some(fut) = this.inner.as_mut().as_pin_mut() else {
            let info = this
                .info
                .take()
                .expect("ResponseFuture polled after completion");
            return Poll::Ready(Ok(not_acceptable(&info.settings)));
        };
        let response = ready!(fut.poll(cx))?;
        this.inner.set(None);
        let info = this
            .info
            .take()
            .expect("ResponseFuture polled after completion");
        match decide(info, response) {
            Decision::Respond(response) => Poll::Ready(Ok(response)),
            Decision::Hold(hold) => {
                let hold = this.hold.insert(hold);
                hold.poll(cx).map(Ok)
            }
        }
    }
}

fn not_acceptable<B>(settings: &Settings) -> Response<CompressionBody<B>> {
    ::metrics::counter!(metrics::NOT_ACCEPTABLE).increment(1);
    let message = format!(
        "406 Not Acceptable: the client refuses identity and every coding offered ({})\n",
        compiled_list(&settings.offered)
    );
    let mut response = Response::new(CompressionBody::full(Bytes::from(message), None));
    *response.status_mut() = StatusCode::NOT_ACCEPTABLE;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    add_vary(headers);
    response
}

// Lives only across one call; boxing the response would cost an allocation per response.
#[allow(clippy::large_enum_variant)]
enum Decision<B> {
    Respond(Response<CompressionBody<B>>),
    Hold(Box<Hold<B>>),
}

fn decide<B>(info: RequestInfo, response: Response<B>) -> Decision<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let (parts, body) = response.into_parts();
    let settings = &info.settings;
    let skip = |reason: SkipReason, mut parts: http::response::Parts, body: B, vary: bool| {
        metrics::skipped(reason);
        if vary {
            add_vary(&mut parts.headers);
        }
        Decision::Respond(Response::from_parts(
            parts,
            CompressionBody::passthrough(body),
        ))
    };
    if !settings.enabled || parts.extensions.get::<SkipCompression>().is_some() {
        return skip(SkipReason::Disabled, parts, body, false);
    }
    if info.head {
        return skip(SkipReason::Head, parts, body, false);
    }
    let status = parts.status;
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return skip(SkipReason::Status, parts, body, false);
    }
    // First of the rest because it is the cheapest and, for small API answers, the common case:
    // a body known to be under the threshold is never compressed, whatever the client accepts,
    // so it needs no `Vary` and no look at its headers.
    let known = body.size_hint().exact();
    if body.is_end_stream() || known.is_some_and(|n| n < settings.threshold) {
        return skip(SkipReason::BelowThreshold, parts, body, false);
    }
    let headers = &parts.headers;
    if headers
        .get(CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return skip(SkipReason::AlreadyEncoded, parts, body, false);
    }
    if headers.contains_key(CONTENT_RANGE) {
        return skip(SkipReason::ContentRange, parts, body, false);
    }
    if has_no_transform(headers) {
        return skip(SkipReason::NoTransform, parts, body, false);
    }
    let media = essence(
        headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    );
    if is_grpc(media) {
        return skip(SkipReason::Grpc, parts, body, false);
    }
    if settings.skip.skips_essence(media) {
        return skip(SkipReason::ContentType, parts, body, false);
    }
    let streaming_type = STREAMING_TYPES
        .iter()
        .any(|t| media.eq_ignore_ascii_case(t));
    let Negotiated::Encode(encoding) = info.negotiated else {
        return skip(SkipReason::NotAccepted, parts, body, true);
    };
    let pressure = settings.pressure();
    if pressure == Pressure::Critical {
        return skip(SkipReason::Pressure, parts, body, true);
    }
    let Some(config) = settings.encoder_config(encoding, pressure) else {
        return skip(SkipReason::NotAccepted, parts, body, true);
    };
    let policy = parts
        .extensions
        .get::<FlushPolicy>()
        .copied()
        .unwrap_or(settings.flush);
    Decision::Hold(Box::new(Hold {
        parts: Some(parts),
        body: Some(Box::pin(body)),
        frames: VecDeque::new(),
        len: 0,
        trailers: None,
        error: None,
        ended: false,
        known,
        config,
        policy,
        streaming_type,
        threshold: settings.threshold,
        hold_until: Instant::now() + settings.hold,
        timer: None,
        arrived: None,
    }))
}

/// A response whose body is being read until the decision can be made.
pub(crate) struct Hold<B> {
    parts: Option<http::response::Parts>,
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

impl<B> Hold<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Response<CompressionBody<B>>> {
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

    fn take_parts(&mut self) -> http::response::Parts {
        self.parts.take().expect("Hold resolved once")
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

fn set_encoded_headers(headers: &mut HeaderMap, encoding: HeaderValue, length: Option<u64>) {
    headers.insert(CONTENT_ENCODING, encoding);
    match length {
        Some(n) => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
        None => {
            headers.remove(CONTENT_LENGTH);
        }
    }
    // Byte ranges of the encoded form are not what the client would ask for.
    headers.remove(ACCEPT_RANGES);
    add_vary(headers);
    weaken_etag(headers);
}

/// Adds `Accept-Encoding` to `Vary` unless it (or `*`) is there already.
pub(crate) fn add_vary(headers: &mut HeaderMap) {
    let present = headers.get_all(VARY).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .map(str::trim)
                .any(|t| t == "*" || t.eq_ignore_ascii_case("accept-encoding"))
        })
    });
    if !present {
        headers.append(VARY, HeaderValue::from_static("accept-encoding"));
    }
}

/// A strong ETag names exact bytes; the encoded bytes differ, so the tag becomes weak.
fn weaken_etag(headers: &mut HeaderMap) {
    let Some(etag) = headers.get(ETAG) else {
        return;
    };
    let bytes = etag.as_bytes();
    if bytes.starts_with(b"\"") {
        let mut weak = Vec::with_capacity(bytes.len() + 2);
        weak.extend_from_slice(b"W/");
        weak.extend_from_slice(bytes);
        if let Ok(value) = HeaderValue::from_bytes(&weak) {
            headers.insert(ETAG, value);
        }
    }
}

fn has_no_transform(headers: &HeaderMap) -> bool {
    headers.get_all(CACHE_CONTROL).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|d| {
                d.split('=')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .eq_ignore_ascii_case("no-transform")
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vary_is_merged() {
        let mut h = HeaderMap::new();
        add_vary(&mut h);
        add_vary(&mut h);
        assert_eq!(h.get_all(VARY).iter().count(), 1);
        let mut h = HeaderMap::new();
        h.insert(VARY, HeaderValue::from_static("Origin, Accept-Encoding"));
        add_vary(&mut h);
        assert_eq!(h.get_all(VARY).iter().count(), 1);
        let mut h = HeaderMap::new();
        h.insert(VARY, HeaderValue::from_static("origin"));
        add_vary(&mut h);
        let all: Vec<_> = h.get_all(VARY).iter().collect();
        assert_eq!(all, ["origin", "accept-encoding"]);
        let mut h = HeaderMap::new();
        h.insert(VARY, HeaderValue::from_static("*"));
        add_vary(&mut h);
        assert_eq!(h.get_all(VARY).iter().count(), 1);
    }

    #[test]
    fn etags() {
        let mut h = HeaderMap::new();
        h.insert(ETAG, HeaderValue::from_static("\"abc\""));
        weaken_etag(&mut h);
        assert_eq!(h[ETAG], "W/\"abc\"");
        weaken_etag(&mut h);
        assert_eq!(h[ETAG], "W/\"abc\"");
    }

    #[test]
    fn no_transform() {
        let mut h = HeaderMap::new();
        h.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, No-Transform"),
        );
        assert!(has_no_transform(&h));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=3"));
        assert!(!has_no_transform(&h));
    }
}
