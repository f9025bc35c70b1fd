//! [`MemoryStackService`]: picks the full or the light path for each request.

use std::task::{Context, Poll};

use bytes::Bytes;

use http::{Request, Response};
use tower_memory_compression::RequestDecompressionBody;
use tower_memory_health::{HealthLayer, PressureShedLayer};
use tower_service::Service;

use super::{FullService, LightService, ResponseFuture, StackBody};
use tower_memory_probe::BoxError;
/// The service [`MemoryStackLayer`](super::MemoryStackLayer) makes around `S`.
///
/// Three of the six layers act only on some requests: the health layer on its own paths,
/// shedding under memory pressure, decompression on a `Content-Encoding`. A request none of them
/// would act on (most requests, most of the time) goes through the other three alone
/// ([`LightService`]): the same answer, without three more futures and bodies around it (each
/// costs a move of the request and of the response and a wrapper per body frame). The rest go
/// through all six ([`FullService`]). Deciding costs a path comparison, one relaxed load and a
/// header lookup.
pub struct MemoryStackService<S> {
    pub(super) full: FullService<S>,
    pub(super) light: LightService<S>,
    pub(super) health: HealthLayer,
    pub(super) shed: PressureShedLayer,
}

impl<S: Clone> Clone for MemoryStackService<S> {
    fn clone(&self) -> Self {
        MemoryStackService {
            full: self.full.clone(),
            light: self.light.clone(),
            health: self.health.clone(),
            shed: self.shed.clone(),
        }
    }
}

impl<S> std::fmt::Debug for MemoryStackService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStackService").finish_non_exhaustive()
    }
}

impl<S> MemoryStackService<S> {
    /// Whether only the light path's layers can act on `req`.
    #[inline]
    fn light<B>(&self, req: &Request<B>) -> bool {
        self.shed.idle()
            && !req.headers().contains_key(http::header::CONTENT_ENCODING)
            && !self.health.serves(req.uri().path())
    }
}

impl<S, ReqBody, FullBody, LightBody, E> Service<Request<ReqBody>> for MemoryStackService<S>
where
    FullService<S>: Service<Request<ReqBody>, Response = Response<FullBody>, Error = E>,
    LightService<S>: Service<
            Request<RequestDecompressionBody<ReqBody>>,
            Response = Response<LightBody>,
            Error = E,
        >,
    FullBody: http_body::Body<Data = Bytes>,
    FullBody::Error: Into<BoxError>,
    LightBody: http_body::Body<Data = Bytes>,
    LightBody::Error: Into<BoxError>,
{
    type Response = Response<StackBody<FullBody, LightBody>>;
    type Error = E;
    type Future = ResponseFuture<
        <FullService<S> as Service<Request<ReqBody>>>::Future,
        <LightService<S> as Service<Request<RequestDecompressionBody<ReqBody>>>>::Future,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Either path may take the next request: both must be ready (as `tower::steer` does).
        let full = self.full.poll_ready(cx)?;
        let light = self.light.poll_ready(cx)?;
        if full.is_ready() && light.is_ready() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    #[inline]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if self.light(&req) {
            // The same request body type as behind the decompression layer: the inner service
            // is called with one type on either path.
            ResponseFuture::Light {
                future: self.light.call(req.map(RequestDecompressionBody::plain)),
            }
        } else {
            ResponseFuture::Full {
                future: self.full.call(req),
            }
        }
    }
}
