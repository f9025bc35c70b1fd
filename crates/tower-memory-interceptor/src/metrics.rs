//! The crate's metrics: every name spelled once, and [`describe_metrics`].
//!
//! The names are public (re-exported at the crate root): they are the contract of dashboards and
//! alerts, tower-memory-health names the governor's two, and tests match on them. They are the
//! base names: with a [prefix](tower_memory_probe::set_metric_prefix) the names emitted are
//! `{prefix}_{name}`.

use metrics::{Unit, describe_counter, describe_histogram};
use tower_memory_probe::MetricName;

/// Metric: histogram of bytes allocated per request (labels `method`, `route`, `status`).
pub const ALLOCATED_METRIC: &str = "http_request_allocated_bytes";
/// Metric: histogram of bytes a request still held at its end (labels `method`, `route`,
/// `status`).
pub const NET_METRIC: &str = "http_request_net_allocated_bytes";
/// Metric: counter of requests that allocated at least the heavy threshold (labels `method`,
/// `route`, `status`).
pub const HEAVY_METRIC: &str = "http_heavy_requests_total";
/// Metric: counter of requests the layer aborted (labels `reason`: `quota`, `pressure` or
/// `overcommit`, and `route`).
pub const ABORTED_METRIC: &str = "http_requests_aborted_total";
/// Metric: counter of the governor's decisions (labels `route`, `decision`: `admitted`, `queued`,
/// `rejected`, `parked`, `aborted`), for requests that reserved memory.
pub const GOVERNOR_METRIC: &str = "http_governor_requests_total";
/// Metric: histogram of the time requests waited for admission, in seconds (label `route`).
pub const ADMISSION_WAIT_METRIC: &str = "http_governor_admission_wait_seconds";

// The names as emitted, each resolved once with the prefix (see tower-memory-probe's
// `MetricName`): the hot path then registers with a static string, as before.
pub(crate) static ALLOCATED: MetricName = MetricName::new(ALLOCATED_METRIC);
pub(crate) static NET: MetricName = MetricName::new(NET_METRIC);
pub(crate) static HEAVY: MetricName = MetricName::new(HEAVY_METRIC);
pub(crate) static ABORTED: MetricName = MetricName::new(ABORTED_METRIC);
pub(crate) static GOVERNOR: MetricName = MetricName::new(GOVERNOR_METRIC);
pub(crate) static ADMISSION_WAIT: MetricName = MetricName::new(ADMISSION_WAIT_METRIC);

/// Registers the description of every metric this crate emits with the installed `metrics`
/// recorder ([`MemoryInterceptorLayer::new`](crate::MemoryInterceptorLayer::new) calls it too).
///
/// | Name | Type | Labels | Meaning |
/// |---|---|---|---|
/// | `http_request_allocated_bytes` | histogram (bytes) | `method`, `route`, `status` | Bytes allocated while serving a request |
/// | `http_request_net_allocated_bytes` | histogram (bytes) | `method`, `route`, `status` | Bytes a request still held when it ended (allocated - freed - handed to the server) |
/// | `http_heavy_requests_total` | counter | `method`, `route`, `status` | Requests that allocated at least the heavy threshold |
/// | `http_requests_aborted_total` | counter | `reason` (`quota`, `pressure`, `overcommit`), `route` | Requests aborted by the layer |
/// | `http_governor_requests_total` | counter | `route`, `decision` (`admitted`, `queued`, `rejected`, `parked`, `aborted`) | The memory governor's decisions, for requests that reserved memory |
/// | `http_governor_admission_wait_seconds` | histogram (seconds) | `route` | Time requests waited for admission |
pub fn describe_metrics() {
    describe_histogram!(
        ALLOCATED.get(),
        Unit::Bytes,
        "Bytes allocated while serving a request"
    );
    describe_histogram!(
        NET.get(),
        Unit::Bytes,
        "Bytes a request still held when it ended (allocated - freed - handed to the server)"
    );
    describe_counter!(
        HEAVY.get(),
        Unit::Count,
        "Requests that allocated at least the heavy threshold"
    );
    describe_counter!(
        ABORTED.get(),
        Unit::Count,
        "Requests aborted by the memory interceptor, by reason"
    );
    describe_counter!(
        GOVERNOR.get(),
        Unit::Count,
        "Memory governor decisions for requests that reserved memory, by route and decision (admitted, queued, rejected, parked, aborted)."
    );
    describe_histogram!(
        ADMISSION_WAIT.get(),
        Unit::Seconds,
        "Time requests waited in the memory governor's admission queue, by route."
    );
}
