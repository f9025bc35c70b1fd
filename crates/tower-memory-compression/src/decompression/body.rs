//! The request body the handler reads ([`RequestDecompressionBody`]) and the response body
//! ([`RequestDecompressionResponseBody`]).

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::decoder::{DecodePollError, Decoder};
use crate::limits::DecodeError;
use crate::{BoxError, Encoding, metrics};

pin_project! {
    /// The decoded request body handed to the inner service.
    ///
    /// Its errors are `BoxError`s; a decoding failure is a [`DecodeError`] inside (downcast to
    /// tell a cap from corrupt data).
    pub struct RequestDecompressionBody<B> {
        #[pin]
        inner: B,
        decoder: Option<Box<Decoder>>,
        encoding: Encoding,
        failure: Option<Arc<OnceLock<DecodeError>>>,
        trailers: Option<HeaderMap>,
        reported: (u64, u64),
    }
}

impl<B> RequestDecompressionBody<B> {
    /// `inner` as it is: a body without a coding, typed like a decoded one (so that a service
    /// behind [`RequestDecompression`](super::RequestDecompression) can also be called around it).
    pub fn plain(inner: B) -> Self {
        RequestDecompressionBody {
            inner,
            decoder: None,
            encoding: Encoding::Identity,
            failure: None,
            trailers: None,
            reported: (0, 0),
        }
    }

    pub(crate) fn decoding(
        inner: B,
        decoder: Decoder,
        encoding: Encoding,
        failure: Arc<OnceLock<DecodeError>>,
    ) -> Self {
        RequestDecompressionBody {
            inner,
            decoder: Some(Box::new(decoder)),
            encoding,
            failure: Some(failure),
            trailers: None,
            reported: (0, 0),
        }
    }

    /// Whether the body is being decoded (the request had a `Content-Encoding`).
    pub fn is_decoding(&self) -> bool {
        self.decoder.is_some()
    }
}

impl<B> std::fmt::Debug for RequestDecompressionBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestDecompressionBody")
            .field("decoder", &self.decoder)
            .finish_non_exhaustive()
    }
}

impl<B> Body for RequestDecompressionBody<B>
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
        let this = self.project();
        let mut inner = this.inner;
        let Some(decoder) = this.decoder.as_mut() else {
            return match inner.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(
                    frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))
                ))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        };
        let trailers = &mut *this.trailers;
        let mut source = |cx: &mut Context<'_>| loop {
            return match inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(mut data) => {
                        if !data.has_remaining() {
                            continue;
                        }
                        Poll::Ready(Ok(Some(data.copy_to_bytes(data.remaining()))))
                    }
                    Err(frame) => {
                        *trailers = frame.into_trailers().ok();
                        Poll::Ready(Ok(None))
                    }
                },
                Poll::Ready(Some(Err(e))) => Poll::Ready(Err(e.into())),
                Poll::Ready(None) => Poll::Ready(Ok(None)),
                Poll::Pending => Poll::Pending,
            };
        };
        let result = decoder.poll_decode(cx, &mut source);
        // Report the bytes in step with the decoding (cheap: once per chunk).
        let (input, output) = (decoder.encoded_bytes(), decoder.decoded_bytes());
        let (seen_in, seen_out) = *this.reported;
        if input > seen_in || output > seen_out {
            let label = this.encoding.as_str();
            ::metrics::counter!(metrics::DECOMPRESSION_INPUT_BYTES.get(), "encoding" => label)
                .increment(input - seen_in);
            ::metrics::counter!(metrics::DECOMPRESSION_OUTPUT_BYTES.get(), "encoding" => label)
                .increment(output - seen_out);
            *this.reported = (input, output);
        }
        match result {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            Poll::Ready(Some(Err(DecodePollError::Decode(e)))) => {
                metrics::rejected(&e);
                if let Some(failure) = this.failure.as_ref() {
                    let _ = failure.set(e.clone());
                }
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(Some(Err(DecodePollError::Source(e)))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.decoder {
            None => self.inner.is_end_stream(),
            Some(decoder) => decoder.is_finished() && self.trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.decoder {
            None => self.inner.size_hint(),
            // The decoded size is unknown until the end.
            Some(_) => SizeHint::default(),
        }
    }
}

pin_project! {
    /// The response body of [`RequestDecompression`](super::RequestDecompression): the inner service's, or the
    /// layer's own error message.
    pub struct RequestDecompressionResponseBody<B> {
        #[pin]
        kind: ResponseKind<B>,
    }
}

pin_project! {
    #[project = ResponseProj]
    enum ResponseKind<B> {
        Inner { #[pin] body: B },
        Error { message: Option<Bytes> },
    }
}

impl<B> RequestDecompressionResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        RequestDecompressionResponseBody {
            kind: ResponseKind::Inner { body },
        }
    }

    pub(crate) fn error(message: Bytes) -> Self {
        RequestDecompressionResponseBody {
            kind: ResponseKind::Error {
                message: Some(message),
            },
        }
    }
}

impl<B> std::fmt::Debug for RequestDecompressionResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            ResponseKind::Inner { .. } => f.write_str("RequestDecompressionResponseBody::Inner"),
            ResponseKind::Error { message } => f
                .debug_struct("RequestDecompressionResponseBody::Error")
                .field("message", message)
                .finish(),
        }
    }
}

impl<B> Body for RequestDecompressionResponseBody<B>
where
    B: Body,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            ResponseProj::Inner { body } => body.poll_frame(cx).map(|frame| {
                frame.map(|frame| frame.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining()))))
            }),
            ResponseProj::Error { message } => {
                Poll::Ready(message.take().map(|m| Ok(Frame::data(m))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            ResponseKind::Inner { body } => body.is_end_stream(),
            ResponseKind::Error { message } => message.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            ResponseKind::Inner { body } => body.size_hint(),
            ResponseKind::Error { message } => {
                SizeHint::with_exact(message.as_ref().map_or(0, |m| m.len() as u64))
            }
        }
    }
}
