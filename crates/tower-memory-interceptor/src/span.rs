//! The report on the request's `tracing` span: the span current when the layer is called (an
//! outer `TraceLayer`'s, an `#[instrument]`ed caller's) gets the report's figures when the request
//! ends, so that tracing-opentelemetry exports them as span attributes.
//!
//! Why the span is taken at the call: the report is emitted when the response body is dropped,
//! usually by the server outside any span, so `Span::current()` there would be the wrong one.
//! Why only spans that declare a `memory.` field are kept: `Span::record` only fills fields
//! declared when the span was created, and keeping a span costs a reference count in the
//! subscriber. Without a subscriber the whole cost is one relaxed load.

use tracing::Span;

use crate::report::Ended;

/// Span field: bytes allocated while serving the request (`u64`).
pub const SPAN_ALLOCATED: &str = "memory.allocated_bytes";
/// Span field: bytes freed while serving the request (`u64`).
pub const SPAN_DEALLOCATED: &str = "memory.deallocated_bytes";
/// Span field: bytes the request still held when it ended (`i64`, see [`MemoryReport::net`](crate::MemoryReport::net)).
pub const SPAN_NET: &str = "memory.net_bytes";
/// Span field: the most the request held at a poll boundary (`i64`).
pub const SPAN_PEAK_NET: &str = "memory.peak_net_bytes";
/// Span field: how the request ended ([`Outcome::as_str`](crate::Outcome::as_str): `completed`,
/// `aborted_quota`, ...).
pub const SPAN_OUTCOME: &str = "memory.outcome";
/// Span field: whether the request allocated at least the heavy threshold (`bool`).
pub const SPAN_HEAVY: &str = "memory.heavy";

/// Every span field the layer records, for `make_span_with` declarations and tests.
pub const SPAN_FIELDS: [&str; 6] = [
    SPAN_ALLOCATED,
    SPAN_DEALLOCATED,
    SPAN_NET,
    SPAN_PEAK_NET,
    SPAN_OUTCOME,
    SPAN_HEAVY,
];

/// The current span, if it declares at least one of [`SPAN_FIELDS`]; else `Span::none()`.
#[inline]
pub(crate) fn capture() -> Span {
    // No subscriber was ever set: no span can exist.
    if !tracing::dispatcher::has_been_set() {
        return Span::none();
    }
    capture_current()
}

#[inline(never)]
fn capture_current() -> Span {
    // Look before cloning: `Span::current()` takes a reference in the subscriber (and gives it
    // back on drop), which a span that declares none of the fields should not cost.
    let wants = tracing::dispatcher::get_default(|dispatch| {
        dispatch
            .current_span()
            .metadata()
            .is_some_and(|m| m.fields().iter().any(|f| f.name().starts_with("memory.")))
    });
    if wants { Span::current() } else { Span::none() }
}

/// Records the report's figures on the span taken at the call (nothing when there is none).
pub(crate) fn record(report: &Ended<'_>) {
    let Some(meta) = report.span.metadata() else {
        return;
    };
    let fields = meta.fields();
    let span = report.span;
    if let Some(f) = fields.field(SPAN_ALLOCATED) {
        span.record(&f, report.allocated);
    }
    if let Some(f) = fields.field(SPAN_DEALLOCATED) {
        span.record(&f, report.deallocated);
    }
    if let Some(f) = fields.field(SPAN_NET) {
        span.record(&f, report.net);
    }
    if let Some(f) = fields.field(SPAN_PEAK_NET) {
        span.record(&f, report.peak_net);
    }
    if let Some(f) = fields.field(SPAN_OUTCOME) {
        span.record(&f, report.outcome.as_str());
    }
    if let Some(f) = fields.field(SPAN_HEAVY) {
        span.record(&f, report.heavy);
    }
}
