//! [`Compression`]: the service.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::body::CompressionBody;
use super::config::Settings;
use super::decision::RequestInfo;
use super::future::ResponseFuture;
use crate::BoxError;
use crate::negotiation::{AcceptEncoding, Negotiated};

/// Compresses the responses of `S`; made by [`CompressionLayer`](crate::CompressionLayer).
#[derive(Clone)]
pub struct Compression<S> {
    inner: S,
    settings: Arc<Settings>,
}

impl<S> Compression<S> {
    pub(crate) fn new(inner: S, settings: Arc<Settings>) -> Self {
        Compression { inner, settings }
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

impl<S: std::fmt::Debug> std::fmt::Debug for Compression<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compression")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Compression<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<CompressionBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let settings = Arc::clone(&self.settings);
        let negotiated = if settings.enabled {
            AcceptEncoding::from_headers(request.headers()).negotiate(&settings.offered)
        } else {
            Negotiated::Identity
        };
        let info = RequestInfo {
            head: request.method() == Method::HEAD,
            negotiated,
            settings,
        };
        if negotiated == Negotiated::NotAcceptable {
            return ResponseFuture::not_acceptable(info);
        }
        ResponseFuture::new(self.inner.call(request), info)
    }
}
