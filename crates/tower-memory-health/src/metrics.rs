//! Every metric this crate emits: its name (spelled here once) and its description.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use tower_memory_probe::MetricName;

pub(crate) static PROCESS_RESIDENT_MEMORY_BYTES: MetricName =
    MetricName::new("process_resident_memory_bytes");
pub(crate) static PROCESS_VIRTUAL_MEMORY_BYTES: MetricName =
    MetricName::new("process_virtual_memory_bytes");
pub(crate) static MEMORY_PROCESS_PEAK_RESIDENT_BYTES: MetricName =
    MetricName::new("memory_process_peak_resident_bytes");
pub(crate) static MEMORY_NON_ALLOCATOR_RESIDENT_BYTES: MetricName =
    MetricName::new("memory_non_allocator_resident_bytes");
pub(crate) static MEMORY_USAGE_BYTES: MetricName = MetricName::new("memory_usage_bytes");
pub(crate) static MEMORY_LIMIT_BYTES: MetricName = MetricName::new("memory_limit_bytes");
pub(crate) static MEMORY_USAGE_RATIO: MetricName = MetricName::new("memory_usage_ratio");
pub(crate) static MEMORY_PRESSURE_LEVEL: MetricName = MetricName::new("memory_pressure_level");
pub(crate) static MEMORY_WARNING_THRESHOLD_RATIO: MetricName =
    MetricName::new("memory_warning_threshold_ratio");
pub(crate) static MEMORY_CRITICAL_THRESHOLD_RATIO: MetricName =
    MetricName::new("memory_critical_threshold_ratio");
pub(crate) static MEMORY_ALLOCATOR_ALLOCATED_BYTES: MetricName =
    MetricName::new("memory_allocator_allocated_bytes");
pub(crate) static MEMORY_ALLOCATOR_ACTIVE_BYTES: MetricName =
    MetricName::new("memory_allocator_active_bytes");
pub(crate) static MEMORY_ALLOCATOR_RESIDENT_BYTES: MetricName =
    MetricName::new("memory_allocator_resident_bytes");
pub(crate) static MEMORY_ALLOCATOR_MAPPED_BYTES: MetricName =
    MetricName::new("memory_allocator_mapped_bytes");
pub(crate) static MEMORY_ALLOCATOR_RETAINED_BYTES: MetricName =
    MetricName::new("memory_allocator_retained_bytes");
pub(crate) static MEMORY_ALLOCATOR_METADATA_BYTES: MetricName =
    MetricName::new("memory_allocator_metadata_bytes");
pub(crate) static MEMORY_ALLOCATOR_FRAGMENTATION_RATIO: MetricName =
    MetricName::new("memory_allocator_fragmentation_ratio");
pub(crate) static MEMORY_ALLOCATOR_INFO: MetricName = MetricName::new("memory_allocator_info");
pub(crate) static MEMORY_CGROUP_USAGE_BYTES: MetricName =
    MetricName::new("memory_cgroup_usage_bytes");
pub(crate) static MEMORY_CGROUP_WORKING_SET_BYTES: MetricName =
    MetricName::new("memory_cgroup_working_set_bytes");
pub(crate) static MEMORY_CGROUP_LIMIT_BYTES: MetricName =
    MetricName::new("memory_cgroup_limit_bytes");
pub(crate) static MEMORY_CGROUP_HIGH_BYTES: MetricName =
    MetricName::new("memory_cgroup_high_bytes");
pub(crate) static MEMORY_CGROUP_OOM_KILLS_TOTAL: MetricName =
    MetricName::new("memory_cgroup_oom_kills_total");
pub(crate) static MEMORY_GROWTH_RATE_BYTES_PER_SECOND: MetricName =
    MetricName::new("memory_growth_rate_bytes_per_second");
pub(crate) static MEMORY_GROWTH_WINDOW_SECONDS: MetricName =
    MetricName::new("memory_growth_window_seconds");
pub(crate) static MEMORY_LEAK_SUSPECTED: MetricName = MetricName::new("memory_leak_suspected");
pub(crate) static MEMORY_RECLAIM_RUNS_TOTAL: MetricName =
    MetricName::new("memory_reclaim_runs_total");
pub(crate) static MEMORY_RECLAIM_FAILURES_TOTAL: MetricName =
    MetricName::new("memory_reclaim_failures_total");
pub(crate) static MEMORY_RECLAIM_RELEASED_BYTES_TOTAL: MetricName =
    MetricName::new("memory_reclaim_released_bytes_total");
pub(crate) static MEMORY_RECLAIM_LAST_DURATION_SECONDS: MetricName =
    MetricName::new("memory_reclaim_last_duration_seconds");
pub(crate) static MEMORY_RECLAIM_LAST_RELEASED_BYTES: MetricName =
    MetricName::new("memory_reclaim_last_released_bytes");
pub(crate) static MEMORY_RECLAIM_LAST_TIMESTAMP_SECONDS: MetricName =
    MetricName::new("memory_reclaim_last_timestamp_seconds");
pub(crate) static MEMORY_MONITOR_SAMPLES_TOTAL: MetricName =
    MetricName::new("memory_monitor_samples_total");
pub(crate) static MEMORY_MONITOR_SAMPLE_ERRORS_TOTAL: MetricName =
    MetricName::new("memory_monitor_sample_errors_total");
pub(crate) static MEMORY_MONITOR_LAST_SAMPLE_TIMESTAMP_SECONDS: MetricName =
    MetricName::new("memory_monitor_last_sample_timestamp_seconds");
pub(crate) static MEMORY_MONITOR_LIVE: MetricName = MetricName::new("memory_monitor_live");
pub(crate) static MEMORY_PRESSURE_CHANGES_TOTAL: MetricName =
    MetricName::new("memory_pressure_changes_total");
pub(crate) static MEMORY_BUDGET_CAPACITY_BYTES: MetricName =
    MetricName::new("memory_budget_capacity_bytes");
pub(crate) static MEMORY_BUDGET_CHARGED_BYTES: MetricName =
    MetricName::new("memory_budget_charged_bytes");
pub(crate) static MEMORY_BUDGET_RESERVED_BYTES: MetricName =
    MetricName::new("memory_budget_reserved_bytes");
pub(crate) static MEMORY_BUDGET_QUEUE_LENGTH: MetricName = MetricName::new(BUDGET_QUEUE);
pub(crate) static MEMORY_BUDGET_PARKED_REQUESTS: MetricName =
    MetricName::new("memory_budget_parked_requests");
pub(crate) static HTTP_IN_FLIGHT_HELD_BYTES: MetricName =
    MetricName::new("http_in_flight_held_bytes");
pub(crate) static HTTP_IN_FLIGHT_REQUESTS: MetricName = MetricName::new("http_in_flight_requests");
pub(crate) static HTTP_ROUTE_RETAINED_BYTES: MetricName =
    MetricName::new("http_route_retained_bytes");
pub(crate) static MEMORY_SHED_REQUESTS_TOTAL: MetricName =
    MetricName::new("memory_shed_requests_total");

/// The name of the admission queue's length gauge, the autoscaling signal (deploy configuration
/// names it, e.g. a Prometheus adapter rule).
pub const BUDGET_QUEUE: &str = "memory_budget_queue_length";

/// Registers the help text and unit of every metric this crate emits with the installed recorder
/// (descriptions sent before a recorder is installed are lost).
/// [`PrometheusMetrics::install`](crate::PrometheusMetrics::install) (feature `prometheus`)
/// calls it; call it yourself after installing another recorder. Calling it again is harmless.
///
/// The gauges and the monitor's counters are set when `/metrics` is rendered, from the latest
/// sample; `memory_pressure_changes_total` and `memory_shed_requests_total` count as things
/// happen. The reclaim duration histogram is recorded by `tower-memory-probe`'s reclaimer and the two
/// governor metrics by `tower-memory-interceptor`; they are described here because `/metrics`
/// shows them with the monitor's.
///
/// The table lists the base names. With a prefix
/// ([`tower_memory_probe::set_metric_prefix`], set before anything of the workspace is built),
/// every name of the workspace is emitted as `{prefix}_{name}`, the `process_*` gauges included,
/// and the application's own metrics keep theirs. The two `process_*` gauges can be left out
/// ([`MemoryMonitorBuilder::process_metrics`](crate::MemoryMonitorBuilder::process_metrics))
/// where `metrics-process` already reports them.
///
/// | name | type | labels | meaning |
/// |---|---|---|---|
/// | `process_resident_memory_bytes` | gauge |  | Resident memory size in bytes. |
/// | `process_virtual_memory_bytes` | gauge |  | Virtual memory size in bytes. |
/// | `memory_process_peak_resident_bytes` | gauge |  | Peak resident memory size since start, in bytes (VmHWM). |
/// | `memory_non_allocator_resident_bytes` | gauge |  | Resident memory the allocator does not hold: process RSS minus the allocator's resident bytes (code, stacks, memory mapped outside the allocator). |
/// | `memory_usage_bytes` | gauge |  | Memory usage the pressure level is computed from: the larger of process RSS and cgroup working set. |
/// | `memory_limit_bytes` | gauge |  | Memory limit usage is measured against: configured, else the cgroup limit, else physical memory. |
/// | `memory_usage_ratio` | gauge |  | memory_usage_bytes / memory_limit_bytes. |
/// | `memory_pressure_level` | gauge |  | Memory pressure: 0 normal, 1 warning, 2 critical. |
/// | `memory_warning_threshold_ratio` | gauge |  | Usage ratio at which pressure becomes warning. |
/// | `memory_critical_threshold_ratio` | gauge |  | Usage ratio at which pressure becomes critical. |
/// | `memory_allocator_allocated_bytes` | gauge |  | Bytes in live allocations, as the allocator counts them. |
/// | `memory_allocator_active_bytes` | gauge |  | Bytes in the allocator's active pages. |
/// | `memory_allocator_resident_bytes` | gauge |  | Bytes in physically resident pages the allocator maps. |
/// | `memory_allocator_mapped_bytes` | gauge |  | Bytes in extents the allocator has mapped. |
/// | `memory_allocator_retained_bytes` | gauge |  | Bytes of virtual memory the allocator retains without using. |
/// | `memory_allocator_metadata_bytes` | gauge |  | Bytes the allocator spends on its own metadata. |
/// | `memory_allocator_fragmentation_ratio` | gauge |  | Allocator active / allocated - 1. |
/// | `memory_allocator_info` | gauge | `allocator`, `profile` | The allocator serving the heap and its profile (value 1 for the current one). |
/// | `memory_cgroup_usage_bytes` | gauge |  | Memory charged to the container's cgroup, page cache included. |
/// | `memory_cgroup_working_set_bytes` | gauge |  | Cgroup usage minus inactive file pages (what the kubelet evicts on). |
/// | `memory_cgroup_limit_bytes` | gauge |  | The cgroup's hard memory limit (absent when unlimited). |
/// | `memory_cgroup_high_bytes` | gauge |  | The cgroup's memory.high throttling limit (absent when unset). |
/// | `memory_cgroup_oom_kills_total` | counter |  | OOM kills in the container's cgroup. |
/// | `memory_growth_rate_bytes_per_second` | gauge |  | Least-squares growth rate of memory usage over the trend window. |
/// | `memory_growth_window_seconds` | gauge |  | Time covered by the samples the growth rate is fitted to. |
/// | `memory_leak_suspected` | gauge |  | 1 while the growth rate has stayed above the leak threshold. |
/// | `memory_reclaim_runs_total` | counter | `trigger` | Reclaim runs, by trigger (scheduled, critical, warning, heavy_request, api). |
/// | `memory_reclaim_failures_total` | counter | `trigger` | Reclaim runs that failed in the allocator, by trigger. |
/// | `memory_reclaim_released_bytes_total` | counter | `trigger` | Resident bytes released by reclaim runs, by trigger. |
/// | `memory_reclaim_duration_seconds` | histogram | `trigger` | Time reclaim runs spent in the allocator (on a blocking thread, never on a request), by trigger. |
/// | `memory_reclaim_last_duration_seconds` | gauge |  | Duration of the latest reclaim run. |
/// | `memory_reclaim_last_released_bytes` | gauge |  | Resident bytes released by the latest reclaim run. |
/// | `memory_reclaim_last_timestamp_seconds` | gauge |  | Unix time the latest reclaim run finished. |
/// | `memory_monitor_samples_total` | counter |  | Memory samples taken. |
/// | `memory_monitor_sample_errors_total` | counter |  | Memory samples that failed. |
/// | `memory_monitor_last_sample_timestamp_seconds` | gauge |  | Unix time of the latest memory sample. |
/// | `memory_monitor_live` | gauge |  | 1 while the monitor task samples on schedule, 0 when it has stalled. |
/// | `memory_pressure_changes_total` | counter | `to` | Changes of the memory pressure level, by the level entered. |
/// | `memory_budget_capacity_bytes` | gauge |  | Capacity of the memory governor's budget: what requests may hold at once. |
/// | `memory_budget_charged_bytes` | gauge |  | Bytes charged to the memory budget: reservations plus growth beyond them. |
/// | `memory_budget_reserved_bytes` | gauge |  | Bytes of the memory budget reserved at admission ahead of use. |
/// | `memory_budget_queue_length` | gauge |  | Requests waiting in the memory budget's admission queue. |
/// | `memory_budget_parked_requests` | gauge |  | Requests parked until memory frees. |
/// | `http_governor_requests_total` | counter | `route`, `decision` | Memory governor decisions for requests that reserved memory, by route and decision (admitted, queued, rejected, parked, aborted). |
/// | `http_governor_admission_wait_seconds` | histogram | `route` | Time requests waited in the memory governor's admission queue, by route. |
/// | `http_in_flight_held_bytes` | gauge | `route` | Bytes the requests in flight hold now, by route (requests holding at least the listing minimum). |
/// | `http_in_flight_requests` | gauge | `route` | Requests in flight holding at least the listing minimum, by route. |
/// | `http_route_retained_bytes` | gauge | `route` | Bytes requests still held when they ended, summed since start, by route (net retained). |
/// | `memory_shed_requests_total` | counter | `reason` | Requests answered 503 by PressureShedLayer, by reason. |
pub fn describe_metrics() {
    // Named in other crates, described here because `/metrics` shows them with the monitor's.
    static RECLAIM_DURATION: MetricName =
        MetricName::new(tower_memory_probe::RECLAIM_DURATION_METRIC);
    #[cfg(feature = "interceptor")]
    static GOVERNOR: MetricName = MetricName::new(tower_memory_interceptor::GOVERNOR_METRIC);
    #[cfg(feature = "interceptor")]
    static ADMISSION_WAIT: MetricName =
        MetricName::new(tower_memory_interceptor::ADMISSION_WAIT_METRIC);
    describe_gauge!(
        PROCESS_RESIDENT_MEMORY_BYTES.get(),
        Unit::Bytes,
        "Resident memory size in bytes."
    );
    describe_gauge!(
        PROCESS_VIRTUAL_MEMORY_BYTES.get(),
        Unit::Bytes,
        "Virtual memory size in bytes."
    );
    describe_gauge!(
        MEMORY_PROCESS_PEAK_RESIDENT_BYTES.get(),
        Unit::Bytes,
        "Peak resident memory size since start, in bytes (VmHWM)."
    );
    describe_gauge!(
        MEMORY_NON_ALLOCATOR_RESIDENT_BYTES.get(),
        Unit::Bytes,
        "Resident memory the allocator does not hold: process RSS minus the allocator's resident bytes (code, stacks, memory mapped outside the allocator)."
    );
    describe_gauge!(
        MEMORY_USAGE_BYTES.get(),
        Unit::Bytes,
        "Memory usage the pressure level is computed from: the larger of process RSS and cgroup working set."
    );
    describe_gauge!(
        MEMORY_LIMIT_BYTES.get(),
        Unit::Bytes,
        "Memory limit usage is measured against: configured, else the cgroup limit, else physical memory."
    );
    describe_gauge!(
        MEMORY_USAGE_RATIO.get(),
        Unit::Count,
        "memory_usage_bytes / memory_limit_bytes."
    );
    describe_gauge!(
        MEMORY_PRESSURE_LEVEL.get(),
        Unit::Count,
        "Memory pressure: 0 normal, 1 warning, 2 critical."
    );
    describe_gauge!(
        MEMORY_WARNING_THRESHOLD_RATIO.get(),
        Unit::Count,
        "Usage ratio at which pressure becomes warning."
    );
    describe_gauge!(
        MEMORY_CRITICAL_THRESHOLD_RATIO.get(),
        Unit::Count,
        "Usage ratio at which pressure becomes critical."
    );
    describe_gauge!(
        MEMORY_ALLOCATOR_ALLOCATED_BYTES.get(),
        Unit::Bytes,
        "Bytes in live allocations, as the allocator counts them."
    );
    describe_gauge!(
        MEMORY_ALLOCATOR_ACTIVE_BYTES.get(),
        Unit::Bytes,
        "Bytes in the allocator's active pages."
    );
    describe_gauge!(
        MEMORY_ALLOCATOR_RESIDENT_BYTES.get(),
        Unit::Bytes,
        "Bytes in physically resident pages the allocator maps."
    );
    describe_gauge!(
        MEMORY_ALLOCATOR_MAPPED_BYTES.get(),
        Unit::Bytes,
        "Bytes in extents the allocator has mapped."
    );
    describe_gauge!(
        MEMORY_ALLOCATOR_RETAINED_BYTES.get(),
        Unit::Bytes,
        "Bytes of virtual memory the allocator retains without using."
    );
    describe_gauge!(
        MEMORY_ALLOCATOR_METADATA_BYTES.get(),
        Unit::Bytes,
        "Bytes the allocator spends on its own metadata."
    );
    describe_gauge!(
        MEMORY_ALLOCATOR_FRAGMENTATION_RATIO.get(),
        Unit::Count,
        "Allocator active / allocated - 1."
    );
    describe_gauge!(
        MEMORY_ALLOCATOR_INFO.get(),
        Unit::Count,
        "The allocator serving the heap and its profile (value 1 for the current one)."
    );
    describe_gauge!(
        MEMORY_CGROUP_USAGE_BYTES.get(),
        Unit::Bytes,
        "Memory charged to the container's cgroup, page cache included."
    );
    describe_gauge!(
        MEMORY_CGROUP_WORKING_SET_BYTES.get(),
        Unit::Bytes,
        "Cgroup usage minus inactive file pages (what the kubelet evicts on)."
    );
    describe_gauge!(
        MEMORY_CGROUP_LIMIT_BYTES.get(),
        Unit::Bytes,
        "The cgroup's hard memory limit (absent when unlimited)."
    );
    describe_gauge!(
        MEMORY_CGROUP_HIGH_BYTES.get(),
        Unit::Bytes,
        "The cgroup's memory.high throttling limit (absent when unset)."
    );
    describe_counter!(
        MEMORY_CGROUP_OOM_KILLS_TOTAL.get(),
        Unit::Count,
        "OOM kills in the container's cgroup."
    );
    describe_gauge!(
        MEMORY_GROWTH_RATE_BYTES_PER_SECOND.get(),
        Unit::Bytes,
        "Least-squares growth rate of memory usage over the trend window."
    );
    describe_gauge!(
        MEMORY_GROWTH_WINDOW_SECONDS.get(),
        Unit::Seconds,
        "Time covered by the samples the growth rate is fitted to."
    );
    describe_gauge!(
        MEMORY_LEAK_SUSPECTED.get(),
        Unit::Count,
        "1 while the growth rate has stayed above the leak threshold."
    );
    describe_counter!(
        MEMORY_RECLAIM_RUNS_TOTAL.get(),
        Unit::Count,
        "Reclaim runs, by trigger (scheduled, critical, warning, heavy_request, api)."
    );
    describe_counter!(
        MEMORY_RECLAIM_FAILURES_TOTAL.get(),
        Unit::Count,
        "Reclaim runs that failed in the allocator, by trigger."
    );
    describe_counter!(
        MEMORY_RECLAIM_RELEASED_BYTES_TOTAL.get(),
        Unit::Bytes,
        "Resident bytes released by reclaim runs, by trigger."
    );
    describe_histogram!(
        RECLAIM_DURATION.get(),
        Unit::Seconds,
        "Time reclaim runs spent in the allocator (on a blocking thread, never on a request), by trigger."
    );
    describe_gauge!(
        MEMORY_RECLAIM_LAST_DURATION_SECONDS.get(),
        Unit::Seconds,
        "Duration of the latest reclaim run."
    );
    describe_gauge!(
        MEMORY_RECLAIM_LAST_RELEASED_BYTES.get(),
        Unit::Bytes,
        "Resident bytes released by the latest reclaim run."
    );
    describe_gauge!(
        MEMORY_RECLAIM_LAST_TIMESTAMP_SECONDS.get(),
        Unit::Seconds,
        "Unix time the latest reclaim run finished."
    );
    describe_counter!(
        MEMORY_MONITOR_SAMPLES_TOTAL.get(),
        Unit::Count,
        "Memory samples taken."
    );
    describe_counter!(
        MEMORY_MONITOR_SAMPLE_ERRORS_TOTAL.get(),
        Unit::Count,
        "Memory samples that failed."
    );
    describe_gauge!(
        MEMORY_MONITOR_LAST_SAMPLE_TIMESTAMP_SECONDS.get(),
        Unit::Seconds,
        "Unix time of the latest memory sample."
    );
    describe_gauge!(
        MEMORY_MONITOR_LIVE.get(),
        Unit::Count,
        "1 while the monitor task samples on schedule, 0 when it has stalled."
    );
    describe_counter!(
        MEMORY_PRESSURE_CHANGES_TOTAL.get(),
        Unit::Count,
        "Changes of the memory pressure level, by the level entered."
    );
    describe_gauge!(
        MEMORY_BUDGET_CAPACITY_BYTES.get(),
        Unit::Bytes,
        "Capacity of the memory governor's budget: what requests may hold at once."
    );
    describe_gauge!(
        MEMORY_BUDGET_CHARGED_BYTES.get(),
        Unit::Bytes,
        "Bytes charged to the memory budget: reservations plus growth beyond them."
    );
    describe_gauge!(
        MEMORY_BUDGET_RESERVED_BYTES.get(),
        Unit::Bytes,
        "Bytes of the memory budget reserved at admission ahead of use."
    );
    describe_gauge!(
        MEMORY_BUDGET_QUEUE_LENGTH.get(),
        Unit::Count,
        "Requests waiting in the memory budget's admission queue."
    );
    describe_gauge!(
        MEMORY_BUDGET_PARKED_REQUESTS.get(),
        Unit::Count,
        "Requests parked until memory frees."
    );
    #[cfg(feature = "interceptor")]
    describe_counter!(
        GOVERNOR.get(),
        Unit::Count,
        "Memory governor decisions for requests that reserved memory, by route and decision (admitted, queued, rejected, parked, aborted)."
    );
    #[cfg(feature = "interceptor")]
    describe_histogram!(
        ADMISSION_WAIT.get(),
        Unit::Seconds,
        "Time requests waited in the memory governor's admission queue, by route."
    );
    describe_gauge!(
        HTTP_IN_FLIGHT_HELD_BYTES.get(),
        Unit::Bytes,
        "Bytes the requests in flight hold now, by route (requests holding at least the listing minimum)."
    );
    describe_gauge!(
        HTTP_IN_FLIGHT_REQUESTS.get(),
        Unit::Count,
        "Requests in flight holding at least the listing minimum, by route."
    );
    describe_gauge!(
        HTTP_ROUTE_RETAINED_BYTES.get(),
        Unit::Bytes,
        "Bytes requests still held when they ended, summed since start, by route (net retained)."
    );
    describe_counter!(
        MEMORY_SHED_REQUESTS_TOTAL.get(),
        Unit::Count,
        "Requests answered 503 by PressureShedLayer, by reason."
    );
}
