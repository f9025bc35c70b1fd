//! The monitor's figures as `metrics` gauges and counters.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use memory_interceptor_layer::{InFlight, Ledger};

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};

use crate::allocator::AllocatorProfile;
use crate::monitor::MemoryMonitor;

/// Gauge: bytes the requests in flight hold now, per route (label `route`).
pub const IN_FLIGHT_HELD: &str = "http_in_flight_held_bytes";
/// Gauge: requests in flight listed per route (those holding at least the listing's minimum).
pub const IN_FLIGHT_REQUESTS: &str = "http_in_flight_requests";
/// Gauge: bytes a route's requests still held when they ended, summed since start (label
/// `route`); `delta()` over a window is what the route left behind in it.
pub const ROUTE_RETAINED: &str = "http_route_retained_bytes";

/// Gauge: capacity of the governor's memory budget.
pub const BUDGET_CAPACITY: &str = "memory_budget_capacity_bytes";
/// Gauge: bytes charged to the budget.
pub const BUDGET_CHARGED: &str = "memory_budget_charged_bytes";
/// Gauge: bytes of the budget reserved at admission.
pub const BUDGET_RESERVED: &str = "memory_budget_reserved_bytes";
/// Gauge: requests waiting in the admission queue (the autoscaling signal).
pub const BUDGET_QUEUE: &str = "memory_budget_queue_length";
/// Gauge: requests parked until memory frees.
pub const BUDGET_PARKED: &str = "memory_budget_parked_requests";

/// Registers help text and units of every metric this crate emits with the installed recorder
/// (descriptions sent before a recorder is installed are lost).
/// `PrometheusMetrics::install` (feature `prometheus`) calls it; call it yourself
/// after installing another recorder. Calling it again is harmless.
pub fn describe_metrics() {
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory size in bytes."
    );
    describe_gauge!(
        "process_virtual_memory_bytes",
        Unit::Bytes,
        "Virtual memory size in bytes."
    );
    describe_gauge!(
        "memory_process_peak_resident_bytes",
        Unit::Bytes,
        "Peak resident memory size since start, in bytes (VmHWM)."
    );
    describe_gauge!(
        "memory_non_allocator_resident_bytes",
        Unit::Bytes,
        "Resident memory the allocator does not hold: process RSS minus the allocator's resident bytes (code, stacks, memory mapped outside the allocator)."
    );
    describe_gauge!(
        "memory_usage_bytes",
        Unit::Bytes,
        "Memory usage the pressure level is computed from: the larger of process RSS and cgroup working set."
    );
    describe_gauge!(
        "memory_limit_bytes",
        Unit::Bytes,
        "Memory limit usage is measured against: configured, else the cgroup limit, else physical memory."
    );
    describe_gauge!(
        "memory_usage_ratio",
        Unit::Count,
        "memory_usage_bytes / memory_limit_bytes."
    );
    describe_gauge!(
        "memory_pressure_level",
        Unit::Count,
        "Memory pressure: 0 normal, 1 warning, 2 critical."
    );
    describe_gauge!(
        "memory_warning_threshold_ratio",
        Unit::Count,
        "Usage ratio at which pressure becomes warning."
    );
    describe_gauge!(
        "memory_critical_threshold_ratio",
        Unit::Count,
        "Usage ratio at which pressure becomes critical."
    );
    describe_gauge!(
        "memory_allocator_allocated_bytes",
        Unit::Bytes,
        "Bytes in live allocations, as the allocator counts them."
    );
    describe_gauge!(
        "memory_allocator_active_bytes",
        Unit::Bytes,
        "Bytes in the allocator's active pages."
    );
    describe_gauge!(
        "memory_allocator_resident_bytes",
        Unit::Bytes,
        "Bytes in physically resident pages the allocator maps."
    );
    describe_gauge!(
        "memory_allocator_mapped_bytes",
        Unit::Bytes,
        "Bytes in extents the allocator has mapped."
    );
    describe_gauge!(
        "memory_allocator_retained_bytes",
        Unit::Bytes,
        "Bytes of virtual memory the allocator retains without using."
    );
    describe_gauge!(
        "memory_allocator_metadata_bytes",
        Unit::Bytes,
        "Bytes the allocator spends on its own metadata."
    );
    describe_gauge!(
        "memory_allocator_fragmentation_ratio",
        Unit::Count,
        "Allocator active / allocated - 1."
    );
    describe_gauge!(
        "memory_allocator_info",
        Unit::Count,
        "The allocator serving the heap and its profile (value 1 for the current one)."
    );
    describe_gauge!(
        "memory_cgroup_usage_bytes",
        Unit::Bytes,
        "Memory charged to the container's cgroup, page cache included."
    );
    describe_gauge!(
        "memory_cgroup_working_set_bytes",
        Unit::Bytes,
        "Cgroup usage minus inactive file pages (what the kubelet evicts on)."
    );
    describe_gauge!(
        "memory_cgroup_limit_bytes",
        Unit::Bytes,
        "The cgroup's hard memory limit (absent when unlimited)."
    );
    describe_gauge!(
        "memory_cgroup_high_bytes",
        Unit::Bytes,
        "The cgroup's memory.high throttling limit (absent when unset)."
    );
    describe_counter!(
        "memory_cgroup_oom_kills_total",
        Unit::Count,
        "OOM kills in the container's cgroup."
    );
    describe_gauge!(
        "memory_growth_rate_bytes_per_second",
        Unit::Bytes,
        "Least-squares growth rate of memory usage over the trend window."
    );
    describe_gauge!(
        "memory_growth_window_seconds",
        Unit::Seconds,
        "Time covered by the samples the growth rate is fitted to."
    );
    describe_gauge!(
        "memory_leak_suspected",
        Unit::Count,
        "1 while the growth rate has stayed above the leak threshold."
    );
    describe_counter!(
        "memory_reclaim_runs_total",
        Unit::Count,
        "Reclaim runs, by trigger (scheduled, critical, warning, heavy_request, api)."
    );
    describe_counter!(
        "memory_reclaim_failures_total",
        Unit::Count,
        "Reclaim runs that failed in the allocator, by trigger."
    );
    describe_counter!(
        "memory_reclaim_released_bytes_total",
        Unit::Bytes,
        "Resident bytes released by reclaim runs, by trigger."
    );
    describe_histogram!(
        memory_probe::RECLAIM_DURATION_METRIC,
        Unit::Seconds,
        "Time reclaim runs spent in the allocator (on a blocking thread, never on a request), by trigger."
    );
    describe_gauge!(
        "memory_reclaim_last_duration_seconds",
        Unit::Seconds,
        "Duration of the latest reclaim run."
    );
    describe_gauge!(
        "memory_reclaim_last_released_bytes",
        Unit::Bytes,
        "Resident bytes released by the latest reclaim run."
    );
    describe_gauge!(
        "memory_reclaim_last_timestamp_seconds",
        Unit::Seconds,
        "Unix time the latest reclaim run finished."
    );
    describe_counter!(
        "memory_monitor_samples_total",
        Unit::Count,
        "Memory samples taken."
    );
    describe_counter!(
        "memory_monitor_sample_errors_total",
        Unit::Count,
        "Memory samples that failed."
    );
    describe_gauge!(
        "memory_monitor_last_sample_timestamp_seconds",
        Unit::Seconds,
        "Unix time of the latest memory sample."
    );
    describe_gauge!(
        "memory_monitor_live",
        Unit::Count,
        "1 while the monitor task samples on schedule, 0 when it has stalled."
    );
    describe_counter!(
        "memory_pressure_changes_total",
        Unit::Count,
        "Changes of the memory pressure level, by the level entered."
    );
    describe_gauge!(
        BUDGET_CAPACITY,
        Unit::Bytes,
        "Capacity of the memory governor's budget: what requests may hold at once."
    );
    describe_gauge!(
        BUDGET_CHARGED,
        Unit::Bytes,
        "Bytes charged to the memory budget: reservations plus growth beyond them."
    );
    describe_gauge!(
        BUDGET_RESERVED,
        Unit::Bytes,
        "Bytes of the memory budget reserved at admission ahead of use."
    );
    describe_gauge!(
        BUDGET_QUEUE,
        Unit::Count,
        "Requests waiting in the memory budget's admission queue."
    );
    describe_gauge!(
        BUDGET_PARKED,
        Unit::Count,
        "Requests parked until memory frees."
    );
    describe_counter!(
        memory_interceptor_layer::GOVERNOR_METRIC,
        Unit::Count,
        "Memory governor decisions for requests that reserved memory, by route and decision (admitted, queued, rejected, parked, aborted)."
    );
    describe_histogram!(
        memory_interceptor_layer::ADMISSION_WAIT_METRIC,
        Unit::Seconds,
        "Time requests waited in the memory governor's admission queue, by route."
    );
    describe_gauge!(
        IN_FLIGHT_HELD,
        Unit::Bytes,
        "Bytes the requests in flight hold now, by route (requests holding at least the listing minimum)."
    );
    describe_gauge!(
        IN_FLIGHT_REQUESTS,
        Unit::Count,
        "Requests in flight holding at least the listing minimum, by route."
    );
    describe_gauge!(
        ROUTE_RETAINED,
        Unit::Bytes,
        "Bytes requests still held when they ended, summed since start, by route (net retained)."
    );
    describe_counter!(
        "memory_shed_requests_total",
        Unit::Count,
        "Requests answered 503 by PressureShedLayer, by reason."
    );
}

/// Sets the per-route gauges of what requests hold: in flight now ([`IN_FLIGHT_HELD`],
/// [`IN_FLIGHT_REQUESTS`]) and left behind when they ended ([`ROUTE_RETAINED`]). Every route the
/// ledger knows gets a series (0 when nothing is in flight), so a finished burst reads 0, not its
/// last value.
pub fn record_request_metrics(ledger: Option<&Ledger>, in_flight: Option<&InFlight>) {
    let mut routes: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    if let Some(ledger) = ledger {
        for r in ledger.snapshot() {
            gauge!(ROUTE_RETAINED, "route" => r.route.clone()).set(r.retained_bytes as f64);
            routes.entry(r.route).or_default();
        }
    }
    if let Some(in_flight) = in_flight {
        for (route, f) in in_flight.by_route() {
            routes.insert(route.to_string(), (f.requests, f.held_bytes));
        }
        for (route, (requests, held)) in routes {
            gauge!(IN_FLIGHT_REQUESTS, "route" => route.clone()).set(requests as f64);
            gauge!(IN_FLIGHT_HELD, "route" => route).set(held as f64);
        }
    }
}

/// Sets every gauge and counter from the monitor's latest snapshot, with the process's resident
/// and virtual size read now (they are the standard scrape-time process metrics). Metrics go to
/// whichever recorder is installed.
pub fn record_metrics(monitor: &MemoryMonitor) {
    let snapshot = monitor.snapshot();
    let process = memory_probe::process_memory()
        .ok()
        .or_else(|| snapshot.as_ref().and_then(|s| s.process));
    if let Some(p) = process {
        gauge!("process_resident_memory_bytes").set(p.rss_bytes as f64);
        gauge!("process_virtual_memory_bytes").set(p.virtual_bytes as f64);
        gauge!("memory_process_peak_resident_bytes").set(p.peak_rss_bytes as f64);
    }
    let thresholds = monitor.thresholds();
    gauge!("memory_warning_threshold_ratio").set(thresholds.warning());
    gauge!("memory_critical_threshold_ratio").set(thresholds.critical());
    gauge!("memory_pressure_level").set(f64::from(monitor.pressure().level()));
    gauge!("memory_monitor_live").set(if monitor.liveness().is_live() {
        1.0
    } else {
        0.0
    });
    let (samples, errors) = monitor.sample_counts();
    counter!("memory_monitor_samples_total").absolute(samples);
    counter!("memory_monitor_sample_errors_total").absolute(errors);

    let reclaim = monitor.reclaim_summary();
    // Every trigger gets its series from the start, so `increase()` sees the first run.
    for (trigger, t) in &reclaim.by_trigger {
        let label = trigger.as_str();
        counter!("memory_reclaim_runs_total", "trigger" => label).absolute(t.runs);
        counter!("memory_reclaim_failures_total", "trigger" => label).absolute(t.failures);
        counter!("memory_reclaim_released_bytes_total", "trigger" => label)
            .absolute(t.released_bytes);
    }
    if let Some(last) = &reclaim.last {
        gauge!("memory_reclaim_last_duration_seconds").set(last.duration.as_secs_f64());
        gauge!("memory_reclaim_last_released_bytes").set(last.released_bytes() as f64);
        if let Ok(t) = last.finished_at.duration_since(UNIX_EPOCH) {
            gauge!("memory_reclaim_last_timestamp_seconds").set(t.as_secs_f64());
        }
    }

    if let Some(b) = monitor.budget() {
        gauge!(BUDGET_CAPACITY).set(b.capacity() as f64);
        gauge!(BUDGET_CHARGED).set(b.in_use() as f64);
        gauge!(BUDGET_RESERVED).set(b.reserved() as f64);
        gauge!(BUDGET_QUEUE).set(b.queue_len() as f64);
        gauge!(BUDGET_PARKED).set(b.parked_len() as f64);
    }

    let Some(s) = snapshot else { return };
    if let Ok(t) = s.wall_time.duration_since(UNIX_EPOCH) {
        gauge!("memory_monitor_last_sample_timestamp_seconds").set(t.as_secs_f64());
    }
    if let Some(u) = s.usage_bytes {
        gauge!("memory_usage_bytes").set(u as f64);
    }
    if let Some(n) = s.non_allocator_resident_bytes() {
        gauge!("memory_non_allocator_resident_bytes").set(n as f64);
    }
    if let Some(l) = s.limit {
        gauge!("memory_limit_bytes").set(l.bytes as f64);
    }
    if let Some(r) = s.usage_ratio {
        gauge!("memory_usage_ratio").set(r);
    }
    let a = &s.allocator;
    for (name, value) in [
        ("memory_allocator_allocated_bytes", a.allocated_bytes),
        ("memory_allocator_active_bytes", a.active_bytes),
        ("memory_allocator_resident_bytes", a.resident_bytes),
        ("memory_allocator_mapped_bytes", a.mapped_bytes),
        ("memory_allocator_retained_bytes", a.retained_bytes),
        ("memory_allocator_metadata_bytes", a.metadata_bytes),
    ] {
        if let Some(v) = value {
            gauge!(name).set(v as f64);
        }
    }
    if let Some(f) = a.fragmentation_ratio() {
        gauge!("memory_allocator_fragmentation_ratio").set(f);
    }
    // Every profile gets a series so that a change at run time leaves no stale 1 behind.
    let current = AllocatorProfile::current();
    for (label, profile) in [
        ("default", None),
        ("memory-first", Some(AllocatorProfile::MemoryFirst)),
        ("throughput", Some(AllocatorProfile::Throughput)),
    ] {
        gauge!(
            "memory_allocator_info",
            "allocator" => s.allocator_kind.to_string(),
            "profile" => label
        )
        .set(if current == profile { 1.0 } else { 0.0 });
    }
    if let Some(c) = &s.cgroup {
        gauge!("memory_cgroup_usage_bytes").set(c.usage_bytes as f64);
        gauge!("memory_cgroup_working_set_bytes").set(c.working_set_bytes as f64);
        if let Some(l) = c.limit_bytes {
            gauge!("memory_cgroup_limit_bytes").set(l as f64);
        }
        if let Some(h) = c.high_bytes {
            gauge!("memory_cgroup_high_bytes").set(h as f64);
        }
        if let Some(k) = c.oom_kills {
            counter!("memory_cgroup_oom_kills_total").absolute(k);
        }
    }
    if let Some(rate) = s.trend.bytes_per_hour {
        gauge!("memory_growth_rate_bytes_per_second").set(rate / 3600.0);
    }
    gauge!("memory_growth_window_seconds").set(s.trend.span.as_secs_f64());
    gauge!("memory_leak_suspected").set(if s.leak_suspected { 1.0 } else { 0.0 });
}
