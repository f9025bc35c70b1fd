//! What the monitor's reclaim schedule did.

use std::fmt;
use std::time::{Duration, SystemTime};

use memory_probe::{AllocatorKind, ReclaimReport};

/// Why the monitor asked for a reclaim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReclaimReason {
    /// Pressure has just risen to `Critical`.
    EnteredCritical,
    /// `reclaim_interval` passed since the last run.
    Scheduled,
}

impl ReclaimReason {
    /// `"critical"` or `"scheduled"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReclaimReason::EnteredCritical => "critical",
            ReclaimReason::Scheduled => "scheduled",
        }
    }
}

impl fmt::Display for ReclaimReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reclaim run of the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReclaimRecord {
    /// Why it ran.
    pub reason: ReclaimReason,
    /// The allocator asked to release memory.
    pub allocator: AllocatorKind,
    /// Resident bytes released (before minus after, zero if the resident set grew meanwhile).
    pub released_bytes: u64,
    /// Resident bytes just before the run.
    pub resident_before: u64,
    /// Resident bytes just after the run.
    pub resident_after: u64,
    /// How long the allocator call took.
    pub duration: Duration,
    /// When it finished.
    pub finished_at: SystemTime,
}

impl ReclaimRecord {
    pub(crate) fn new(reason: ReclaimReason, report: &ReclaimReport) -> Self {
        Self {
            reason,
            allocator: report.allocator,
            released_bytes: report.released_bytes(),
            resident_before: report.resident_before,
            resident_after: report.resident_after,
            duration: report.duration,
            finished_at: report.finished_at,
        }
    }
}

/// Totals of the monitor's reclaim runs.
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
    /// The latest run.
    pub last: Option<ReclaimRecord>,
}
