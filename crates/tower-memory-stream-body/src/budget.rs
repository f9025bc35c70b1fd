//! The memory budget buffered bodies draw on: tower-memory-probe's process-wide [`MemoryBudget`], the
//! same one the interceptor's governor admits requests against, so one number bounds both.

use std::time::Duration;

use http::Extensions;
use tower_memory_probe::{BudgetError, MemoryBudget, RequestBudget, Reservation};

use crate::metrics::BUFFERED_BYTES;

/// Where a request's body reservations come from: the request's own handle on the budget (put
/// there by the interceptor, whose accounting then counts the bytes once), or the budget itself.
#[derive(Clone)]
pub(crate) enum Source {
    Request(RequestBudget),
    Budget(MemoryBudget),
}

impl Source {
    /// The layer's budget (`None`: none given), through the request's handle when the handle is
    /// on the same budget (or when the layer was given none).
    pub(crate) fn of(budget: Option<&MemoryBudget>, extensions: &Extensions) -> Source {
        let request = extensions.get::<RequestBudget>();
        match (budget, request) {
            (None, Some(r)) => Source::Request(r.clone()),
            (Some(b), Some(r)) if b.same_as(r.budget()) => Source::Request(r.clone()),
            (Some(b), _) => Source::Budget(b.clone()),
            (None, None) => Source::Budget(MemoryBudget::global()),
        }
    }

    pub(crate) fn total(&self) -> u64 {
        match self {
            Source::Request(r) => r.budget().total(),
            Source::Budget(b) => b.total(),
        }
    }

    pub(crate) fn try_reserve(&self, bytes: u64) -> Result<Held, BudgetError> {
        match self {
            Source::Request(r) => r.try_reserve(bytes),
            Source::Budget(b) => b.try_reserve(bytes),
        }
        .map(Held::new)
    }

    pub(crate) async fn reserve(&self, bytes: u64, wait: Duration) -> Result<Held, BudgetError> {
        match self {
            Source::Request(r) => r.reserve(bytes, wait).await,
            Source::Budget(b) => b.reserve(bytes, wait).await,
        }
        .map(Held::new)
    }
}

/// A body's reservation, reported in the `http_body_buffered_bytes` gauge while held.
pub(crate) struct Held {
    inner: Option<Reservation>,
}

impl Held {
    fn new(inner: Reservation) -> Held {
        metrics::gauge!(BUFFERED_BYTES.get()).increment(inner.bytes() as f64);
        Held { inner: Some(inner) }
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.inner.as_ref().map_or(0, Reservation::bytes)
    }

    /// Takes `other`'s bytes into this reservation (the gauge already counts them).
    pub(crate) fn merge(&mut self, mut other: Held) {
        match (&mut self.inner, other.inner.take()) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }

    pub(crate) fn release(&mut self, bytes: u64) {
        let Some(inner) = &mut self.inner else { return };
        let n = bytes.min(inner.bytes());
        inner.release(n);
        if n > 0 {
            metrics::gauge!(BUFFERED_BYTES.get()).decrement(n as f64);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let n = self.bytes();
        if n > 0 {
            metrics::gauge!(BUFFERED_BYTES.get()).decrement(n as f64);
        }
    }
}
