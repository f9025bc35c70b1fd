//! Why the layer aborted a request: the text of the 503 body, and the error a streaming body ends
//! with.

use crate::outcome::AbortReason;

/// Why the layer stopped a request. It is the message of the 503 response when the handler had
/// not answered yet, and the error the response body ends with when it was already streaming
/// (find it with `downcast_ref::<AbortError>()` on the body's boxed error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AbortError {
    /// The request held more than its quota at a poll boundary.
    #[error(
        "request aborted: it held {held} bytes, over the per-request memory quota of {limit} bytes"
    )]
    Quota {
        /// Bytes the request held when it was stopped.
        held: u64,
        /// The quota (`max_request_memory`).
        limit: u64,
    },
    /// Memory pressure was critical and this request held the most memory among those in flight.
    #[error(
        "request aborted: memory pressure is critical and it held {held} bytes, the most among the requests in flight"
    )]
    Pressure {
        /// Bytes the request held when it was stopped.
        held: u64,
    },
    /// The memory budget stayed over capacity and this request was the furthest over its
    /// reservation (or stayed parked too long).
    #[error(
        "request aborted: the memory budget is over capacity and it held {held} bytes, {over} bytes over its reservation"
    )]
    Overcommit {
        /// Bytes the request held when it was stopped.
        held: u64,
        /// Bytes it held beyond what it reserved at admission.
        over: u64,
    },
}

impl AbortError {
    pub(crate) fn new(reason: AbortReason, held: i64, limit: Option<u64>, over: u64) -> AbortError {
        let held = held.max(0) as u64;
        match reason {
            AbortReason::Quota => AbortError::Quota {
                held,
                limit: limit.unwrap_or(0),
            },
            AbortReason::Pressure => AbortError::Pressure { held },
            AbortReason::Overcommit => AbortError::Overcommit { held, over },
        }
    }

    /// The reason, as in the report.
    pub fn reason(&self) -> AbortReason {
        match self {
            AbortError::Quota { .. } => AbortReason::Quota,
            AbortError::Pressure { .. } => AbortReason::Pressure,
            AbortError::Overcommit { .. } => AbortReason::Overcommit,
        }
    }
}
