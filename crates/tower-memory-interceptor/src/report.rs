//! `MemoryReport`, the one record each request leaves, and `Ended`, the borrowed form the layer
//! sends on (a `MemoryReport`, which owns copies, is built only for a callback).

use std::cell::Cell;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Method, StatusCode};

use crate::outcome::Outcome;
use crate::route::Route;

/// What one request allocated, emitted exactly once when it ends.
///
/// The counters cover every poll of the response future and of the response body, their drops,
/// the inner service's `call`, and work charged through
/// [`RequestMemory::instrument`](crate::RequestMemory::instrument) up to the end of the request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MemoryReport {
    /// The request method.
    pub method: Method,
    /// The route label (see [`UNMATCHED_ROUTE`](crate::UNMATCHED_ROUTE)).
    pub route: Route,
    /// The request's path and query (for logs; never a metric label).
    pub path_and_query: PathAndQuery,
    /// The response status, when a response was produced (503 for aborts).
    pub status: Option<StatusCode>,
    /// How the request ended.
    pub outcome: Outcome,
    /// Bytes allocated.
    pub allocated: u64,
    /// Bytes freed.
    pub deallocated: u64,
    /// Bytes of response data handed to the server, counted as released when handed over (the
    /// server frees them outside the request's polls), up to what the request held then.
    pub handed_off: u64,
    /// `allocated - deallocated - handed_off`: what the request still held at its end. Positive
    /// when it left memory behind (caches, leaks) or when memory it allocated was freed elsewhere.
    pub net: i64,
    /// The largest amount held at a poll boundary.
    pub peak_net: i64,
    /// Polls of the response future plus polls of the response body.
    pub polls: u64,
    /// Response body data bytes handed to the server.
    pub body_bytes: u64,
    /// From the call of the service to the end of the request. (Zero only when nothing could
    /// read it: no `on_report` and no `tracing` subscriber for this crate's events at the start
    /// of the request; the clock is then not read.)
    pub duration: Duration,
    /// Whether `allocated` reached the heavy threshold.
    pub heavy: bool,
}

/// A finished request's figures, borrowing what the account holds: a [`MemoryReport`] (which owns
/// copies) is only built when a callback wants one.
pub(crate) struct Ended<'a> {
    pub(crate) method: &'a Method,
    pub(crate) route: &'a Route,
    pub(crate) path_and_query: &'a PathAndQuery,
    pub(crate) status: Option<StatusCode>,
    pub(crate) outcome: Outcome,
    pub(crate) allocated: u64,
    pub(crate) deallocated: u64,
    pub(crate) handed_off: u64,
    pub(crate) net: i64,
    pub(crate) peak_net: i64,
    pub(crate) polls: u64,
    pub(crate) body_bytes: u64,
    /// When the call started; the end is read only when something consumes the duration (an
    /// enabled event, a callback), once.
    pub(crate) start: Option<quanta::Instant>,
    pub(crate) duration: Cell<Option<Duration>>,
    pub(crate) heavy: bool,
    /// The span the figures are recorded on (see `span.rs`).
    pub(crate) span: &'a tracing::Span,
}

impl Ended<'_> {
    pub(crate) fn duration(&self) -> Duration {
        if let Some(d) = self.duration.get() {
            return d;
        }
        let d = self.start.map_or(Duration::ZERO, |start| {
            quanta::Instant::now().saturating_duration_since(start)
        });
        self.duration.set(Some(d));
        d
    }

    pub(crate) fn to_report(&self) -> MemoryReport {
        MemoryReport {
            method: self.method.clone(),
            route: self.route.clone(),
            path_and_query: self.path_and_query.clone(),
            status: self.status,
            outcome: self.outcome,
            allocated: self.allocated,
            deallocated: self.deallocated,
            handed_off: self.handed_off,
            net: self.net,
            peak_net: self.peak_net,
            polls: self.polls,
            body_bytes: self.body_bytes,
            duration: self.duration(),
            heavy: self.heavy,
        }
    }
}
