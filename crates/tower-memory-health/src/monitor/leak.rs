//! The leak check: the growth trend over the window, and whether it has stayed above the leak
//! threshold long enough to warn.

use std::time::Instant;

use super::builder::Settings;
use crate::limit::MemoryLimit;
use crate::trend::{GrowthTrend, TrendEstimate};

/// When the growth trend counts as a leak.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum LeakThreshold {
    /// Growth above this many bytes per hour.
    BytesPerHour(u64),
    /// Growth above this fraction of the limit per hour (0.1: a tenth of the limit every hour).
    FractionOfLimitPerHour(f64),
}

/// Adds the sample's usage (when known) to the trend and returns the trend's estimate.
pub(super) fn record_trend(
    trend: &mut GrowthTrend,
    at: Instant,
    usage: Option<u64>,
) -> TrendEstimate {
    if let Some(u) = usage {
        trend.record(at, u);
    }
    trend.estimate()
}

/// What the leak check remembers between samples.
#[derive(Debug, Default)]
pub(super) struct LeakCheck {
    /// Since when the trend has been above the threshold.
    above_since: Option<Instant>,
    /// Whether the leak warning is in force.
    suspected: bool,
}

impl LeakCheck {
    /// Judges the trend after the sample at `at`, warns when a leak is first suspected and says
    /// when it no longer is; returns whether a leak is suspected.
    pub(super) fn update(
        &mut self,
        at: Instant,
        trend: &TrendEstimate,
        limit: Option<MemoryLimit>,
        settings: &Settings,
    ) -> bool {
        let bound = match settings.leak_threshold {
            LeakThreshold::BytesPerHour(b) => Some(b as f64),
            LeakThreshold::FractionOfLimitPerHour(f) => limit.map(|l| l.bytes as f64 * f),
        };
        // A leak needs the fitted slope above the bound, a floor that rises too (a released
        // burst tilts the slope but leaves the floor), and at least half a window of data.
        let above = match (trend.bytes_per_hour, trend.floor_bytes_per_hour, bound) {
            (Some(rate), Some(floor), Some(b)) => rate > b && floor > b / 2.0,
            _ => false,
        } && trend.span >= settings.trend_window / 2;
        if above {
            let since = *self.above_since.get_or_insert(at);
            if !self.suspected && at.saturating_duration_since(since) >= settings.leak_after {
                self.suspected = true;
                tracing::warn!(
                    target: "tower_memory_health",
                    bytes_per_hour = trend.bytes_per_hour,
                    threshold_bytes_per_hour = bound,
                    window_seconds = trend.span.as_secs_f64(),
                    "memory keeps growing: possible leak"
                );
            }
        } else {
            self.above_since = None;
            if self.suspected {
                self.suspected = false;
                tracing::info!(
                    target: "tower_memory_health",
                    bytes_per_hour = trend.bytes_per_hour,
                    "memory growth back below the leak threshold"
                );
            }
        }
        self.suspected
    }
}
