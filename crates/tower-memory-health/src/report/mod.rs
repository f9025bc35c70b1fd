//! The JSON document of `GET /health`.
//!
//! The types here are the document's schema (each field documented); `build.rs` fills them in.

mod build;

#[cfg(feature = "interceptor")]
pub(crate) use build::round4;

use serde::Serialize;

/// `GET /health`: usage against the limit, with the figures it rests on.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HealthReport {
    /// `"healthy"`, `"warning"` or `"critical"`.
    pub status: &'static str,
    /// When the sample this report shows was taken (RFC 3339, UTC).
    pub sampled_at: String,
    /// How old that sample was when the report was made, in seconds.
    pub sample_age_seconds: f64,
    /// The limit usage is measured against.
    pub limit_bytes: Option<u64>,
    /// Where the limit came from: `"configured"` (`MEMORY_LIMIT_BYTES`), `"cgroup_max"`,
    /// `"cgroup_high"` or `"physical"`.
    pub limit_source: Option<&'static str>,
    /// `MEMORY_LIMIT_BYTES` when set (a configured limit above the cgroup's is clamped to it:
    /// then `limit_source` is the cgroup's).
    pub configured_limit_bytes: Option<u64>,
    /// The larger of process RSS and cgroup working set.
    pub usage_bytes: Option<u64>,
    /// `usage_bytes / limit_bytes`.
    pub usage_ratio: Option<f64>,
    /// The thresholds, as fractions of the limit.
    pub thresholds: ThresholdsReport,
    /// The process as the kernel accounts it.
    pub process: ProcessReport,
    /// The allocator as it accounts itself.
    pub allocator: AllocatorReport,
    /// The container, or `null` outside a memory cgroup.
    pub cgroup: Option<CgroupReport>,
    /// The growth trend.
    pub trend: TrendReport,
    /// The monitor's reclaim runs.
    pub reclaim: ReclaimTotalsReport,
    /// The memory governor's budget and queue, `null` without a governor.
    pub budget: Option<BudgetReport>,
    /// The kernel memory notifications the monitor samples on, besides its timer.
    pub kernel_events: Vec<String>,
    /// The routes that allocate the most, from the interceptor's ledger.
    pub routes: Vec<RouteReport>,
    /// The requests in flight holding the most memory now, largest first (those holding at least
    /// `in_flight_min_bytes`).
    pub in_flight: Vec<InFlightReport>,
    /// Requests join `in_flight` once they hold this many bytes; `null` without a listing.
    pub in_flight_min_bytes: Option<u64>,
}

/// One entry of `in_flight` of [`HealthReport`]: a request still running.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InFlightReport {
    /// The route (matched path).
    pub route: String,
    /// The method.
    pub method: String,
    /// How long it has been running.
    pub age_seconds: f64,
    /// Bytes it holds now.
    pub held_bytes: u64,
    /// The most it has held so far.
    pub peak_bytes: u64,
}

/// `budget` of [`HealthReport`]: the process-wide memory budget of the governor.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BudgetReport {
    /// How the capacity is set: `"auto"` (warning share of the limit minus memory held outside
    /// requests), `"bytes"` or `"ratio"` (`MEMORY_REQUEST_BUDGET`).
    pub mode: &'static str,
    /// What requests may hold at once.
    pub capacity_bytes: u64,
    /// What they hold now: reservations plus growth beyond them, buffered bodies included.
    pub charged_bytes: u64,
    /// The part of `charged_bytes` reserved at admission ahead of use.
    pub reserved_bytes: u64,
    /// `capacity - charged` (0 when over).
    pub available_bytes: u64,
    /// `charged / capacity`.
    pub usage_ratio: Option<f64>,
    /// The admission queue.
    pub queue: QueueReport,
    /// Requests parked now, waiting for memory to free.
    pub parked: usize,
    /// Decisions since start.
    pub admitted_total: u64,
    /// Admitted after waiting in the queue.
    pub admitted_after_wait_total: u64,
    /// Refused with 503.
    pub rejected_total: u64,
    /// Times a request was parked.
    pub parked_total: u64,
}

/// `budget.queue` of [`HealthReport`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueReport {
    /// Reservations waiting now.
    pub length: usize,
    /// The queue's bound.
    pub max: usize,
}

/// `thresholds` of [`HealthReport`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ThresholdsReport {
    /// Warning threshold.
    pub warning: f64,
    /// Critical threshold.
    pub critical: f64,
}

/// `process` of [`HealthReport`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProcessReport {
    /// Resident set (`VmRSS`).
    pub rss_bytes: Option<u64>,
    /// Peak resident set (`VmHWM`).
    pub peak_rss_bytes: Option<u64>,
    /// Virtual size (`VmSize`).
    pub virtual_bytes: Option<u64>,
    /// Resident memory outside the allocator: `rss_bytes - allocator.resident_bytes` (code,
    /// thread stacks, memory C libraries map themselves).
    pub non_allocator_resident_bytes: Option<u64>,
}

/// `allocator` of [`HealthReport`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AllocatorReport {
    /// `"jemalloc"`, `"glibc"`, `"mimalloc"` or `"unknown"`.
    pub backend: String,
    /// Bytes in live allocations.
    pub allocated_bytes: Option<u64>,
    /// Bytes in active pages.
    pub active_bytes: Option<u64>,
    /// Bytes in resident pages the allocator maps.
    pub resident_bytes: Option<u64>,
    /// Bytes in mapped extents.
    pub mapped_bytes: Option<u64>,
    /// Bytes of retained virtual memory.
    pub retained_bytes: Option<u64>,
    /// Bytes of allocator metadata.
    pub metadata_bytes: Option<u64>,
    /// `active / allocated - 1`.
    pub fragmentation_ratio: Option<f64>,
}

/// `cgroup` of [`HealthReport`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CgroupReport {
    /// `"v1"` or `"v2"`.
    pub version: &'static str,
    /// Memory charged to the cgroup, page cache included.
    pub usage_bytes: u64,
    /// `usage - inactive_file`.
    pub working_set_bytes: u64,
    /// The hard limit, `null` when unlimited.
    pub limit_bytes: Option<u64>,
    /// `memory.high`, `null` when unset.
    pub high_bytes: Option<u64>,
    /// `working_set / min(high, limit)`, `null` when unlimited.
    pub usage_ratio: Option<f64>,
    /// OOM kills in the cgroup.
    pub oom_kills: Option<u64>,
}

/// `trend` of [`HealthReport`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TrendReport {
    /// Least-squares growth of usage, `null` until three samples are in.
    pub bytes_per_hour: Option<f64>,
    /// The time the samples in the window cover.
    pub window_seconds: f64,
}

/// `reclaim` of [`HealthReport`]: every run of the reclaimer, whoever asked for it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReclaimTotalsReport {
    /// Completed runs.
    pub runs: u64,
    /// Runs that failed in the allocator.
    pub failures: u64,
    /// Resident bytes released over all runs.
    pub released_bytes: u64,
    /// Completed runs per trigger: `scheduled`, `critical`, `warning`, `heavy_request`, `api`.
    pub by_trigger: std::collections::BTreeMap<&'static str, u64>,
    /// The latest run, `null` before the first.
    pub last: Option<LastReclaimReport>,
}

/// `reclaim.last` of [`HealthReport`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LastReclaimReport {
    /// Who asked for it: `"scheduled"`, `"critical"`, `"warning"`, `"heavy_request"` or `"api"`.
    pub trigger: &'static str,
    /// Resident bytes released.
    pub released_bytes: u64,
    /// Time in the allocator call.
    pub duration_seconds: f64,
    /// When it finished, in seconds since the Unix epoch.
    pub finished_at_unix_seconds: f64,
}

/// One entry of `routes` of [`HealthReport`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RouteReport {
    /// The route (matched path).
    pub route: String,
    /// Requests recorded.
    pub requests: u64,
    /// Bytes allocated by all of them.
    pub allocated_bytes_total: u64,
    /// Bytes allocated by the hungriest one.
    pub allocated_bytes_max: u64,
    /// Bytes its requests still held when they ended, summed (net retained: a steady rise is a
    /// route that keeps memory, a cache or a leak).
    pub retained_bytes: i64,
    /// What the governor reserves for the route's next request (its learned p95 peak), `null`
    /// before the governor has seen it or without a governor.
    pub predicted_cost_bytes: Option<u64>,
    /// The governor's decisions for the route's requests that reserved memory.
    pub governor: RouteGovernorReport,
}

/// `routes[].governor` of [`HealthReport`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RouteGovernorReport {
    /// Admitted without waiting.
    pub admitted: u64,
    /// Admitted after waiting in the queue.
    pub queued: u64,
    /// Refused (503).
    pub rejected: u64,
    /// Parked at a poll boundary.
    pub parked: u64,
    /// Aborted for being furthest over their reservation.
    pub aborted: u64,
}
