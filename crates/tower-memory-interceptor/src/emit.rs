//! Where a finished request's report goes: `tracing`, `metrics`, the `Ledger`, the `Reclaimer`
//! and the user's callback.

use crate::config::Config;
use crate::labels::{labels, method_label, record_route, status_label};
use crate::metrics::{ABORTED, HEAVY};
use crate::outcome::{AbortReason, Outcome};
use crate::report::Ended;

/// Sends the report everywhere it is configured to go.
pub(crate) fn emit(config: &Config, report: &Ended<'_>) {
    crate::span::record(report);
    let status = status_label(report.status);
    let method = method_label(report.method);
    record_route(
        config,
        method,
        report.route,
        status,
        report.allocated,
        report.net,
    );
    if config.metrics {
        if report.heavy {
            metrics::counter!(HEAVY.get(), labels(method, report.route, status)).increment(1);
        }
        if let Outcome::Aborted(reason) = report.outcome {
            metrics::counter!(
                ABORTED.get(),
                "reason" => reason.as_str(),
                "route" => report.route.label()
            )
            .increment(1);
        }
    }

    macro_rules! event {
        ($level:expr, $message:expr) => {
            tracing::event!(
                target: "memory_interceptor",
                $level,
                method = %report.method,
                route = %report.route,
                path = config.logged_path(report.path_and_query),
                status,
                outcome = report.outcome.as_str(),
                allocated = report.allocated,
                deallocated = report.deallocated,
                net = report.net,
                peak_net = report.peak_net,
                polls = report.polls,
                body_bytes = report.body_bytes,
                duration_ms = report.duration().as_secs_f64() * 1e3,
                $message
            )
        };
    }
    match report.outcome {
        Outcome::Aborted(AbortReason::Quota) => event!(
            tracing::Level::WARN,
            "request aborted: over the per-request memory quota"
        ),
        Outcome::Aborted(AbortReason::Pressure) => event!(
            tracing::Level::WARN,
            "request aborted: memory pressure is critical and it held the most memory"
        ),
        Outcome::Aborted(AbortReason::Overcommit) => event!(
            tracing::Level::WARN,
            "request aborted: the memory budget is over capacity and it was the furthest over its reservation"
        ),
        // The governor logged the refusal with its reason when it decided.
        Outcome::Rejected => event!(tracing::Level::DEBUG, "request memory"),
        _ if report.heavy => event!(tracing::Level::WARN, "heavy request"),
        _ => event!(tracing::Level::DEBUG, "request memory"),
    }

    if report.heavy
        && let Some(reclaimer) = &config.reclaimer
    {
        // Non-blocking: starts a rate-limited, single-flight run on the blocking pool, or nothing.
        reclaimer.reclaim_in_background(tower_memory_probe::ReclaimTrigger::HeavyRequest);
    }
    if let Some(on_report) = &config.on_report {
        on_report(&report.to_report());
    }
}
