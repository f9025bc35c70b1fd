//! What this crate reads from tower-memory-interceptor's per-request views (feature
//! `interceptor`): the ledger of routes and the listing of requests in flight, for `/health`,
//! `/metrics` and the critical-pressure event.
//!
//! Without the feature, `Ledger` and `InFlight` are uninhabited stand-ins: the `Option`s that hold
//! them are always `None`, so the code around them keeps one shape and the per-request parts are
//! simply absent (empty lists, `null`, no per-route gauges).

#[cfg(feature = "interceptor")]
pub(crate) use tower_memory_interceptor::{InFlight, Ledger};

use crate::report::{InFlightReport, RouteReport};

/// Stand-in for the interceptor's `Ledger` without feature `interceptor` (no value exists).
#[cfg(not(feature = "interceptor"))]
#[derive(Debug, Clone)]
pub(crate) enum Ledger {}

/// Stand-in for the interceptor's `InFlight` without feature `interceptor` (no value exists).
#[cfg(not(feature = "interceptor"))]
#[derive(Debug, Clone)]
pub(crate) enum InFlight {}

/// The `top` routes of `ledger` as `/health` shows them.
pub(crate) fn route_reports(ledger: Option<&Ledger>, top: usize) -> Vec<RouteReport> {
    #[cfg(feature = "interceptor")]
    return ledger
        .map(|l| {
            l.top(top)
                .into_iter()
                .map(|r| RouteReport {
                    route: r.route,
                    requests: r.requests,
                    allocated_bytes_total: r.allocated_bytes_total,
                    allocated_bytes_max: r.allocated_bytes_max,
                    retained_bytes: r.retained_bytes,
                    predicted_cost_bytes: r.predicted_cost_bytes,
                    governor: crate::report::RouteGovernorReport {
                        admitted: r.governor.admitted,
                        queued: r.governor.queued,
                        rejected: r.governor.rejected,
                        parked: r.governor.parked,
                        aborted: r.governor.aborted,
                    },
                })
                .collect()
        })
        .unwrap_or_default();
    #[cfg(not(feature = "interceptor"))]
    {
        let _ = (ledger, top);
        Vec::new()
    }
}

/// The `top` largest requests of `in_flight` as `/health` shows them, with the listing's minimum.
pub(crate) fn in_flight_reports(
    in_flight: Option<&InFlight>,
    top: usize,
) -> (Vec<InFlightReport>, Option<u64>) {
    #[cfg(feature = "interceptor")]
    return match in_flight {
        Some(f) => (
            f.largest(top)
                .into_iter()
                .map(|r| InFlightReport {
                    route: r.route.to_string(),
                    method: r.method.to_string(),
                    age_seconds: crate::report::round4(r.age.as_secs_f64()),
                    held_bytes: r.held_bytes,
                    peak_bytes: r.peak_bytes,
                })
                .collect(),
            Some(f.min_bytes()),
        ),
        None => (Vec::new(), None),
    };
    #[cfg(not(feature = "interceptor"))]
    {
        let _ = (in_flight, top);
        (Vec::new(), None)
    }
}

/// The `n` largest requests of `in_flight`, one line for a log event (`"none"` when there are
/// none); `None` without a listing.
pub(crate) fn largest_in_flight(in_flight: Option<&InFlight>, n: usize) -> Option<String> {
    #[cfg(feature = "interceptor")]
    return in_flight.map(|f| {
        let list: Vec<String> = f.largest(n).iter().map(ToString::to_string).collect();
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join("; ")
        }
    });
    #[cfg(not(feature = "interceptor"))]
    {
        let _ = (in_flight, n);
        None
    }
}
