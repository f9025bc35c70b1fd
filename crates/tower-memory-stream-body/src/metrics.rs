//! The crate's metrics: every name spelled once, and [`describe_metrics`].

/// Gauge: bytes of request bodies held in memory under a memory budget right now.
pub(crate) static BUFFERED_BYTES: tower_memory_probe::MetricName =
    tower_memory_probe::MetricName::new("http_body_buffered_bytes");
/// Counter: request bodies a spooled body continued into a temporary file.
pub(crate) static SPILLED_TOTAL: tower_memory_probe::MetricName =
    tower_memory_probe::MetricName::new("http_body_spilled_total");
/// Counter with a `reason` label: requests the layer answered itself because of their body.
pub(crate) static REJECTED_TOTAL: tower_memory_probe::MetricName =
    tower_memory_probe::MetricName::new("http_body_rejected_total");

/// Registers units and help texts of the crate's metrics with the installed recorder (call it
/// once the recorder is installed). Nothing is recorded unless the program installs a recorder
/// (for example `metrics-exporter-prometheus`); without one every call is a no-op.
///
/// | Name | Type | Labels | Meaning |
/// |---|---|---|---|
/// | `http_body_buffered_bytes` | gauge | | Bytes of request bodies held in memory under a [`MemoryBudget`](crate::MemoryBudget) right now, summed over all budgets. |
/// | `http_body_spilled_total` | counter | | Request bodies a [`SpooledBody`](crate::SpooledBody) continued into a temporary file. |
/// | `http_body_rejected_total` | counter | `reason` | Requests the layer answered itself because of their body: `too_large` (413, over `max_body_size`), `over_budget` (413, larger than the whole memory budget), `budget_exhausted` (503), `idle_timeout` and `too_slow` (408), `bad_length` (400, unreadable or wrong `Content-Length`), `incomplete` (400, the body broke off). |
pub fn describe_metrics() {
    metrics::describe_gauge!(
        BUFFERED_BYTES.get(),
        metrics::Unit::Bytes,
        "Bytes of request bodies held in memory under the memory budget"
    );
    metrics::describe_counter!(
        SPILLED_TOTAL.get(),
        metrics::Unit::Count,
        "Request bodies continued into a temporary file"
    );
    metrics::describe_counter!(
        REJECTED_TOTAL.get(),
        metrics::Unit::Count,
        "Requests answered by the body layer because of their body, by reason"
    );
}
