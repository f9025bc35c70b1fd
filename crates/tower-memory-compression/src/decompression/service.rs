//! [`RequestDecompression`]: the service.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::{RequestDecompressionBody, RequestDecompressionResponseBody};
use super::config::Config;
use super::future::ResponseFuture;
use crate::decoder::Decoder;
use crate::limits::DecodeError;
use crate::{BoxError, Encoding, metrics};

/// Decodes the request bodies of `S`; made by
/// [`RequestDecompressionLayer`](super::RequestDecompressionLayer).
#[derive(Debug, Clone)]
pub struct RequestDecompression<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> RequestDecompression<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        RequestDecompression { inner, config }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestDecompression<S>
where
    S: Service<Request<RequestDecompressionBody<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
{
    type Response = Response<RequestDecompressionResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let codings = match self.codings(request.headers()) {
            Ok(codings) => codings,
            Err(e) => {
                metrics::rejected(&e);
                return ResponseFuture::reject(e, &self.config.accepted);
            }
        };
        if codings.is_empty() {
            let request = request.map(RequestDecompressionBody::plain);
            return ResponseFuture::new(self.inner.call(request), None);
        }
        let decoder = match Decoder::new(&codings, self.config.limits) {
            Ok(decoder) => decoder,
            Err(e) => {
                metrics::rejected(&e);
                return ResponseFuture::reject(e, &self.config.accepted);
            }
        };
        let failure = Arc::new(OnceLock::new());
        let (mut parts, body) = request.into_parts();
        // The handler sees the decoded representation: no coding, length unknown.
        parts.headers.remove(CONTENT_ENCODING);
        parts.headers.remove(CONTENT_LENGTH);
        let body = RequestDecompressionBody::decoding(
            body,
            decoder,
            codings[codings.len() - 1],
            Arc::clone(&failure),
        );
        let future = self.inner.call(Request::from_parts(parts, body));
        ResponseFuture::new(future, Some(failure))
    }
}

impl<S> RequestDecompression<S> {
    /// The codings of the request, in the order they were applied, without `identity`.
    fn codings(&self, headers: &http::HeaderMap) -> Result<Vec<Encoding>, DecodeError> {
        let mut codings = Vec::new();
        for value in headers.get_all(CONTENT_ENCODING) {
            let text = value.to_str().map_err(|_| {
                DecodeError::Unsupported(String::from_utf8_lossy(value.as_bytes()).into_owned())
            })?;
            for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                match Encoding::from_token(token) {
                    Some(Encoding::Identity) => {}
                    Some(e) if self.config.accepted.contains(&e) => codings.push(e),
                    _ => return Err(DecodeError::Unsupported(token.to_owned())),
                }
            }
        }
        if codings.len() > self.config.max_codings {
            return Err(DecodeError::Unsupported(format!(
                "{} stacked codings (at most {})",
                codings.len(),
                self.config.max_codings
            )));
        }
        Ok(codings)
    }
}
