//! The JSON document of `GET /health`.

use std::time::{SystemTime, UNIX_EPOCH};

use memory_interceptor_layer::{InFlight, Ledger};
use memory_probe::{CgroupVersion, Pressure};
use serde::Serialize;

use crate::budget::BudgetCapacity;
use crate::monitor::{MemoryMonitor, MemorySnapshot};

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

/// The status word of a pressure level.
pub(crate) fn status_word(pressure: Pressure) -> &'static str {
    match pressure {
        Pressure::Normal => "healthy",
        Pressure::Warning => "warning",
        Pressure::Critical => "critical",
    }
}

impl HealthReport {
    /// The report for `snapshot` (the monitor's reclaim totals are read now), with the `top`
    /// routes of `ledger` and the `top` largest requests of `in_flight`.
    pub fn new(
        monitor: &MemoryMonitor,
        snapshot: &MemorySnapshot,
        ledger: Option<&Ledger>,
        in_flight: Option<&InFlight>,
        top: usize,
    ) -> Self {
        let thresholds = monitor.thresholds();
        let reclaim = monitor.reclaim_summary();
        let stats = &snapshot.allocator;
        HealthReport {
            status: status_word(snapshot.pressure),
            sampled_at: rfc3339(snapshot.wall_time),
            sample_age_seconds: round4(
                SystemTime::now()
                    .duration_since(snapshot.wall_time)
                    .unwrap_or_default()
                    .as_secs_f64(),
            ),
            limit_bytes: snapshot.limit.map(|l| l.bytes),
            limit_source: snapshot.limit.map(|l| l.source.as_str()),
            configured_limit_bytes: monitor.configured_limit(),
            usage_bytes: snapshot.usage_bytes,
            usage_ratio: snapshot.usage_ratio.map(round4),
            thresholds: ThresholdsReport {
                warning: thresholds.warning(),
                critical: thresholds.critical(),
            },
            process: ProcessReport {
                rss_bytes: snapshot.process.map(|p| p.rss_bytes),
                peak_rss_bytes: snapshot.process.map(|p| p.peak_rss_bytes),
                virtual_bytes: snapshot.process.map(|p| p.virtual_bytes),
                non_allocator_resident_bytes: snapshot.non_allocator_resident_bytes(),
            },
            allocator: AllocatorReport {
                backend: snapshot.allocator_kind.to_string(),
                allocated_bytes: stats.allocated_bytes,
                active_bytes: stats.active_bytes,
                resident_bytes: stats.resident_bytes,
                mapped_bytes: stats.mapped_bytes,
                retained_bytes: stats.retained_bytes,
                metadata_bytes: stats.metadata_bytes,
                fragmentation_ratio: stats.fragmentation_ratio().map(round4),
            },
            cgroup: snapshot.cgroup.as_ref().map(|c| CgroupReport {
                version: match c.version {
                    CgroupVersion::V1 => "v1",
                    CgroupVersion::V2 => "v2",
                },
                usage_bytes: c.usage_bytes,
                working_set_bytes: c.working_set_bytes,
                limit_bytes: c.limit_bytes,
                high_bytes: c.high_bytes,
                usage_ratio: c
                    .effective_limit_bytes()
                    .filter(|&l| l > 0)
                    .map(|l| round4(c.working_set_bytes as f64 / l as f64)),
                oom_kills: c.oom_kills,
            }),
            trend: TrendReport {
                bytes_per_hour: snapshot.trend.bytes_per_hour.map(f64::round),
                window_seconds: round4(snapshot.trend.span.as_secs_f64()),
            },
            reclaim: ReclaimTotalsReport {
                runs: reclaim.runs,
                failures: reclaim.failures,
                released_bytes: reclaim.released_bytes,
                by_trigger: reclaim
                    .by_trigger
                    .iter()
                    .map(|(t, s)| (t.as_str(), s.runs))
                    .collect(),
                last: reclaim.last.map(|r| LastReclaimReport {
                    trigger: r.trigger.as_str(),
                    released_bytes: r.released_bytes(),
                    duration_seconds: r.duration.as_secs_f64(),
                    finished_at_unix_seconds: r
                        .finished_at
                        .duration_since(UNIX_EPOCH)
                        .map(|d| round4(d.as_secs_f64()))
                        .unwrap_or(0.0),
                }),
            },
            kernel_events: monitor.kernel_event_sources(),
            budget: monitor.budget().map(|b| {
                let stats = b.stats();
                let capacity = b.capacity();
                let charged = b.in_use();
                BudgetReport {
                    mode: match monitor.budget_capacity() {
                        Some(BudgetCapacity::Bytes(_)) => "bytes",
                        Some(BudgetCapacity::RatioOfLimit(_)) => "ratio",
                        _ => "auto",
                    },
                    capacity_bytes: capacity,
                    charged_bytes: charged,
                    reserved_bytes: b.reserved(),
                    available_bytes: b.available(),
                    usage_ratio: (capacity > 0).then(|| round4(charged as f64 / capacity as f64)),
                    queue: QueueReport {
                        length: b.queue_len(),
                        max: b.max_queue(),
                    },
                    parked: b.parked_len(),
                    admitted_total: stats.admitted,
                    admitted_after_wait_total: stats.admitted_after_wait,
                    rejected_total: stats.rejected,
                    parked_total: stats.parked,
                }
            }),
            routes: ledger
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
                            governor: RouteGovernorReport {
                                admitted: r.governor.admitted,
                                queued: r.governor.queued,
                                rejected: r.governor.rejected,
                                parked: r.governor.parked,
                                aborted: r.governor.aborted,
                            },
                        })
                        .collect()
                })
                .unwrap_or_default(),
            in_flight: in_flight
                .map(|f| {
                    f.largest(top)
                        .into_iter()
                        .map(|r| InFlightReport {
                            route: r.route.to_string(),
                            method: r.method.to_string(),
                            age_seconds: round4(r.age.as_secs_f64()),
                            held_bytes: r.held_bytes,
                            peak_bytes: r.peak_bytes,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            in_flight_min_bytes: in_flight.map(InFlight::min_bytes),
        }
    }
}

/// `2026-12-01T10:04:05.123Z`: RFC 3339 in UTC with milliseconds (the civil date from the day
/// count, Howard Hinnant's algorithm; no time zone database needed).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Four decimals are plenty for a ratio and keep the JSON readable.
fn round4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::rfc3339;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        // `date -u -d @951782400.5` (a leap day) and `@4102444799`.
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(951_782_400_500)),
            "2000-02-29T00:00:00.500Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(4_102_444_799)),
            "2099-12-31T23:59:59.000Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_796_123_045)),
            "2026-12-01T11:04:05.000Z"
        );
    }
}
