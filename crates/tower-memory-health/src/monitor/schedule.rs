//! The reclaim schedule: on entering critical (and, if asked, warning) pressure, and every
//! `reclaim_interval`.

use std::time::Instant;

use tower_memory_probe::{Pressure, ReclaimError, ReclaimTrigger, Reclaimer};

use super::builder::Settings;

/// What the schedule remembers between samples.
#[derive(Debug, Default)]
pub(super) struct ReclaimSchedule {
    first_sample_at: Option<Instant>,
    last_reclaim_at: Option<Instant>,
}

impl ReclaimSchedule {
    /// The reclaim due after the sample at `at` moved pressure from `previous` to `pressure`, if
    /// any; a due reclaim counts as done for the interval.
    pub(super) fn due(
        &mut self,
        at: Instant,
        previous: Pressure,
        pressure: Pressure,
        settings: &Settings,
    ) -> Option<ReclaimTrigger> {
        let first = *self.first_sample_at.get_or_insert(at);
        let reclaim = if !settings.cleanup {
            None
        } else if pressure == Pressure::Critical && previous != Pressure::Critical {
            Some(ReclaimTrigger::Critical)
        } else if settings.reclaim_on_warning
            && pressure == Pressure::Warning
            && previous == Pressure::Normal
        {
            Some(ReclaimTrigger::Warning)
        } else if at.saturating_duration_since(self.last_reclaim_at.unwrap_or(first))
            >= settings.reclaim_interval
        {
            Some(ReclaimTrigger::Scheduled)
        } else {
            None
        };
        if reclaim.is_some() {
            self.last_reclaim_at = Some(at);
        }
        reclaim
    }
}

/// Runs a reclaim the schedule asked for; skips and failures are logged, never returned.
pub(super) async fn run_reclaim(reclaimer: &Reclaimer, trigger: ReclaimTrigger) {
    // The reclaimer counts and logs every run under its trigger, whoever asked for it.
    match reclaimer.reclaim_for(trigger).await {
        Ok(_) => {}
        Err(e @ (ReclaimError::RateLimited { .. } | ReclaimError::Unsupported(_))) => {
            tracing::debug!(target: "tower_memory_health", trigger = %trigger, error = %e, "reclaim skipped");
        }
        Err(e) => {
            tracing::warn!(target: "tower_memory_health", trigger = %trigger, error = %e, "reclaim failed");
        }
    }
}
