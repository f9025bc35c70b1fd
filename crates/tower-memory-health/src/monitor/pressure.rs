//! Usage against the limit: what a sample measures, and the pressure level it gives.

use std::sync::atomic::{AtomicBool, Ordering};

use tower_memory_probe::Pressure;

use super::builder::Settings;
use crate::limit::{LimitSource, MemoryLimit, resolve_limit, usage_bytes};
use crate::sample::Sample;
use crate::thresholds::Thresholds;

/// Usage, limit and their ratio, as one sample shows them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reading {
    pub(super) usage: Option<u64>,
    pub(super) limit: Option<MemoryLimit>,
    pub(super) ratio: Option<f64>,
}

/// Measures the sample against the limit (configured, else the cgroup's, else physical memory).
/// A configured limit above the cgroup's is reported once (`clamp_warned`).
pub(super) fn measure(settings: &Settings, sample: &Sample, clamp_warned: &AtomicBool) -> Reading {
    let usage = usage_bytes(sample.process.as_ref(), sample.cgroup.as_ref());
    let limit = resolve_limit(
        settings.limit,
        sample.cgroup.as_ref(),
        sample.physical_bytes,
    );
    if let (Some(configured), Some(l)) = (settings.limit, limit)
        && l.source != LimitSource::Configured
        && !clamp_warned.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(
            target: "tower_memory_health",
            configured_bytes = configured,
            limit_bytes = l.bytes,
            source = %l.source,
            "MEMORY_LIMIT_BYTES is above the cgroup's memory limit, where the kernel acts: using the cgroup's"
        );
    }
    let ratio = match (usage, limit) {
        (Some(u), Some(l)) if l.bytes > 0 => Some(u as f64 / l.bytes as f64),
        _ => None,
    };
    Reading {
        usage,
        limit,
        ratio,
    }
}

/// The level after `previous` for `ratio` (with the thresholds' hysteresis).
pub(super) fn classify(
    thresholds: &Thresholds,
    previous: Pressure,
    ratio: Option<f64>,
) -> Pressure {
    // Without a ratio the level cannot be judged: keep the last one rather than guess.
    ratio.map_or(previous, |r| thresholds.classify(previous, r))
}
