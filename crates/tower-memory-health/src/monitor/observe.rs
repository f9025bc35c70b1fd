//! One sample through the monitor's state machine: measure, size the budget, classify and
//! publish pressure, track the trend, check for a leak, schedule reclaim, keep the snapshot.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tower_memory_probe::{AllocatorStats, ReclaimTrigger};

use super::builder::Settings;
use super::pressure::{self, Reading};
use super::snapshot::MemorySnapshot;
use super::{MemoryMonitor, emit, leak};
use crate::budget::Inputs as BudgetInputs;
use crate::sample::Sample;

/// How far what requests hold may move, as a fraction of the limit, before the monitor samples
/// again.
const BUDGET_STEP: f64 = 0.05;

impl MemoryMonitor {
    /// Runs `sample` through the state machine; returns its snapshot and the reclaim now due.
    pub(super) fn observe(&self, sample: Sample) -> (Arc<MemorySnapshot>, Option<ReclaimTrigger>) {
        let shared = &self.shared;
        let settings = &shared.settings;
        let reading = pressure::measure(settings, &sample, &shared.clamp_warned);
        let at = sample.taken_at;
        size_budget(settings, &reading, &sample.allocator);

        let mut state = self.state();
        let previous = state.pressure;
        let pressure = pressure::classify(&settings.thresholds, previous, reading.ratio);
        state.pressure = pressure;
        shared.ratio_bits.store(
            reading.ratio.unwrap_or(f64::NAN).to_bits(),
            Ordering::Relaxed,
        );
        shared.signal.set(pressure);
        if pressure != previous {
            emit::pressure_changed(previous, pressure, &reading, settings.in_flight.as_ref());
        }

        let trend = leak::record_trend(&mut state.trend, at, reading.usage);
        let leak_suspected = state.leak.update(at, &trend, reading.limit, settings);
        let reclaim = state.schedule.due(at, previous, pressure, settings);

        let snapshot = Arc::new(MemorySnapshot::new(
            sample,
            pressure,
            &reading,
            trend,
            leak_suspected,
        ));
        state.snapshot = Some(Arc::clone(&snapshot));
        (snapshot, reclaim)
    }
}

/// Sizes the governor's budget (when the monitor has one) for the limit this sample resolved,
/// and sets how far its usage may move before the next sample is asked for.
fn size_budget(settings: &Settings, reading: &Reading, allocator: &AllocatorStats) {
    if let (Some((budget, capacity)), Some(limit)) = (&settings.budget, reading.limit) {
        let inputs = BudgetInputs {
            limit: limit.bytes,
            share: settings.thresholds.warning(),
            usage: reading.usage.unwrap_or(0),
            allocator,
            charged: budget.in_use(),
        };
        let step = ((limit.bytes as f64 * BUDGET_STEP) as u64).max(1 << 20);
        crate::budget::apply(budget, capacity.capacity(&inputs), step);
    }
}
