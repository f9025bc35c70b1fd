//! What a pressure change tells the outside: the `memory_pressure_changes_total` counter and one
//! log event (on entering critical, with the requests holding the most).

use tower_memory_probe::Pressure;

use super::pressure::Reading;
use crate::metrics::MEMORY_PRESSURE_CHANGES_TOTAL;
use crate::requests::{self, InFlight};

/// Requests the critical-pressure event lists.
const CRITICAL_IN_FLIGHT: usize = 5;

/// Counts and logs the change from `previous` to `pressure` (they differ).
pub(super) fn pressure_changed(
    previous: Pressure,
    pressure: Pressure,
    reading: &Reading,
    in_flight: Option<&InFlight>,
) {
    let Reading {
        usage,
        limit,
        ratio,
    } = *reading;
    metrics::counter!(MEMORY_PRESSURE_CHANGES_TOTAL.get(), "to" => pressure.as_str()).increment(1);
    if pressure == Pressure::Critical {
        // One event with the requests holding the most: the cause of an OOM kill is in
        // the logs even if the process dies next.
        let largest = requests::largest_in_flight(in_flight, CRITICAL_IN_FLIGHT);
        tracing::warn!(
            target: "tower_memory_health",
            from = %previous, to = %pressure,
            usage_bytes = usage, limit_bytes = limit.map(|l| l.bytes),
            usage_ratio = ratio,
            largest_in_flight = largest,
            "memory pressure rose"
        );
    } else if pressure > previous {
        tracing::warn!(
            target: "tower_memory_health",
            from = %previous, to = %pressure,
            usage_bytes = usage, limit_bytes = limit.map(|l| l.bytes),
            usage_ratio = ratio,
            "memory pressure rose"
        );
    } else {
        tracing::info!(
            target: "tower_memory_health",
            from = %previous, to = %pressure, usage_ratio = ratio,
            "memory pressure fell"
        );
    }
}
