//! How a request ended (`Outcome`) and why the layer aborted it (`AbortReason`).

use std::fmt;

/// Why the layer aborted a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AbortReason {
    /// The request held more than `max_request_memory` at a poll boundary.
    Quota,
    /// Memory pressure was critical and the request was among the largest in flight.
    Pressure,
    /// The memory budget stayed over capacity while the request was parked, and it was the
    /// request furthest over its reservation (or it stayed parked too long).
    Overcommit,
}

impl AbortReason {
    /// `"quota"`, `"pressure"` or `"overcommit"`, the `reason` label of
    /// `http_requests_aborted_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            AbortReason::Quota => "quota",
            AbortReason::Pressure => "pressure",
            AbortReason::Overcommit => "overcommit",
        }
    }
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The response body reached its end.
    Completed,
    /// The response body was dropped before its end (typically: the client went away).
    BodyDropped,
    /// The response future was dropped before it produced a response.
    Cancelled,
    /// The service returned an error, or the response body yielded one.
    Failed,
    /// The handler panicked while the layer polled it (a panic-catching layer outside this one
    /// turned it into a response).
    Panicked,
    /// The layer aborted the request.
    Aborted(AbortReason),
    /// The memory governor refused the request before it ran (503): its predicted cost found no
    /// room in the budget within the queue's wait, or the queue was full.
    Rejected,
}

impl Outcome {
    /// A short name: `completed`, `body_dropped`, `cancelled`, `failed`, `panicked`,
    /// `aborted_quota`, `aborted_pressure`, `aborted_overcommit`, `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::BodyDropped => "body_dropped",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed => "failed",
            Outcome::Panicked => "panicked",
            Outcome::Aborted(AbortReason::Quota) => "aborted_quota",
            Outcome::Aborted(AbortReason::Pressure) => "aborted_pressure",
            Outcome::Aborted(AbortReason::Overcommit) => "aborted_overcommit",
            Outcome::Rejected => "rejected",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
