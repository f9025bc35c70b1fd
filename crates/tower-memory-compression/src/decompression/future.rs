//! [`ResponseFuture`]: the inner response, or the decoder's verdict.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONTENT_TYPE};
use http::{HeaderValue, Response};
use pin_project_lite::pin_project;

use super::body::RequestDecompressionResponseBody;
use crate::limits::DecodeError;
use crate::{Encoding, encoding::compiled_list};

pin_project! {
    /// The response future of [`RequestDecompression`](super::RequestDecompression).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        failure: Option<Arc<OnceLock<DecodeError>>>,
        reject: Option<(DecodeError, String)>,
    }
}

impl<F> ResponseFuture<F> {
    #[inline]
    pub(crate) fn new(inner: F, failure: Option<Arc<OnceLock<DecodeError>>>) -> Self {
        ResponseFuture {
            inner: Some(inner),
            failure,
            reject: None,
        }
    }

    pub(crate) fn reject(error: DecodeError, accepted: &[Encoding]) -> Self {
        ResponseFuture {
            inner: None,
            failure: None,
            reject: Some((error, compiled_list(accepted))),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<RequestDecompressionResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            let (error, accepted) = this
                .reject
                .take()
                .expect("ResponseFuture polled after completion");
            return Poll::Ready(Ok(error_response(&error, &accepted)));
        };
        let response = ready!(inner.poll(cx))?;
        this.inner.set(None);
        // The decoder failed while the handler read the body: its answer is replaced by the
        // decoder's verdict (the handler could only have said "bad body" less precisely).
        if let Some(error) = this.failure.take().and_then(|f| f.get().cloned()) {
            return Poll::Ready(Ok(error_response(&error, "")));
        }
        Poll::Ready(Ok(response.map(RequestDecompressionResponseBody::inner)))
    }
}

fn error_response<B>(
    error: &DecodeError,
    accepted: &str,
) -> Response<RequestDecompressionResponseBody<B>> {
    let message = format!("{}: {error}\n", error.status());
    let mut response = Response::new(RequestDecompressionResponseBody::error(Bytes::from(
        message,
    )));
    *response.status_mut() = error.status();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if matches!(error, DecodeError::Unsupported(_)) {
        let list = if accepted.is_empty() {
            "identity"
        } else {
            accepted
        };
        if let Ok(value) = HeaderValue::from_str(list) {
            headers.insert(ACCEPT_ENCODING, value);
        }
    }
    response
}
