//! The monitor's figures as `metrics` gauges and counters.

#[cfg(feature = "interceptor")]
use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

#[cfg(feature = "interceptor")]
use tower_memory_interceptor::{InFlight, Ledger};

use metrics::{counter, gauge};

use crate::allocator::AllocatorProfile;
use crate::metrics::*;
use crate::monitor::MemoryMonitor;

/// Sets the per-route gauges of what requests hold: in flight now (`http_in_flight_held_bytes`,
/// `http_in_flight_requests`) and left behind when they ended (`http_route_retained_bytes`).
/// Every route the ledger knows gets a series (0 when nothing is in flight), so a finished burst reads 0, not its
/// last value. Feature `interceptor`.
#[cfg(feature = "interceptor")]
pub fn record_request_metrics(ledger: Option<&Ledger>, in_flight: Option<&InFlight>) {
    let mut routes: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    if let Some(ledger) = ledger {
        for r in ledger.snapshot() {
            gauge!(HTTP_ROUTE_RETAINED_BYTES.get(), "route" => r.route.clone())
                .set(r.retained_bytes as f64);
            routes.entry(r.route).or_default();
        }
    }
    if let Some(in_flight) = in_flight {
        for (route, f) in in_flight.by_route() {
            routes.insert(route.to_string(), (f.requests, f.held_bytes));
        }
        for (route, (requests, held)) in routes {
            gauge!(HTTP_IN_FLIGHT_REQUESTS.get(), "route" => route.clone()).set(requests as f64);
            gauge!(HTTP_IN_FLIGHT_HELD_BYTES.get(), "route" => route).set(held as f64);
        }
    }
}

/// Sets every gauge and counter from the monitor's latest snapshot, with the process's resident
/// and virtual size read now (they are the standard scrape-time process metrics; the monitor's
/// [`process_metrics`](crate::MemoryMonitorBuilder::process_metrics) setting leaves the two
/// `process_*` gauges out). Metrics go to
/// whichever recorder is installed ([`PrometheusMetrics`](crate::PrometheusMetrics) calls it at
/// every render; call it yourself before another recorder exports).
pub fn record_metrics(monitor: &MemoryMonitor) {
    let snapshot = monitor.snapshot();
    let process = tower_memory_probe::process_memory()
        .ok()
        .or_else(|| snapshot.as_ref().and_then(|s| s.process));
    if let Some(p) = process {
        if monitor.process_metrics() {
            gauge!(PROCESS_RESIDENT_MEMORY_BYTES.get()).set(p.rss_bytes as f64);
            gauge!(PROCESS_VIRTUAL_MEMORY_BYTES.get()).set(p.virtual_bytes as f64);
        }
        gauge!(MEMORY_PROCESS_PEAK_RESIDENT_BYTES.get()).set(p.peak_rss_bytes as f64);
    }
    let thresholds = monitor.thresholds();
    gauge!(MEMORY_WARNING_THRESHOLD_RATIO.get()).set(thresholds.warning());
    gauge!(MEMORY_CRITICAL_THRESHOLD_RATIO.get()).set(thresholds.critical());
    gauge!(MEMORY_PRESSURE_LEVEL.get()).set(f64::from(monitor.pressure().level()));
    gauge!(MEMORY_MONITOR_LIVE.get()).set(if monitor.liveness().is_live() {
        1.0
    } else {
        0.0
    });
    let (samples, errors) = monitor.sample_counts();
    counter!(MEMORY_MONITOR_SAMPLES_TOTAL.get()).absolute(samples);
    counter!(MEMORY_MONITOR_SAMPLE_ERRORS_TOTAL.get()).absolute(errors);

    let reclaim = monitor.reclaim_summary();
    // Every trigger gets its series from the start, so `increase()` sees the first run.
    for (trigger, t) in &reclaim.by_trigger {
        let label = trigger.as_str();
        counter!(MEMORY_RECLAIM_RUNS_TOTAL.get(), "trigger" => label).absolute(t.runs);
        counter!(MEMORY_RECLAIM_FAILURES_TOTAL.get(), "trigger" => label).absolute(t.failures);
        counter!(MEMORY_RECLAIM_RELEASED_BYTES_TOTAL.get(), "trigger" => label)
            .absolute(t.released_bytes);
    }
    if let Some(last) = &reclaim.last {
        gauge!(MEMORY_RECLAIM_LAST_DURATION_SECONDS.get()).set(last.duration.as_secs_f64());
        gauge!(MEMORY_RECLAIM_LAST_RELEASED_BYTES.get()).set(last.released_bytes() as f64);
        if let Ok(t) = last.finished_at.duration_since(UNIX_EPOCH) {
            gauge!(MEMORY_RECLAIM_LAST_TIMESTAMP_SECONDS.get()).set(t.as_secs_f64());
        }
    }

    if let Some(b) = monitor.budget() {
        gauge!(MEMORY_BUDGET_CAPACITY_BYTES.get()).set(b.capacity() as f64);
        gauge!(MEMORY_BUDGET_CHARGED_BYTES.get()).set(b.in_use() as f64);
        gauge!(MEMORY_BUDGET_RESERVED_BYTES.get()).set(b.reserved() as f64);
        gauge!(MEMORY_BUDGET_QUEUE_LENGTH.get()).set(b.queue_len() as f64);
        gauge!(MEMORY_BUDGET_PARKED_REQUESTS.get()).set(b.parked_len() as f64);
    }

    let Some(s) = snapshot else { return };
    if let Ok(t) = s.wall_time.duration_since(UNIX_EPOCH) {
        gauge!(MEMORY_MONITOR_LAST_SAMPLE_TIMESTAMP_SECONDS.get()).set(t.as_secs_f64());
    }
    if let Some(u) = s.usage_bytes {
        gauge!(MEMORY_USAGE_BYTES.get()).set(u as f64);
    }
    if let Some(n) = s.non_allocator_resident_bytes() {
        gauge!(MEMORY_NON_ALLOCATOR_RESIDENT_BYTES.get()).set(n as f64);
    }
    if let Some(l) = s.limit {
        gauge!(MEMORY_LIMIT_BYTES.get()).set(l.bytes as f64);
    }
    if let Some(r) = s.usage_ratio {
        gauge!(MEMORY_USAGE_RATIO.get()).set(r);
    }
    let a = &s.allocator;
    for (name, value) in [
        (MEMORY_ALLOCATOR_ALLOCATED_BYTES.get(), a.allocated_bytes),
        (MEMORY_ALLOCATOR_ACTIVE_BYTES.get(), a.active_bytes),
        (MEMORY_ALLOCATOR_RESIDENT_BYTES.get(), a.resident_bytes),
        (MEMORY_ALLOCATOR_MAPPED_BYTES.get(), a.mapped_bytes),
        (MEMORY_ALLOCATOR_RETAINED_BYTES.get(), a.retained_bytes),
        (MEMORY_ALLOCATOR_METADATA_BYTES.get(), a.metadata_bytes),
    ] {
        if let Some(v) = value {
            gauge!(name).set(v as f64);
        }
    }
    if let Some(f) = a.fragmentation_ratio() {
        gauge!(MEMORY_ALLOCATOR_FRAGMENTATION_RATIO.get()).set(f);
    }
    // Every profile gets a series so that a change at run time leaves no stale 1 behind.
    let current = AllocatorProfile::current();
    for (label, profile) in [
        ("default", None),
        ("memory-first", Some(AllocatorProfile::MemoryFirst)),
        ("throughput", Some(AllocatorProfile::Throughput)),
    ] {
        gauge!(
            MEMORY_ALLOCATOR_INFO.get(),
            "allocator" => s.allocator_kind.to_string(),
            "profile" => label
        )
        .set(if current == profile { 1.0 } else { 0.0 });
    }
    if let Some(c) = &s.cgroup {
        gauge!(MEMORY_CGROUP_USAGE_BYTES.get()).set(c.usage_bytes as f64);
        gauge!(MEMORY_CGROUP_WORKING_SET_BYTES.get()).set(c.working_set_bytes as f64);
        if let Some(l) = c.limit_bytes {
            gauge!(MEMORY_CGROUP_LIMIT_BYTES.get()).set(l as f64);
        }
        if let Some(h) = c.high_bytes {
            gauge!(MEMORY_CGROUP_HIGH_BYTES.get()).set(h as f64);
        }
        if let Some(k) = c.oom_kills {
            counter!(MEMORY_CGROUP_OOM_KILLS_TOTAL.get()).absolute(k);
        }
    }
    if let Some(rate) = s.trend.bytes_per_hour {
        gauge!(MEMORY_GROWTH_RATE_BYTES_PER_SECOND.get()).set(rate / 3600.0);
    }
    gauge!(MEMORY_GROWTH_WINDOW_SECONDS.get()).set(s.trend.span.as_secs_f64());
    gauge!(MEMORY_LEAK_SUSPECTED.get()).set(if s.leak_suspected { 1.0 } else { 0.0 });
}
