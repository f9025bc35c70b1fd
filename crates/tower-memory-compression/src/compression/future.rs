//! [`ResponseFuture`]: the inner service's response, then the skip decision (`decision.rs`)
//! and, for a response that may be compressed, the read-ahead (`read_ahead.rs`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::response::Parts;
use http::{HeaderValue, Response, StatusCode};
use http_body::Body;
use pin_project_lite::pin_project;

use super::body::CompressionBody;
use super::config::Settings;
use super::decision::{RequestInfo, Verdict, decide};
use super::headers::add_vary;
use super::read_ahead::ReadAhead;
use super::skip::SkipReason;
use crate::{BoxError, encoding::compiled_list, metrics};

pin_project! {
    /// The response future of [`Compression`](super::Compression).
    pub struct ResponseFuture<F, B> {
        #[pin]
        inner: Option<F>,
        info: Option<RequestInfo>,
        read_ahead: Option<Box<ReadAhead<B>>>,
    }
}

impl<F, B> ResponseFuture<F, B> {
    #[inline]
    pub(crate) fn new(inner: F, info: RequestInfo) -> Self {
        ResponseFuture {
            inner: Some(inner),
            info: Some(info),
            read_ahead: None,
        }
    }

    /// Answers 406 without a response from the inner service.
    pub(crate) fn not_acceptable(info: RequestInfo) -> Self {
        ResponseFuture {
            inner: None,
            info: Some(info),
            read_ahead: None,
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
        if let Some(read_ahead) = this.read_ahead.as_mut() {
            return read_ahead.poll(cx).map(Ok);
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
        let (parts, body) = response.into_parts();
        match decide(&info, &parts, &body) {
            Verdict::Skip { reason, vary } => {
                Poll::Ready(Ok(passthrough(reason, vary, parts, body)))
            }
            Verdict::ReadAhead(plan) => {
                let read_ahead = this.read_ahead.insert(Box::new(ReadAhead::new(
                    parts,
                    body,
                    plan,
                    &info.settings,
                )));
                read_ahead.poll(cx).map(Ok)
            }
        }
    }
}

fn not_acceptable<B>(settings: &Settings) -> Response<CompressionBody<B>> {
    ::metrics::counter!(metrics::NOT_ACCEPTABLE.get()).increment(1);
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

/// Sends the response as it is.
fn passthrough<B>(
    reason: SkipReason,
    vary: bool,
    mut parts: Parts,
    body: B,
) -> Response<CompressionBody<B>> {
    metrics::skipped(reason);
    if vary {
        add_vary(&mut parts.headers);
    }
    Response::from_parts(parts, CompressionBody::passthrough(body))
}
