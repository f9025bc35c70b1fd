//! What reclaim runs report: who asked ([`ReclaimTrigger`]), one run ([`ReclaimReport`]), the
//! totals ([`ReclaimStats`]) and why a run did not happen ([`ReclaimError`]).

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::AllocatorKind;

/// Metric: histogram of the time reclaim runs spend in the allocator, in seconds (label
/// `trigger`). Recorded through the `metrics` facade at the end of every run.
/// This is the base name: the name emitted carries the [prefix](crate::set_metric_prefix), if
/// one is set.
pub const RECLAIM_DURATION_METRIC: &str = "memory_reclaim_duration_seconds";

/// [`RECLAIM_DURATION_METRIC`] as emitted (resolved once with the prefix).
pub(crate) static RECLAIM_DURATION: crate::MetricName =
    crate::MetricName::new(RECLAIM_DURATION_METRIC);

/// Who asked for a reclaim run. Every run is counted under the trigger that started it (callers
/// that join a run under way share its report and are not counted again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ReclaimTrigger {
    /// A monitor's schedule (`reclaim_interval` passed).
    Scheduled,
    /// Memory pressure has just risen to critical.
    Critical,
    /// Memory pressure has just risen to warning (the aggressive cleanup preset).
    Warning,
    /// A request allocated more than the heavy threshold.
    HeavyRequest,
    /// The program called [`Reclaimer::reclaim`](crate::Reclaimer::reclaim) itself.
    Api,
}

impl ReclaimTrigger {
    /// Every trigger, in the order of the `trigger` label values.
    pub const ALL: [ReclaimTrigger; 5] = [
        ReclaimTrigger::Scheduled,
        ReclaimTrigger::Critical,
        ReclaimTrigger::Warning,
        ReclaimTrigger::HeavyRequest,
        ReclaimTrigger::Api,
    ];

    /// `"scheduled"`, `"critical"`, `"warning"`, `"heavy_request"` or `"api"`: the `trigger`
    /// label of the reclaim metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ReclaimTrigger::Scheduled => "scheduled",
            ReclaimTrigger::Critical => "critical",
            ReclaimTrigger::Warning => "warning",
            ReclaimTrigger::HeavyRequest => "heavy_request",
            ReclaimTrigger::Api => "api",
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ReclaimTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The runs and failures of one trigger, as [`Reclaimer::stats`](crate::Reclaimer::stats) counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TriggerStats {
    /// Completed runs.
    pub runs: u64,
    /// Runs that failed in the allocator.
    pub failures: u64,
    /// Resident bytes released over the runs.
    pub released_bytes: u64,
    /// Time spent in the allocator over the runs.
    pub duration: Duration,
}

/// Everything a [`Reclaimer`](crate::Reclaimer) has done since it was built, whoever asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReclaimStats {
    /// Per trigger, in the order of [`ReclaimTrigger::ALL`].
    pub by_trigger: Vec<(ReclaimTrigger, TriggerStats)>,
    /// The latest completed run.
    pub last: Option<ReclaimReport>,
}

impl ReclaimStats {
    /// The sum over all triggers.
    pub fn total(&self) -> TriggerStats {
        self.by_trigger
            .iter()
            .fold(TriggerStats::default(), |sum, (_, t)| TriggerStats {
                runs: sum.runs + t.runs,
                failures: sum.failures + t.failures,
                released_bytes: sum.released_bytes + t.released_bytes,
                duration: sum.duration + t.duration,
            })
    }

    /// The figures of one trigger.
    pub fn trigger(&self, trigger: ReclaimTrigger) -> TriggerStats {
        self.by_trigger
            .iter()
            .find(|(t, _)| *t == trigger)
            .map(|(_, s)| *s)
            .unwrap_or_default()
    }
}

/// What one reclaim run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReclaimReport {
    /// Who asked for the run.
    pub trigger: ReclaimTrigger,
    /// The allocator that was asked to release memory.
    pub allocator: AllocatorKind,
    /// Process resident bytes just before the run.
    pub resident_before: u64,
    /// Process resident bytes just after the run.
    pub resident_after: u64,
    /// How long the allocator call took.
    pub duration: Duration,
    /// When the run finished.
    pub finished_at: SystemTime,
}

impl ReclaimReport {
    /// Resident bytes released (zero when the resident set grew meanwhile).
    pub fn released_bytes(&self) -> u64 {
        self.resident_before.saturating_sub(self.resident_after)
    }
}

/// Why a reclaim did not run.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReclaimError {
    /// The previous run started less than the minimum interval ago.
    #[error("reclaim rate-limited: next run allowed in {retry_after:?}")]
    RateLimited {
        /// How long until a run is allowed.
        retry_after: Duration,
    },
    /// The heap's allocator has no release call this crate knows (or its feature is off).
    #[error("the {0} allocator has no supported release call")]
    Unsupported(AllocatorKind),
    /// The allocator call failed.
    #[error("reclaim failed: {0}")]
    Failed(String),
    /// No Tokio runtime to run the blocking call on.
    #[error("reclaim needs a Tokio runtime")]
    NoRuntime,
}
