//! `MemoryMonitorBuilder`: the monitor's settings, validated into [`Settings`].

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tower_memory_probe::{MemoryBudget, Pressure, PressureSignal, Reclaimer};

use super::leak::{LeakCheck, LeakThreshold};
use super::lifecycle::{AtomicLifecycle, Lifecycle};
use super::schedule::ReclaimSchedule;
use super::{MemoryMonitor, Shared, State};
use crate::allocator::AllocatorProfile;
use crate::budget::BudgetCapacity;
use crate::error::BuildError;
use crate::requests::InFlight;
use crate::sample::{ProbeSource, SampleSource};
use crate::thresholds::Thresholds;
use crate::trend::GrowthTrend;

/// Default shortest time between two samples asked for by budget movements or kernel events.
pub(crate) const DEFAULT_RESAMPLE_GAP: Duration = Duration::from_millis(100);

/// Builder for [`MemoryMonitor`]; every setting has a default.
#[derive(Clone)]
pub struct MemoryMonitorBuilder {
    interval: Duration,
    warning: f64,
    critical: f64,
    margin: Option<f64>,
    limit: Option<u64>,
    source: Option<Arc<dyn SampleSource>>,
    reclaimer: Option<Reclaimer>,
    cleanup: bool,
    reclaim_on_warning: bool,
    reclaim_interval: Duration,
    trend_window: Duration,
    leak_threshold: LeakThreshold,
    leak_after: Duration,
    stall_after: Option<Duration>,
    allocator_profile: Option<AllocatorProfile>,
    signal: Option<PressureSignal>,
    budget: Option<(MemoryBudget, BudgetCapacity)>,
    resample_gap: Duration,
    kernel_events: bool,
    in_flight: Option<InFlight>,
    process_metrics: bool,
}

impl fmt::Debug for MemoryMonitorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryMonitorBuilder")
            .field("interval", &self.interval)
            .field("warning", &self.warning)
            .field("critical", &self.critical)
            .field("limit", &self.limit)
            .field("cleanup", &self.cleanup)
            .field("reclaim_interval", &self.reclaim_interval)
            .finish_non_exhaustive()
    }
}

impl Default for MemoryMonitorBuilder {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            warning: 0.75,
            critical: 0.85,
            margin: None,
            limit: None,
            source: None,
            reclaimer: None,
            cleanup: true,
            reclaim_on_warning: false,
            reclaim_interval: Duration::from_secs(300),
            trend_window: Duration::from_secs(30 * 60),
            leak_threshold: LeakThreshold::FractionOfLimitPerHour(0.1),
            leak_after: Duration::from_secs(10 * 60),
            stall_after: None,
            allocator_profile: None,
            signal: None,
            budget: None,
            resample_gap: DEFAULT_RESAMPLE_GAP,
            kernel_events: true,
            in_flight: None,
            process_metrics: true,
        }
    }
}

impl MemoryMonitorBuilder {
    /// Time between samples (default 30 s; `MEMORY_CHECK_INTERVAL`).
    #[must_use]
    pub fn check_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Usage ratio where pressure becomes `Warning` (default 0.75).
    #[must_use]
    pub fn warning_threshold(mut self, ratio: f64) -> Self {
        self.warning = ratio;
        self
    }

    /// Usage ratio where pressure becomes `Critical` (default 0.85).
    #[must_use]
    pub fn critical_threshold(mut self, ratio: f64) -> Self {
        self.critical = ratio;
        self
    }

    /// How far below a threshold usage must fall before its level drops (default 0.05).
    #[must_use]
    pub fn hysteresis(mut self, margin: f64) -> Self {
        self.margin = Some(margin);
        self
    }

    /// An explicit limit in bytes. Without it: the cgroup's effective limit, else physical memory.
    #[must_use]
    pub fn limit_bytes(mut self, bytes: u64) -> Self {
        self.limit = Some(bytes);
        self
    }

    /// Where samples come from (default [`ProbeSource::new`]).
    #[must_use]
    pub fn source(mut self, source: impl SampleSource) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The reclaimer to run (default `Reclaimer::new()`); share one with other layers so their
    /// runs are rate-limited together.
    #[must_use]
    pub fn reclaimer(mut self, reclaimer: Reclaimer) -> Self {
        self.reclaimer = Some(reclaimer);
        self
    }

    /// Whether to reclaim at all (default true; `MEMORY_RECLAIM_ENABLED`).
    #[must_use]
    pub fn reclaim_enabled(mut self, enabled: bool) -> Self {
        self.cleanup = enabled;
        self
    }

    /// Whether to reclaim also when pressure rises from normal to warning (default false; on in
    /// the `MEMORY_RECLAIM_AGGRESSIVE` preset). Reclaim on entering critical is always on while
    /// reclaim is enabled.
    #[must_use]
    pub fn reclaim_on_warning(mut self, enabled: bool) -> Self {
        self.reclaim_on_warning = enabled;
        self
    }

    /// Time between scheduled reclaims (default 5 min; `MEMORY_RECLAIM_INTERVAL`). Checked at
    /// each sample, so the effective granularity is the sampling interval.
    #[must_use]
    pub fn reclaim_interval(mut self, interval: Duration) -> Self {
        self.reclaim_interval = interval;
        self
    }

    /// Window of the growth trend (default 30 min).
    #[must_use]
    pub fn trend_window(mut self, window: Duration) -> Self {
        self.trend_window = window;
        self
    }

    /// Growth rate that counts as a leak (default a tenth of the limit per hour).
    #[must_use]
    pub fn leak_threshold(mut self, threshold: LeakThreshold) -> Self {
        self.leak_threshold = threshold;
        self
    }

    /// How long the trend must stay above the leak threshold before the leak warning (default
    /// 10 min). The trend must also cover at least half its window, and the usage floor must
    /// rise at half the threshold or more (see
    /// [`TrendEstimate::floor_bytes_per_hour`](crate::TrendEstimate::floor_bytes_per_hour)).
    #[must_use]
    pub fn leak_after(mut self, duration: Duration) -> Self {
        self.leak_after = duration;
        self
    }

    /// Time without a completed sample after which `/health/live` reports a stall (default three
    /// intervals, at least 1 s).
    #[must_use]
    pub fn stall_after(mut self, duration: Duration) -> Self {
        self.stall_after = Some(duration);
        self
    }

    /// Allocator profile to apply when the monitor starts.
    #[must_use]
    pub fn allocator_profile(mut self, profile: AllocatorProfile) -> Self {
        self.allocator_profile = Some(profile);
        self
    }

    /// Sizes the governor's `budget` at every sample as `capacity` says (see [`BudgetCapacity`]),
    /// and samples again, between the scheduled ones, whenever what requests hold moves by more
    /// than 5% of the limit (at most once per `resample_gap`, default 100 ms): pressure then
    /// follows a burst within milliseconds instead of one interval later.
    #[must_use]
    pub fn budget(mut self, budget: MemoryBudget, capacity: BudgetCapacity) -> Self {
        self.budget = Some((budget, capacity));
        self
    }

    /// Shortest time between two samples that budget movements or kernel memory events ask for
    /// (default 100 ms).
    #[must_use]
    pub fn resample_gap(mut self, gap: Duration) -> Self {
        self.resample_gap = gap;
        self
    }

    /// Whether to sample again on the kernel's memory notifications for the process's cgroup
    /// (default true): cgroup v1 usage thresholds at the warning and critical share of the limit
    /// and OOM notifications, cgroup v2 `memory.events` changes and a PSI trigger. Where none can
    /// be registered the monitor says so in a debug event and samples on its timer.
    #[must_use]
    pub fn kernel_events(mut self, enabled: bool) -> Self {
        self.kernel_events = enabled;
        self
    }

    /// On entering critical pressure, the warning event lists the largest requests in flight
    /// (from `tower-memory-interceptor`'s
    /// [`MemoryInterceptorLayer::in_flight`](tower_memory_interceptor::MemoryInterceptorLayer::in_flight)):
    /// if the kernel kills the process next, its logs say what held the memory. Feature
    /// `interceptor`.
    #[must_use]
    #[cfg(feature = "interceptor")]
    pub fn in_flight(mut self, in_flight: InFlight) -> Self {
        self.in_flight = Some(in_flight);
        self
    }

    /// Whether [`record_metrics`](crate::record_metrics) (and so `/metrics`) sets the standard
    /// process gauges `process_resident_memory_bytes` and `process_virtual_memory_bytes`
    /// (default `true`). Turn them off when the application already runs `metrics-process` (or
    /// another process collector) in the same recorder: two writers of one series disagree
    /// between scrapes. The monitor's own figures (`memory_process_peak_resident_bytes`,
    /// `memory_usage_bytes`, ...) are not affected.
    ///
    /// On by default because most services have no process collector, and the deploy
    /// dashboard's resident-memory panel reads `process_resident_memory_bytes`.
    #[must_use]
    pub fn process_metrics(mut self, enabled: bool) -> Self {
        self.process_metrics = enabled;
        self
    }

    /// Publish into this signal instead of a new one (to share it with layers built earlier).
    #[must_use]
    pub fn signal(mut self, signal: PressureSignal) -> Self {
        self.signal = Some(signal);
        self
    }

    /// Validates the settings and builds the (not yet started) monitor.
    pub fn build(self) -> Result<MemoryMonitor, BuildError> {
        let positive = |setting: &'static str, d: Duration| {
            if d.is_zero() {
                Err(BuildError::Invalid {
                    setting,
                    reason: "must be longer than zero".into(),
                })
            } else {
                Ok(())
            }
        };
        positive("interval", self.interval)?;
        positive("reclaim interval", self.reclaim_interval)?;
        positive("trend window", self.trend_window)?;
        if let Some(stall) = self.stall_after {
            positive("stall timeout", stall)?;
        }
        if self.limit == Some(0) {
            return Err(BuildError::Invalid {
                setting: "limit",
                reason: "must be more than zero bytes".into(),
            });
        }
        if let LeakThreshold::FractionOfLimitPerHour(f) = self.leak_threshold
            && !(f.is_finite() && f > 0.0)
        {
            return Err(BuildError::Invalid {
                setting: "leak threshold",
                reason: format!("{f} is not a positive fraction"),
            });
        }
        let mut thresholds = Thresholds::new(self.warning, self.critical)?;
        if let Some(margin) = self.margin {
            thresholds = thresholds.with_margin(margin)?;
        }
        let stall_after = self
            .stall_after
            .unwrap_or_else(|| (self.interval * 3).max(Duration::from_secs(1)));
        let settings = Settings {
            interval: self.interval,
            thresholds,
            limit: self.limit,
            cleanup: self.cleanup,
            reclaim_on_warning: self.reclaim_on_warning,
            reclaim_interval: self.reclaim_interval,
            trend_window: self.trend_window,
            leak_threshold: self.leak_threshold,
            leak_after: self.leak_after,
            stall_after,
            allocator_profile: self.allocator_profile,
            budget: self.budget,
            resample_gap: self.resample_gap,
            kernel_events: self.kernel_events,
            in_flight: self.in_flight,
            process_metrics: self.process_metrics,
        };
        Ok(MemoryMonitor {
            shared: Arc::new(Shared {
                source: self.source.unwrap_or_else(|| Arc::new(ProbeSource::new())),
                signal: self.signal.unwrap_or_default(),
                reclaimer: self.reclaimer.unwrap_or_default(),
                tick_lock: tokio::sync::Mutex::new(()),
                state: Mutex::new(State {
                    pressure: Pressure::Normal,
                    trend: GrowthTrend::new(settings.trend_window),
                    leak: LeakCheck::default(),
                    schedule: ReclaimSchedule::default(),
                    snapshot: None,
                }),
                ratio_bits: AtomicU64::new(f64::NAN.to_bits()),
                anchor: Instant::now(),
                started_at: AtomicU64::new(0),
                last_tick: AtomicU64::new(0),
                last_sampled: AtomicU64::new(0),
                clamp_warned: AtomicBool::new(false),
                lifecycle: AtomicLifecycle::new(Lifecycle::Idle),
                generation: AtomicU64::new(0),
                stop: Arc::new(Notify::new()),
                samples: AtomicU64::new(0),
                sample_errors: AtomicU64::new(0),
                event_sources: Mutex::new(Vec::new()),
                settings,
            }),
        })
    }
}

/// The validated settings, fixed for the monitor's life.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) interval: Duration,
    pub(super) thresholds: Thresholds,
    pub(super) limit: Option<u64>,
    pub(super) cleanup: bool,
    pub(super) reclaim_on_warning: bool,
    pub(super) reclaim_interval: Duration,
    pub(super) trend_window: Duration,
    pub(super) leak_threshold: LeakThreshold,
    pub(super) leak_after: Duration,
    pub(super) stall_after: Duration,
    pub(super) allocator_profile: Option<AllocatorProfile>,
    pub(super) budget: Option<(MemoryBudget, BudgetCapacity)>,
    pub(super) resample_gap: Duration,
    pub(super) kernel_events: bool,
    pub(super) in_flight: Option<InFlight>,
    pub(super) process_metrics: bool,
}
