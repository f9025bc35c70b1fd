//! What the monitor's reclaimer did, as `/health` and `/metrics` show it.

use std::time::Duration;

use tower_memory_probe::{ReclaimReport, ReclaimStats, ReclaimTrigger, TriggerStats};

/// Totals of every reclaim run of the monitor's [`Reclaimer`](tower_memory_probe::Reclaimer), whoever
/// asked for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReclaimSummary {
    /// Completed runs.
    pub runs: u64,
    /// Runs that failed in the allocator.
    pub failures: u64,
    /// Resident bytes released over all runs.
    pub released_bytes: u64,
    /// Time spent in the allocator over all runs.
    pub total_duration: Duration,
    /// The same figures per trigger, in the order of [`ReclaimTrigger::ALL`].
    pub by_trigger: Vec<(ReclaimTrigger, TriggerStats)>,
    /// The latest run.
    pub last: Option<ReclaimReport>,
}

impl From<ReclaimStats> for ReclaimSummary {
    fn from(stats: ReclaimStats) -> Self {
        let total = stats.total();
        ReclaimSummary {
            runs: total.runs,
            failures: total.failures,
            released_bytes: total.released_bytes,
            total_duration: total.duration,
            by_trigger: stats.by_trigger,
            last: stats.last,
        }
    }
}
