//! The response future of both layers.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;

use crate::body::ResponseBody;

/// A response the layer produces asynchronously (a sample on request, a heap-profile dump).
pub(crate) type BoxResponseFuture = Pin<Box<dyn Future<Output = Response<Bytes>> + Send>>;

pin_project! {
    /// Response future of [`HealthService`](crate::HealthService) and
    /// [`PressureShedService`](crate::PressureShedService).
    #[project = ResponseFutureProj]
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Inner {
            #[pin]
            future: F,
        },
        Ready {
            response: Option<Response<Bytes>>,
            _body: std::marker::PhantomData<fn() -> B>,
        },
        Boxed {
            future: BoxResponseFuture,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    #[inline]
    pub(crate) fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    pub(crate) fn ready(response: Response<Bytes>) -> Self {
        Self {
            kind: Kind::Ready {
                response: Some(response),
                _body: std::marker::PhantomData,
            },
        }
    }

    pub(crate) fn boxed(future: BoxResponseFuture) -> Self {
        Self {
            kind: Kind::Boxed { future },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(ResponseBody::inner)))
            }
            KindProj::Ready { response, .. } => {
                let response = response
                    .take()
                    .expect("ResponseFuture polled after completion");
                Poll::Ready(Ok(response.map(ResponseBody::full)))
            }
            KindProj::Boxed { future } => {
                let response = ready!(future.as_mut().poll(cx));
                Poll::Ready(Ok(response.map(ResponseBody::full)))
            }
        }
    }
}
