//! [`StreamBodyLimit`]: classifies each request body and hands it on.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Request, Response, Version};
use http_body::Body;
use tower_service::Service;

use tower_memory_probe::{BoxError, BudgetError};

use crate::body::{LimitedBody, StreamState};
use crate::budget::Source;
use crate::buffer::{self, Called};
use crate::config::StreamBodyConfig;
use crate::future::{Answer, ResponseFuture};
use crate::mode::BodyMode;
use crate::reject::{Rejection, Shared};
use crate::response::ResponseBody;

/// The service [`StreamBodyLayer`](crate::StreamBodyLayer) wraps around a handler.
///
/// Named `StreamBodyLimit` rather than tower-http's bare `StreamBody`: `http_body_util::StreamBody`
/// is a well-known body type (a body from a `Stream`), imported in the same files as this layer.
#[derive(Debug, Clone)]
pub struct StreamBodyLimit<S> {
    inner: S,
    config: Arc<StreamBodyConfig>,
}

impl<S> StreamBodyLimit<S> {
    pub(crate) fn new(inner: S, config: Arc<StreamBodyConfig>) -> Self {
        Self { inner, config }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for StreamBodyLimit<S>
where
    S: Service<Request<LimitedBody<B>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        let config = &self.config;
        let answer = Answer {
            http1: req.version() <= Version::HTTP_11,
            handler_grace: config.handler_grace,
        };
        let declared = match declared_length(&req) {
            Ok(declared) => declared,
            Err(rejection) => return ResponseFuture::reject(rejection, answer),
        };
        match declared {
            Some(len) if len > config.max_body_size => {
                ResponseFuture::reject(Rejection::too_large(config.max_body_size), answer)
            }
            // Nothing to read (a GET, most often): no budget, no guard, no allocation, and no
            // spool directory (nothing can spill). A body that says it has more (possible only for body types that do not enforce their
            // `Content-Length`, unlike hyper's) is read and checked like any small body.
            Some(0) if req.body().is_end_stream() => {
                let (mut parts, _) = req.into_parts();
                parts.extensions.insert(BodyMode::Buffered { len: 0 });
                let req = Request::from_parts(parts, LimitedBody::buffered(Bytes::new(), None));
                let called = Called {
                    fut: self.inner.call(req),
                    reservation: None,
                    shared: None,
                };
                ResponseFuture::called(called, answer)
            }
            Some(len) if len <= config.buffer_threshold => {
                // Fail at once when the body can never fit; otherwise take the budget now if it
                // is free, and wait for it in the buffering future if not.
                let source = Source::of(config.budget.as_ref(), req.extensions());
                let reservation = match source.try_reserve(len) {
                    Ok(r) => Some(r),
                    Err(e @ BudgetError::LargerThanBudget { .. }) => {
                        return ResponseFuture::reject(
                            Rejection::budget(e, config.retry_after),
                            answer,
                        );
                    }
                    Err(_) => None,
                };
                let (mut parts, body) = req.into_parts();
                self.insert_spool(&mut parts.extensions);
                let service = self.take_ready();
                ResponseFuture::prepare(
                    Box::pin(buffer::buffer_known(
                        service,
                        parts,
                        body,
                        len,
                        reservation,
                        self.config.clone(),
                    )),
                    answer,
                )
            }
            Some(len) => {
                let (mut parts, body) = req.into_parts();
                parts.extensions.insert(BodyMode::Streaming {
                    content_length: Some(len),
                });
                self.insert_spool(&mut parts.extensions);
                let shared = Arc::new(Shared::default());
                let state = StreamState::new(config, Some(len), shared.clone());
                let req = Request::from_parts(parts, LimitedBody::streaming(body, state));
                let called = Called {
                    fut: self.inner.call(req),
                    reservation: None,
                    shared: Some(shared),
                };
                ResponseFuture::called(called, answer)
            }
            None => {
                let (mut parts, body) = req.into_parts();
                self.insert_spool(&mut parts.extensions);
                let service = self.take_ready();
                ResponseFuture::prepare(
                    Box::pin(buffer::buffer_unknown(
                        service,
                        parts,
                        body,
                        self.config.clone(),
                    )),
                    answer,
                )
            }
        }
    }
}

impl<S: Clone> StreamBodyLimit<S> {
    /// The service `poll_ready` was called on, leaving a fresh clone in its place (the usual
    /// tower move for services called later from a future).
    fn take_ready(&mut self) -> S {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }

    fn insert_spool(&self, extensions: &mut http::Extensions) {
        if let Some(spool) = &self.config.spool {
            extensions.insert(spool.clone());
        }
    }
}

/// The body's length when known: its exact size hint (hyper sets it from `Content-Length`), else
/// a `Content-Length` header on a request without `Transfer-Encoding`.
fn declared_length<B: Body>(req: &Request<B>) -> Result<Option<u64>, Rejection> {
    if let Some(exact) = req.body().size_hint().exact() {
        return Ok(Some(exact));
    }
    if req.headers().contains_key(TRANSFER_ENCODING) {
        return Ok(None);
    }
    let mut values = req.headers().get_all(CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let parse = |v: &http::HeaderValue| -> Option<u64> { v.to_str().ok()?.trim().parse().ok() };
    let len = parse(first).ok_or_else(|| Rejection::bad_length("unreadable Content-Length"))?;
    if values.any(|v| parse(v) != Some(len)) {
        return Err(Rejection::bad_length("conflicting Content-Length headers"));
    }
    Ok(Some(len))
}
