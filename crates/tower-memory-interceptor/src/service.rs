//! `MemoryInterceptor`: the service the layer makes.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use tower_memory_probe::RequestBudget;

use crate::BoxError;
use crate::account::{Account, Measure, Tracker};
use crate::body::MeteredBody;
use crate::config::Config;
use crate::future::ResponseFuture;
use crate::governor::Admit;
use crate::memory::RequestMemory;
use crate::route::{Route, UNMATCHED_ROUTE};
use crate::shared::Shared;

/// Measures the memory each request allocates; made by
/// [`MemoryInterceptorLayer`](crate::MemoryInterceptorLayer).
///
/// Generic over the request and response bodies like the tower-http services: the response body
/// becomes a [`MeteredBody`] with the same data type and a boxed error.
#[derive(Clone)]
pub struct MemoryInterceptor<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> MemoryInterceptor<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        MemoryInterceptor { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for MemoryInterceptor<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryInterceptor")
            .field("inner", &self.inner)
            .field("config", &self.shared)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for MemoryInterceptor<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: Body,
    ResBody::Data: From<Bytes>,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let route = route_of(&shared.config, &req);
        let governor = shared.governor.as_deref();
        let cost = governor.map(|g| g.entry(&route));
        // Only a request that can carry a body needs a handle for the body layer's reservations.
        let request_budget = governor
            .filter(|_| has_body(&req))
            .map(|g| RequestBudget::new(g.budget.clone()));
        if let Some(pressure) = &shared.pressure {
            pressure.ensure_watcher();
        }
        let account = Arc::new(Account::new(
            shared,
            &req,
            route,
            cost,
            request_budget.clone(),
        ));
        let mut tracker = Tracker::new(Arc::clone(&account));
        if shared.register_at == 0 {
            tracker.register();
        }
        let admitted = match governor.map(|g| g.admit(&account)) {
            None => None,
            Some(Admit::Now(bytes)) => {
                tracker.reserve(bytes);
                None
            }
            Some(Admit::Wait(waiting)) => Some(waiting),
        };
        let extensions = req.extensions_mut();
        if let Some(request_budget) = request_budget {
            extensions.insert(request_budget);
        }
        if let Some(waiting) = admitted {
            extensions.insert(RequestMemory::from_account(account));
            // Called later, once admitted: this service (readied by `poll_ready`) goes with the
            // request, a clone stays.
            let clone = self.inner.clone();
            let service = std::mem::replace(&mut self.inner, clone);
            return ResponseFuture::waiting(service, req, waiting, tracker);
        }
        // The call is charged too: routers build the handler's future here. So is the extension,
        // which the handler frees with the request.
        let measure = Measure::start(&mut tracker);
        req.extensions_mut()
            .insert(RequestMemory::from_account(account));
        let future = self.inner.call(req);
        let grew = measure.end();
        tracker.after_poll(grew, false);
        ResponseFuture::running(future, tracker)
    }
}

/// Whether the request may carry a body (a length above zero, or chunked). Methods that carry
/// none by convention are not looked into: should one carry a body after all, its buffered bytes
/// are counted twice, on the safe side.
#[inline]
fn has_body<B>(req: &Request<B>) -> bool {
    use http::Method;
    if matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE | Method::TRACE
    ) {
        return false;
    }
    let headers = req.headers();
    headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// The route label: axum's `MatchedPath`, else the classifier's answer, else
/// [`UNMATCHED_ROUTE`]. Never the raw path.
fn route_of<B>(config: &Config, req: &Request<B>) -> Route {
    #[cfg(feature = "axum")]
    if let Some(matched) = req.extensions().get::<axum::extract::MatchedPath>() {
        return crate::route::matched_route(matched.as_str());
    }
    if let Some(classify) = &config.route_fn
        && let Some(route) = classify(req.method(), req.uri())
    {
        return Route::from_static(route);
    }
    Route::from_static(UNMATCHED_ROUTE)
}
