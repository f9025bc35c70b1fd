//! `RequestMemory`: the handler's view of its request's account, and `Instrumented`, which charges
//! spawned work to it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use crate::account::{Account, ExtraMeasure, in_progress};
use crate::outcome::AbortReason;

/// The memory account of the request being served, found in the request extensions.
///
/// Figures are live: they include everything measured up to the last poll boundary, and, when read
/// from inside the request's own poll, the part of the poll in progress.
///
/// ```
/// use tower_memory_interceptor::RequestMemory;
///
/// async fn handler(req: http::Request<()>) -> String {
///     let Some(memory) = req.extensions().get::<RequestMemory>().cloned() else {
///         return "no accounting here".into();
///     };
///     // Work on another task is charged to this request when instrumented.
///     let job = memory.instrument(async { vec![0u8; 1 << 20].len() });
///     let _ = tokio::spawn(job).await;
///     format!("{} bytes allocated so far", memory.allocated())
/// }
/// ```
#[derive(Clone)]
pub struct RequestMemory {
    account: Arc<Account>,
}

impl RequestMemory {
    pub(crate) fn from_account(account: Arc<Account>) -> Self {
        RequestMemory { account }
    }

    /// Bytes allocated so far.
    pub fn allocated(&self) -> u64 {
        let base = self.account.allocated();
        match in_progress(&self.account) {
            Some(delta) => base.wrapping_add(delta.allocated),
            None => base,
        }
    }

    /// Bytes freed so far.
    pub fn deallocated(&self) -> u64 {
        let base = self.account.deallocated();
        match in_progress(&self.account) {
            Some(delta) => base.wrapping_add(delta.deallocated),
            None => base,
        }
    }

    /// Bytes held now: allocated, minus freed, minus response data already handed to the server.
    /// This is the figure the quota applies to.
    pub fn net(&self) -> i64 {
        let held = self.account.held();
        match in_progress(&self.account) {
            Some(delta) => held.wrapping_add(delta.net()),
            None => held,
        }
    }

    /// The per-request quota, if the layer has one.
    pub fn quota(&self) -> Option<u64> {
        self.account.shared.config.max_request_memory
    }

    /// Whether the layer has decided to abort the request (the handler's future is dropped at its
    /// next poll boundary; long synchronous work can check this to stop early).
    pub fn abort_pending(&self) -> Option<AbortReason> {
        self.account.state().abort_reason()
    }

    /// Names the request's route for its report, metrics and ledger, when the layer could not tell
    /// it (plain hyper or tonic services, or a router inside the layer). Only the first call
    /// counts; returns whether this one did. Static, so the number of labels stays bounded.
    pub fn set_route(&self, route: &'static str) -> bool {
        self.account.set_route(route)
    }

    /// Charges everything `future` allocates and frees, on whatever thread polls it, to this
    /// request: wrap futures before `tokio::spawn`. Polled inline within the request's own poll,
    /// it adds nothing twice.
    ///
    /// The quota applies to the sum: when instrumented work pushes the request over it, the
    /// request's handler is dropped and answered with 503. A spawned task keeps running on its
    /// own (Tokio detaches it); abort it through its `JoinHandle` if it must stop too.
    pub fn instrument<F: Future>(&self, future: F) -> Instrumented<F> {
        Instrumented {
            state: State::Running { future },
            account: Arc::clone(&self.account),
        }
    }

    /// Charges what `f` allocates and frees to this request: wrap closures given to
    /// `tokio::task::spawn_blocking` or `std::thread::spawn`.
    pub fn instrument_fn<F, R>(&self, f: F) -> impl FnOnce() -> R + Send + 'static
    where
        F: FnOnce() -> R + Send + 'static,
    {
        let account = Arc::clone(&self.account);
        move || {
            let _measure = ExtraMeasure::start(&account);
            f()
        }
    }
}

impl fmt::Debug for RequestMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestMemory")
            .field("route", &self.account.route())
            .field("allocated", &self.allocated())
            .field("deallocated", &self.deallocated())
            .field("net", &self.net())
            .finish()
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running { #[pin] future: F },
        Done,
    }
}

pin_project! {
    /// A future whose allocations are charged to a request; see [`RequestMemory::instrument`].
    pub struct Instrumented<F> {
        #[pin]
        state: State<F>,
        account: Arc<Account>,
    }

    impl<F> PinnedDrop for Instrumented<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            let _measure = ExtraMeasure::start(this.account);
            this.state.set(State::Done);
        }
    }
}

impl<F> fmt::Debug for Instrumented<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instrumented")
            .field("route", &self.account.route())
            .finish()
    }
}

impl<F: Future> Future for Instrumented<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        let _measure = ExtraMeasure::start(this.account);
        let StateProj::Running { future } = this.state.as_mut().project() else {
            panic!("Instrumented polled after completion");
        };
        let poll = future.poll(cx);
        if poll.is_ready() {
            this.state.set(State::Done);
        }
        poll
    }
}

#[cfg(feature = "axum")]
mod extract {
    use axum::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum::response::{IntoResponse, Response};
    use http::StatusCode;
    use http::request::Parts;

    use super::RequestMemory;

    /// Rejection of the `RequestMemory` extractor: the layer is not installed around this route.
    #[derive(Debug, Clone, Copy, thiserror::Error)]
    #[error("RequestMemory is missing: MemoryInterceptorLayer is not installed around this route")]
    pub struct MissingRequestMemory;

    impl IntoResponse for MissingRequestMemory {
        fn into_response(self) -> Response {
            (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for RequestMemory {
        type Rejection = MissingRequestMemory;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            parts
                .extensions
                .get::<RequestMemory>()
                .cloned()
                .ok_or(MissingRequestMemory)
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for RequestMemory {
        type Rejection = std::convert::Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<RequestMemory>().cloned())
        }
    }
}

#[cfg(feature = "axum")]
pub use extract::MissingRequestMemory;
