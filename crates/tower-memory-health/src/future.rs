//! The response future of both layers (`health::ResponseFuture` and `shed::ResponseFuture` are
//! this one type: both either pass the request on or answer it themselves).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;

use tower_service::Service;

use crate::body::ResponseBody;
use crate::inner::InnerFuture;

/// A response the layer produces asynchronously (a sample on request, a heap-profile dump).
pub(crate) type BoxResponseFuture = Pin<Box<dyn Future<Output = Response<Bytes>> + Send>>;

pin_project! {
    /// Response future of [`Health`](crate::Health) and [`PressureShed`](crate::PressureShed):
    /// the inner service's (for a request `R` to `S`), or the layer's own answer.
    pub struct ResponseFuture<S, R, B>
    where
        S: Service<R>,
    {
        #[pin]
        kind: Kind<S, R, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, R, B>
    where
        S: Service<R>,
    {
        Inner {
            #[pin]
            future: InnerFuture<S, R>,
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

impl<S: Service<R>, R, B> ResponseFuture<S, R, B> {
    #[inline]
    pub(crate) fn inner(future: InnerFuture<S, R>) -> Self {
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

impl<S, R, B> Future for ResponseFuture<S, R, B>
where
    S: Service<R, Response = Response<B>>,
{
    type Output = Result<Response<ResponseBody<B>>, S::Error>;

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

impl<S: Service<R>, R, B> std::fmt::Debug for ResponseFuture<S, R, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
