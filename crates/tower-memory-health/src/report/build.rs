//! Building the `/health` document from a snapshot, the monitor's reclaim totals, the ledger and
//! the requests in flight.

use std::time::{SystemTime, UNIX_EPOCH};

use tower_memory_probe::{CgroupVersion, Pressure};

use super::*;
use crate::budget::BudgetCapacity;
use crate::monitor::{MemoryMonitor, MemorySnapshot};
use crate::requests::{self, InFlight, Ledger};

/// The status word of a pressure level.
fn status_word(pressure: Pressure) -> &'static str {
    match pressure {
        Pressure::Normal => "healthy",
        Pressure::Warning => "warning",
        Pressure::Critical => "critical",
    }
}

impl HealthReport {
    /// The report for `snapshot` (the monitor's reclaim totals are read now), with the `top`
    /// routes of `ledger` and the `top` largest requests of `in_flight` (feature `interceptor`;
    /// without it [`HealthLayer`](crate::HealthLayer) builds the report with empty lists).
    #[cfg(feature = "interceptor")]
    pub fn new(
        monitor: &MemoryMonitor,
        snapshot: &MemorySnapshot,
        ledger: Option<&Ledger>,
        in_flight: Option<&InFlight>,
        top: usize,
    ) -> Self {
        Self::build(monitor, snapshot, ledger, in_flight, top)
    }

    /// `new`'s report, built with or without the interceptor (without it, `ledger` and
    /// `in_flight` are the stand-ins of `crate::requests`, always `None`).
    pub(crate) fn build(
        monitor: &MemoryMonitor,
        snapshot: &MemorySnapshot,
        ledger: Option<&Ledger>,
        in_flight: Option<&InFlight>,
        top: usize,
    ) -> Self {
        let (in_flight, in_flight_min_bytes) = requests::in_flight_reports(in_flight, top);
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
            routes: requests::route_reports(ledger, top),
            in_flight,
            in_flight_min_bytes,
        }
    }
}

/// `2026-12-01T10:04:05.123Z`: RFC 3339 in UTC with milliseconds (the civil date from the day
/// count, Howard Hinnant's algorithm; no time zone database needed).
fn rfc3339(t: SystemTime) -> String {
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
pub(crate) fn round4(v: f64) -> f64 {
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
