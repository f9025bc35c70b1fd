//! `MemoryMonitor`: samples memory on a schedule, publishes pressure, tracks the growth trend,
//! schedules reclaim.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use memory_interceptor_layer::InFlight;
use memory_probe::{
    AllocatorKind, AllocatorStats, CgroupMemory, MemoryBudget, Pressure, PressureSignal,
    ProcessMemory, ReclaimError, ReclaimReport, ReclaimTrigger, Reclaimer,
};
use tokio::sync::Notify;

use crate::allocator::{AllocatorProfile, ProfileError, ProfileReport};
use crate::budget::{BudgetCapacity, Inputs as BudgetInputs};
use crate::limit::{LimitSource, MemoryLimit, resolve_limit, usage_bytes};
use crate::reclaim::ReclaimSummary;
use crate::sample::{ProbeSource, Sample, SampleError, SampleSource};
use crate::thresholds::Thresholds;
use crate::trend::{GrowthTrend, TrendEstimate};
use crate::{BuildError, StartError};

/// When the growth trend counts as a leak.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LeakThreshold {
    /// Growth above this many bytes per hour.
    BytesPerHour(u64),
    /// Growth above this fraction of the limit per hour (0.1: a tenth of the limit every hour).
    FractionOfLimitPerHour(f64),
}

/// What one sample showed, after the monitor classified it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemorySnapshot {
    /// When the sample was taken.
    pub taken_at: Instant,
    /// The wall-clock time of the sample.
    pub wall_time: SystemTime,
    /// The pressure level after this sample (with hysteresis).
    pub pressure: Pressure,
    /// The usage measure: the larger of process RSS and cgroup working set.
    pub usage_bytes: Option<u64>,
    /// The limit usage is measured against.
    pub limit: Option<MemoryLimit>,
    /// `usage / limit`.
    pub usage_ratio: Option<f64>,
    /// Process memory.
    pub process: Option<ProcessMemory>,
    /// Container memory.
    pub cgroup: Option<CgroupMemory>,
    /// Allocator statistics.
    pub allocator: AllocatorStats,
    /// The allocator serving the heap.
    pub allocator_kind: AllocatorKind,
    /// The growth trend over the window, this sample included.
    pub trend: TrendEstimate,
    /// Whether the trend has stayed above the leak threshold for `leak_after`.
    pub leak_suspected: bool,
}

impl MemorySnapshot {
    /// Resident memory the allocator does not account for: the process's RSS minus the
    /// allocator's resident bytes (code, thread stacks, kernel-side buffers, memory mapped by C
    /// libraries past the allocator). `None` when either figure is unknown.
    pub fn non_allocator_resident_bytes(&self) -> Option<u64> {
        let rss = self.process?.rss_bytes;
        let allocator = self.allocator.resident_bytes?;
        Some(rss.saturating_sub(allocator))
    }
}

/// Whether the monitor task is doing its job, for `/health/live`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The task is not running (never started, or stopped on purpose): nothing can stall.
    NotRunning,
    /// The task sampled within `stall_after`.
    Alive {
        /// Time since the last completed sample (or since start).
        since_last_sample: Duration,
    },
    /// The task has not completed a sample within `stall_after`, or it died.
    Stalled {
        /// Time since the last completed sample (or since start).
        since_last_sample: Duration,
    },
}

impl Liveness {
    /// Whether `/health/live` should answer 200.
    pub fn is_live(&self) -> bool {
        !matches!(self, Liveness::Stalled { .. })
    }
}

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
        }
    }
}

impl MemoryMonitorBuilder {
    /// Time between samples (default 30 s; `MEMORY_CHECK_INTERVAL`).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Usage ratio where pressure becomes `Warning` (default 0.75).
    pub fn warning(mut self, ratio: f64) -> Self {
        self.warning = ratio;
        self
    }

    /// Usage ratio where pressure becomes `Critical` (default 0.85).
    pub fn critical(mut self, ratio: f64) -> Self {
        self.critical = ratio;
        self
    }

    /// How far below a threshold usage must fall before its level drops (default 0.05).
    pub fn hysteresis(mut self, margin: f64) -> Self {
        self.margin = Some(margin);
        self
    }

    /// An explicit limit in bytes. Without it: the cgroup's effective limit, else physical memory.
    pub fn limit(mut self, bytes: u64) -> Self {
        self.limit = Some(bytes);
        self
    }

    /// Where samples come from (default [`ProbeSource::new`]).
    pub fn source(mut self, source: impl SampleSource) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// The reclaimer to run (default `Reclaimer::new()`); share one with other layers so their
    /// runs are rate-limited together.
    pub fn reclaimer(mut self, reclaimer: Reclaimer) -> Self {
        self.reclaimer = Some(reclaimer);
        self
    }

    /// Whether to reclaim at all (default true; `MEMORY_CLEANUP_ENABLED`).
    pub fn reclaim_enabled(mut self, enabled: bool) -> Self {
        self.cleanup = enabled;
        self
    }

    /// Whether to reclaim also when pressure rises from normal to warning (default false; on in
    /// the `MEMORY_CLEANUP_AGGRESSIVE` preset). Reclaim on entering critical is always on while
    /// reclaim is enabled.
    pub fn reclaim_on_warning(mut self, enabled: bool) -> Self {
        self.reclaim_on_warning = enabled;
        self
    }

    /// Time between scheduled reclaims (default 5 min; `MEMORY_CLEANUP_INTERVAL`). Checked at
    /// each sample, so the effective granularity is the sampling interval.
    pub fn reclaim_interval(mut self, interval: Duration) -> Self {
        self.reclaim_interval = interval;
        self
    }

    /// Window of the growth trend (default 30 min).
    pub fn trend_window(mut self, window: Duration) -> Self {
        self.trend_window = window;
        self
    }

    /// Growth rate that counts as a leak (default a tenth of the limit per hour).
    pub fn leak_threshold(mut self, threshold: LeakThreshold) -> Self {
        self.leak_threshold = threshold;
        self
    }

    /// How long the trend must stay above the leak threshold before the leak warning (default
    /// 10 min). The trend must also cover at least half its window, and the usage floor must
    /// rise at half the threshold or more (see [`TrendEstimate::floor_bytes_per_hour`]).
    pub fn leak_after(mut self, duration: Duration) -> Self {
        self.leak_after = duration;
        self
    }

    /// Time without a completed sample after which `/health/live` reports a stall (default three
    /// intervals, at least 1 s).
    pub fn stall_after(mut self, duration: Duration) -> Self {
        self.stall_after = Some(duration);
        self
    }

    /// Allocator profile to apply when the monitor starts.
    pub fn allocator_profile(mut self, profile: AllocatorProfile) -> Self {
        self.allocator_profile = Some(profile);
        self
    }

    /// Sizes the governor's `budget` at every sample as `capacity` says (see [`BudgetCapacity`]),
    /// and samples again, between the scheduled ones, whenever what requests hold moves by more
    /// than 5% of the limit (at most once per `resample_gap`, default 100 ms): pressure then
    /// follows a burst within milliseconds instead of one interval later.
    pub fn budget(mut self, budget: MemoryBudget, capacity: BudgetCapacity) -> Self {
        self.budget = Some((budget, capacity));
        self
    }

    /// Shortest time between two samples that budget movements or kernel memory events ask for
    /// (default 100 ms).
    pub fn resample_gap(mut self, gap: Duration) -> Self {
        self.resample_gap = gap;
        self
    }

    /// Whether to sample again on the kernel's memory notifications for the process's cgroup
    /// (default true): cgroup v1 usage thresholds at the warning and critical share of the limit
    /// and OOM notifications, cgroup v2 `memory.events` changes and a PSI trigger. Where none can
    /// be registered the monitor says so in a debug event and samples on its timer.
    pub fn kernel_events(mut self, enabled: bool) -> Self {
        self.kernel_events = enabled;
        self
    }

    /// On entering critical pressure, the warning event lists the largest requests in flight
    /// (from `memory-interceptor-layer`'s
    /// [`MemoryInterceptorLayer::in_flight`](memory_interceptor_layer::MemoryInterceptorLayer::in_flight)):
    /// if the kernel kills the process next, its logs say what held the memory.
    pub fn in_flight(mut self, in_flight: InFlight) -> Self {
        self.in_flight = Some(in_flight);
        self
    }

    /// Publish into this signal instead of a new one (to share it with layers built earlier).
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
                    leak_above_since: None,
                    leak_suspected: false,
                    first_sample_at: None,
                    last_reclaim_at: None,
                    snapshot: None,
                }),
                ratio_bits: AtomicU64::new(f64::NAN.to_bits()),
                anchor: Instant::now(),
                started_at: AtomicU64::new(0),
                last_tick: AtomicU64::new(0),
                last_sampled: AtomicU64::new(0),
                clamp_warned: AtomicBool::new(false),
                lifecycle: AtomicU8::new(IDLE),
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

#[derive(Debug, Clone)]
struct Settings {
    interval: Duration,
    thresholds: Thresholds,
    limit: Option<u64>,
    cleanup: bool,
    reclaim_on_warning: bool,
    reclaim_interval: Duration,
    trend_window: Duration,
    leak_threshold: LeakThreshold,
    leak_after: Duration,
    stall_after: Duration,
    allocator_profile: Option<AllocatorProfile>,
    budget: Option<(MemoryBudget, BudgetCapacity)>,
    resample_gap: Duration,
    kernel_events: bool,
    in_flight: Option<InFlight>,
}

/// Requests the critical-pressure event lists.
const CRITICAL_IN_FLIGHT: usize = 5;

/// Default shortest time between two samples asked for by budget movements or kernel events.
pub const DEFAULT_RESAMPLE_GAP: Duration = Duration::from_millis(100);

/// How far what requests hold may move, as a fraction of the limit, before the monitor samples
/// again.
const BUDGET_STEP: f64 = 0.05;

const IDLE: u8 = 0;
const RUNNING: u8 = 1;
const STOPPED: u8 = 2;
const DIED: u8 = 3;

struct Shared {
    settings: Settings,
    source: Arc<dyn SampleSource>,
    signal: PressureSignal,
    reclaimer: Reclaimer,
    /// One sample at a time: the state machine sees samples in order.
    tick_lock: tokio::sync::Mutex<()>,
    state: Mutex<State>,
    /// The last usage ratio as f64 bits (NaN: unknown), for lock-free readers such as shedding.
    ratio_bits: AtomicU64,
    anchor: Instant,
    /// Nanoseconds after `anchor` plus one; 0 means never.
    started_at: AtomicU64,
    last_tick: AtomicU64,
    /// When the latest successful sample was taken (a mark like `last_tick`; 0: never).
    last_sampled: AtomicU64,
    /// A configured limit above the cgroup's has been reported (once).
    clamp_warned: AtomicBool,
    lifecycle: AtomicU8,
    generation: AtomicU64,
    stop: Arc<Notify>,
    samples: AtomicU64,
    sample_errors: AtomicU64,
    /// The kernel event sources the task listens to.
    event_sources: Mutex<Vec<String>>,
}

struct State {
    pressure: Pressure,
    trend: GrowthTrend,
    leak_above_since: Option<Instant>,
    leak_suspected: bool,
    first_sample_at: Option<Instant>,
    last_reclaim_at: Option<Instant>,
    snapshot: Option<Arc<MemorySnapshot>>,
}

/// Samples the process's memory every `interval`, classifies usage against the limit into
/// [`Pressure`] (with hysteresis) and publishes it through a [`PressureSignal`], fits the growth
/// trend and warns about leaks, and runs the reclaim schedule.
///
/// Cloning is cheap and shares the monitor. The sampling task ends when [`stop`](Self::stop) is
/// called or the last clone is dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use memory_health::MemoryMonitor;
///
/// let monitor = MemoryMonitor::builder()
///     .interval(Duration::from_secs(10))
///     .warning(0.7)
///     .critical(0.9)
///     .build()
///     .expect("valid settings");
/// monitor.start().expect("inside a runtime");
/// let snapshot = monitor.sample_now().await.expect("/proc is readable");
/// assert!(snapshot.usage_bytes.unwrap() > 0);
/// assert!(snapshot.limit.is_some());
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryMonitor {
    shared: Arc<Shared>,
}

impl fmt::Debug for MemoryMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryMonitor")
            .field("interval", &self.shared.settings.interval)
            .field("thresholds", &self.shared.settings.thresholds)
            .field("pressure", &self.pressure())
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl MemoryMonitor {
    /// A builder with the defaults.
    pub fn builder() -> MemoryMonitorBuilder {
        MemoryMonitorBuilder::default()
    }

    /// Starts the sampling task on the current Tokio runtime (first sample at once), applying the
    /// configured allocator profile. Starting a running monitor does nothing.
    pub fn start(&self) -> Result<(), StartError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let shared = &self.shared;
        if shared.lifecycle.swap(RUNNING, Ordering::AcqRel) == RUNNING {
            return Ok(());
        }
        let generation = shared.generation.fetch_add(1, Ordering::AcqRel) + 1;
        shared.started_at.store(self.now_mark(), Ordering::Release);
        shared.last_tick.store(0, Ordering::Release);
        // Applied once: a program that applied it already (`MemoryConfig::apply_allocator_profile`)
        // is not told twice.
        if let Some(profile) = shared.settings.allocator_profile
            && AllocatorProfile::current() != Some(profile)
            && let Err(e) = profile.apply()
        {
            tracing::warn!(target: "memory_health", profile = %profile, error = %e, "allocator profile not applied");
        }
        let weak = Arc::downgrade(shared);
        let stop = Arc::clone(&shared.stop);
        let interval = shared.settings.interval;
        runtime.spawn(run(weak, stop, interval, generation));
        Ok(())
    }

    /// Stops the sampling task (it finishes a sample under way first).
    pub fn stop(&self) {
        let shared = &self.shared;
        if shared
            .lifecycle
            .compare_exchange(RUNNING, STOPPED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            || shared
                .lifecycle
                .compare_exchange(DIED, STOPPED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            shared.generation.fetch_add(1, Ordering::AcqRel);
            shared.stop.notify_waiters();
        }
    }

    /// Whether the sampling task is meant to be running (it may have stalled: see
    /// [`liveness`](Self::liveness)).
    pub fn is_running(&self) -> bool {
        matches!(
            self.shared.lifecycle.load(Ordering::Acquire),
            RUNNING | DIED
        )
    }

    /// Takes a sample now, runs it through the state machine exactly like a scheduled one
    /// (pressure, trend, leak check, reclaim when due) and returns what it showed.
    pub async fn sample_now(&self) -> Result<Arc<MemorySnapshot>, SampleError> {
        let _serial = self.shared.tick_lock.lock().await;
        self.sample_locked().await
    }

    /// The latest snapshot if it is at most `max_age` old, else a new sample (taken like
    /// [`sample_now`](Self::sample_now)). Callers that arrive while a sample is under way wait for
    /// it and share it, so however many ask, at most one sample per `max_age` is taken for them.
    pub async fn recent_snapshot(
        &self,
        max_age: Duration,
    ) -> Result<Arc<MemorySnapshot>, SampleError> {
        if let Some(snapshot) = self.fresh_snapshot(max_age) {
            return Ok(snapshot);
        }
        let _serial = self.shared.tick_lock.lock().await;
        if let Some(snapshot) = self.fresh_snapshot(max_age) {
            return Ok(snapshot);
        }
        self.sample_locked().await
    }

    /// The latest snapshot, if it was taken at most `max_age` ago (real time).
    pub fn fresh_snapshot(&self, max_age: Duration) -> Option<Arc<MemorySnapshot>> {
        let age = self.snapshot_age()?;
        (age <= max_age).then(|| self.snapshot()).flatten()
    }

    /// How long ago the latest successful sample was taken (real time), `None` before the first.
    pub fn snapshot_age(&self) -> Option<Duration> {
        match self.shared.last_sampled.load(Ordering::Acquire) {
            0 => None,
            mark => Some(Duration::from_nanos(self.now_mark().saturating_sub(mark))),
        }
    }

    async fn sample_locked(&self) -> Result<Arc<MemorySnapshot>, SampleError> {
        let source = Arc::clone(&self.shared.source);
        let result = match tokio::task::spawn_blocking(move || source.sample()).await {
            Ok(result) => result,
            Err(e) => Err(SampleError::Task(e.to_string())),
        };
        let sample = match result {
            Ok(sample) => sample,
            Err(e) => {
                self.shared.sample_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "memory_health", error = %e, "memory sample failed");
                return Err(e);
            }
        };
        self.shared.samples.fetch_add(1, Ordering::Relaxed);
        let (snapshot, reclaim) = self.observe(sample);
        self.shared
            .last_sampled
            .store(self.now_mark(), Ordering::Release);
        if let Some(reason) = reclaim {
            self.run_reclaim(reason).await;
        }
        Ok(snapshot)
    }

    fn now_mark(&self) -> u64 {
        self.shared.anchor.elapsed().as_nanos() as u64 + 1
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is plain data updated in short critical sections; a panic elsewhere cannot
        // leave it half-written in a way that matters more than losing the monitor.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn observe(&self, sample: Sample) -> (Arc<MemorySnapshot>, Option<ReclaimTrigger>) {
        let settings = &self.shared.settings;
        let usage = usage_bytes(sample.process.as_ref(), sample.cgroup.as_ref());
        let limit = resolve_limit(
            settings.limit,
            sample.cgroup.as_ref(),
            sample.physical_bytes,
        );
        if let (Some(configured), Some(l)) = (settings.limit, limit)
            && l.source != LimitSource::Configured
            && !self.shared.clamp_warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                target: "memory_health",
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
        let at = sample.taken_at;
        if let (Some((budget, capacity)), Some(limit)) = (&settings.budget, limit) {
            let inputs = BudgetInputs {
                limit: limit.bytes,
                share: settings.thresholds.warning(),
                usage: usage.unwrap_or(0),
                allocator: &sample.allocator,
                charged: budget.in_use(),
            };
            let step = ((limit.bytes as f64 * BUDGET_STEP) as u64).max(1 << 20);
            crate::budget::apply(budget, capacity.capacity(&inputs), step);
        }

        let mut state = self.state();
        let previous = state.pressure;
        // Without a ratio the level cannot be judged: keep the last one rather than guess.
        let pressure = ratio.map_or(previous, |r| settings.thresholds.classify(previous, r));
        state.pressure = pressure;
        self.shared
            .ratio_bits
            .store(ratio.unwrap_or(f64::NAN).to_bits(), Ordering::Relaxed);
        self.shared.signal.set(pressure);
        if pressure != previous {
            metrics::counter!(crate::metrics::MEMORY_PRESSURE_CHANGES_TOTAL, "to" => pressure.as_str())
                .increment(1);
            if pressure == Pressure::Critical {
                // One event with the requests holding the most: the cause of an OOM kill is in
                // the logs even if the process dies next.
                let largest = settings.in_flight.as_ref().map(|f| {
                    let list: Vec<String> = f
                        .largest(CRITICAL_IN_FLIGHT)
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    if list.is_empty() {
                        "none".to_string()
                    } else {
                        list.join("; ")
                    }
                });
                tracing::warn!(
                    target: "memory_health",
                    from = %previous, to = %pressure,
                    usage_bytes = usage, limit_bytes = limit.map(|l| l.bytes),
                    usage_ratio = ratio,
                    largest_in_flight = largest,
                    "memory pressure rose"
                );
            } else if pressure > previous {
                tracing::warn!(
                    target: "memory_health",
                    from = %previous, to = %pressure,
                    usage_bytes = usage, limit_bytes = limit.map(|l| l.bytes),
                    usage_ratio = ratio,
                    "memory pressure rose"
                );
            } else {
                tracing::info!(
                    target: "memory_health",
                    from = %previous, to = %pressure, usage_ratio = ratio,
                    "memory pressure fell"
                );
            }
        }

        if let Some(u) = usage {
            state.trend.record(at, u);
        }
        let trend = state.trend.estimate();
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
            let since = *state.leak_above_since.get_or_insert(at);
            if !state.leak_suspected && at.saturating_duration_since(since) >= settings.leak_after {
                state.leak_suspected = true;
                tracing::warn!(
                    target: "memory_health",
                    bytes_per_hour = trend.bytes_per_hour,
                    threshold_bytes_per_hour = bound,
                    window_seconds = trend.span.as_secs_f64(),
                    "memory keeps growing: possible leak"
                );
            }
        } else {
            state.leak_above_since = None;
            if state.leak_suspected {
                state.leak_suspected = false;
                tracing::info!(
                    target: "memory_health",
                    bytes_per_hour = trend.bytes_per_hour,
                    "memory growth back below the leak threshold"
                );
            }
        }

        let first = *state.first_sample_at.get_or_insert(at);
        let reclaim = if !settings.cleanup {
            None
        } else if pressure == Pressure::Critical && previous != Pressure::Critical {
            Some(ReclaimTrigger::Critical)
        } else if settings.reclaim_on_warning
            && pressure == Pressure::Warning
            && previous == Pressure::Normal
        {
            Some(ReclaimTrigger::Warning)
        } else if at.saturating_duration_since(state.last_reclaim_at.unwrap_or(first))
            >= settings.reclaim_interval
        {
            Some(ReclaimTrigger::Scheduled)
        } else {
            None
        };
        if reclaim.is_some() {
            state.last_reclaim_at = Some(at);
        }

        let snapshot = Arc::new(MemorySnapshot {
            taken_at: at,
            wall_time: sample.wall_time,
            pressure,
            usage_bytes: usage,
            limit,
            usage_ratio: ratio,
            process: sample.process,
            cgroup: sample.cgroup,
            allocator: sample.allocator,
            allocator_kind: sample.allocator_kind,
            trend,
            leak_suspected: state.leak_suspected,
        });
        state.snapshot = Some(Arc::clone(&snapshot));
        (snapshot, reclaim)
    }

    async fn run_reclaim(&self, trigger: ReclaimTrigger) {
        // The reclaimer counts and logs every run under its trigger, whoever asked for it.
        match self.shared.reclaimer.reclaim_for(trigger).await {
            Ok(_) => {}
            Err(e @ (ReclaimError::RateLimited { .. } | ReclaimError::Unsupported(_))) => {
                tracing::debug!(target: "memory_health", trigger = %trigger, error = %e, "reclaim skipped");
            }
            Err(e) => {
                tracing::warn!(target: "memory_health", trigger = %trigger, error = %e, "reclaim failed");
            }
        }
    }

    /// The latest snapshot, if any sample succeeded yet.
    pub fn snapshot(&self) -> Option<Arc<MemorySnapshot>> {
        self.state().snapshot.clone()
    }

    /// The current pressure level (one atomic load).
    pub fn pressure(&self) -> Pressure {
        self.shared.signal.current()
    }

    /// The signal the monitor publishes into; hand it to other layers.
    pub fn signal(&self) -> PressureSignal {
        self.shared.signal.clone()
    }

    /// The last usage ratio (one atomic load), `None` before the first sample or when unknown.
    pub fn usage_ratio(&self) -> Option<f64> {
        let ratio = f64::from_bits(self.shared.ratio_bits.load(Ordering::Relaxed));
        (!ratio.is_nan()).then_some(ratio)
    }

    /// The thresholds.
    pub fn thresholds(&self) -> Thresholds {
        self.shared.settings.thresholds
    }

    /// The sampling interval.
    pub fn interval(&self) -> Duration {
        self.shared.settings.interval
    }

    /// The configured explicit limit, if any.
    pub fn configured_limit(&self) -> Option<u64> {
        self.shared.settings.limit
    }

    /// The growth-trend window.
    pub fn trend_window(&self) -> Duration {
        self.shared.settings.trend_window
    }

    /// The governor's budget the monitor sizes, if it was given one.
    pub fn budget(&self) -> Option<&MemoryBudget> {
        self.shared.settings.budget.as_ref().map(|(b, _)| b)
    }

    /// How the budget's capacity follows the limit.
    pub fn budget_capacity(&self) -> Option<BudgetCapacity> {
        self.shared.settings.budget.as_ref().map(|(_, c)| *c)
    }

    /// The kernel memory notifications the sampling task listens to (empty before its first
    /// sample, when disabled, or where none could be registered).
    pub fn kernel_event_sources(&self) -> Vec<String> {
        self.shared
            .event_sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The reclaimer the schedule runs.
    pub fn reclaimer(&self) -> &Reclaimer {
        &self.shared.reclaimer
    }

    /// Whether the sampling task is alive and on schedule.
    pub fn liveness(&self) -> Liveness {
        let shared = &self.shared;
        let lifecycle = shared.lifecycle.load(Ordering::Acquire);
        if !matches!(lifecycle, RUNNING | DIED) {
            return Liveness::NotRunning;
        }
        let last = match shared.last_tick.load(Ordering::Acquire) {
            0 => shared.started_at.load(Ordering::Acquire),
            t => t,
        };
        let since_last_sample = Duration::from_nanos(self.now_mark().saturating_sub(last));
        if lifecycle == DIED || since_last_sample > shared.settings.stall_after {
            Liveness::Stalled { since_last_sample }
        } else {
            Liveness::Alive { since_last_sample }
        }
    }

    /// The stall timeout of [`liveness`](Self::liveness).
    pub fn stall_after(&self) -> Duration {
        self.shared.settings.stall_after
    }

    /// Totals of the monitor's reclaimer: every run, whoever asked for it (the schedule, pressure,
    /// heavy requests, the program), by trigger.
    pub fn reclaim_summary(&self) -> ReclaimSummary {
        ReclaimSummary::from(self.shared.reclaimer.stats())
    }

    /// The reclaimer's latest runs (up to 32), oldest first.
    pub fn reclaim_history(&self) -> Vec<ReclaimReport> {
        self.shared.reclaimer.history()
    }

    /// Samples taken successfully, and samples that failed.
    pub fn sample_counts(&self) -> (u64, u64) {
        (
            self.shared.samples.load(Ordering::Relaxed),
            self.shared.sample_errors.load(Ordering::Relaxed),
        )
    }

    /// Applies an allocator profile now (see [`AllocatorProfile`]).
    pub fn set_allocator_profile(
        &self,
        profile: AllocatorProfile,
    ) -> Result<ProfileReport, ProfileError> {
        profile.apply()
    }
}

/// Marks the monitor as died when its task ends by a panic.
struct TaskGuard {
    shared: Weak<Shared>,
    generation: u64,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade()
            && shared.generation.load(Ordering::Acquire) == self.generation
        {
            let end = if std::thread::panicking() {
                DIED
            } else {
                STOPPED
            };
            let _ = shared.lifecycle.compare_exchange(
                RUNNING,
                end,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }
}

async fn run(weak: Weak<Shared>, stop: Arc<Notify>, interval: Duration, generation: u64) {
    let _guard = TaskGuard {
        shared: weak.clone(),
        generation,
    };
    let mut ticker = tokio::time::interval(interval);
    // After a slow sample, wait a full interval again rather than firing a burst.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (budget, gap) = match weak.upgrade() {
        Some(shared) => (
            shared.settings.budget.as_ref().map(|(b, _)| b.clone()),
            shared.settings.resample_gap,
        ),
        None => return,
    };
    let mut last = tokio::time::Instant::now();
    let mut events = KernelEvents::default();
    loop {
        let early = tokio::select! {
            _ = ticker.tick() => false,
            _ = stop.notified() => false,
            () = moved(budget.as_ref()) => true,
            event = events.next() => {
                if let Some(event) = event {
                    tracing::debug!(target: "memory_health", source = %event.source, count = event.count, "kernel memory event");
                } else {
                    events.closed();
                }
                true
            }
        };
        if early {
            // Bounded: a burst that keeps moving the budget gets a sample per gap, no more.
            tokio::time::sleep_until(last + gap).await;
        }
        // Holding only a weak reference between ticks lets the monitor be dropped.
        let Some(shared) = weak.upgrade() else { break };
        if shared.generation.load(Ordering::Acquire) != generation {
            break;
        }
        let monitor = MemoryMonitor { shared };
        // Failures are counted and logged inside; the schedule goes on.
        let sampled = monitor.sample_now().await;
        // Liveness follows this task's own samples only: samples `/health` asks for must not
        // make a wedged task look alive.
        monitor
            .shared
            .last_tick
            .store(monitor.now_mark(), Ordering::Release);
        if let Ok(snapshot) = sampled
            && monitor.shared.settings.kernel_events
            && let Some(limit) = snapshot.limit
        {
            let t = monitor.shared.settings.thresholds;
            let thresholds = [
                (limit.bytes as f64 * t.warning()) as u64,
                (limit.bytes as f64 * t.critical()) as u64,
            ];
            if let Some(sources) = events.follow(&thresholds) {
                *monitor
                    .shared
                    .event_sources
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = sources;
            }
        }
        last = tokio::time::Instant::now();
    }
}

/// The kernel's memory notifications for the process's cgroup, registered at the thresholds of
/// the current limit once a sample has resolved it.
#[derive(Default)]
struct KernelEvents {
    events: Option<memory_probe::MemoryEvents>,
    /// Registration failed (or every source closed): the timer and the budget are all there is.
    unavailable: bool,
}

impl KernelEvents {
    async fn next(&self) -> Option<memory_probe::MemoryEvent> {
        match &self.events {
            Some(e) => e.next().await,
            None => std::future::pending().await,
        }
    }

    fn closed(&mut self) {
        self.events = None;
        self.unavailable = true;
    }

    /// Registers (again) when the thresholds changed; returns the sources now listened to.
    fn follow(&mut self, thresholds: &[u64]) -> Option<Vec<String>> {
        if self.unavailable {
            return None;
        }
        let mut wanted = thresholds.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        if let Some(e) = &self.events
            && e.thresholds() == wanted.as_slice()
        {
            return None;
        }
        let result = match &self.events {
            Some(e) => e.with_thresholds(&wanted),
            None => memory_probe::MemoryEvents::subscribe(&wanted),
        };
        match result {
            Ok(events) => {
                let sources: Vec<String> = events.sources().iter().map(|s| s.to_string()).collect();
                tracing::debug!(target: "memory_health", sources = ?sources, "listening to kernel memory events");
                self.events = Some(events);
                Some(sources)
            }
            Err(e) => {
                tracing::debug!(target: "memory_health", error = %e, "no kernel memory events: sampling on the timer and budget movements only");
                self.unavailable = true;
                Some(Vec::new())
            }
        }
    }
}

/// Resolves when the budget's usage left the marks of the last sample; never without a budget.
async fn moved(budget: Option<&MemoryBudget>) {
    match budget {
        Some(b) => b.moved().await,
        None => std::future::pending().await,
    }
}
