//! `MemoryMonitor`: samples memory on a schedule, publishes pressure, tracks the growth trend,
//! schedules reclaim.
//!
//! This file holds the monitor and its accessors; `builder.rs` its settings, `task.rs` the
//! sampling task, `lifecycle.rs` the task's states. A sample goes through `observe.rs`, which
//! calls one file per concern in turn: `pressure.rs` (usage against the limit, the level),
//! `emit.rs` (the pressure-change counter and log events), `leak.rs` (trend and leak check),
//! `schedule.rs` (reclaim) and `snapshot.rs` (what the sample showed).

mod builder;
mod emit;
mod leak;
mod lifecycle;
mod observe;
mod pressure;
mod schedule;
mod snapshot;
mod task;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tower_memory_probe::{MemoryBudget, Pressure, PressureSignal, ReclaimReport, Reclaimer};

pub use builder::MemoryMonitorBuilder;
pub use leak::LeakThreshold;
pub use lifecycle::Liveness;
pub use snapshot::MemorySnapshot;

use builder::Settings;
use leak::LeakCheck;
use lifecycle::{AtomicLifecycle, Lifecycle};
use schedule::ReclaimSchedule;

use crate::StartError;
use crate::allocator::{AllocatorProfile, ProfileError, ProfileReport};
use crate::budget::BudgetCapacity;
use crate::reclaim::ReclaimSummary;
use crate::sample::{SampleError, SampleSource};
use crate::thresholds::Thresholds;
use crate::trend::GrowthTrend;

/// What the monitor's clones share: the settings, the published figures, the task's lifecycle.
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
    lifecycle: AtomicLifecycle,
    generation: AtomicU64,
    stop: Arc<Notify>,
    samples: AtomicU64,
    sample_errors: AtomicU64,
    /// The kernel event sources the task listens to.
    event_sources: Mutex<Vec<String>>,
}

/// What one sample leaves for the next (behind `Shared::state`).
struct State {
    pressure: Pressure,
    trend: GrowthTrend,
    leak: LeakCheck,
    schedule: ReclaimSchedule,
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
/// use tower_memory_health::MemoryMonitor;
///
/// let monitor = MemoryMonitor::builder()
///     .check_interval(Duration::from_secs(10))
///     .warning_threshold(0.7)
///     .critical_threshold(0.9)
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
        if shared.lifecycle.swap(Lifecycle::Running, Ordering::AcqRel) == Lifecycle::Running {
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
            tracing::warn!(target: "tower_memory_health", profile = %profile, error = %e, "allocator profile not applied");
        }
        let weak = Arc::downgrade(shared);
        let stop = Arc::clone(&shared.stop);
        let interval = shared.settings.interval;
        runtime.spawn(task::run(weak, stop, interval, generation));
        Ok(())
    }

    /// Stops the sampling task (it finishes a sample under way first).
    pub fn stop(&self) {
        let shared = &self.shared;
        if shared
            .lifecycle
            .compare_exchange(
                Lifecycle::Running,
                Lifecycle::Stopped,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
            || shared
                .lifecycle
                .compare_exchange(
                    Lifecycle::Died,
                    Lifecycle::Stopped,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            shared.generation.fetch_add(1, Ordering::AcqRel);
            shared.stop.notify_waiters();
        }
    }

    /// Whether the sampling task is meant to be running (it may have stalled: see
    /// [`liveness`](Self::liveness)).
    pub fn is_running(&self) -> bool {
        self.shared.lifecycle.load(Ordering::Acquire).is_running()
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
                tracing::warn!(target: "tower_memory_health", error = %e, "memory sample failed");
                return Err(e);
            }
        };
        self.shared.samples.fetch_add(1, Ordering::Relaxed);
        let (snapshot, reclaim) = self.observe(sample);
        self.shared
            .last_sampled
            .store(self.now_mark(), Ordering::Release);
        if let Some(reason) = reclaim {
            schedule::run_reclaim(&self.shared.reclaimer, reason).await;
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

    /// Whether the standard process gauges are recorded (see
    /// [`MemoryMonitorBuilder::process_metrics`]).
    pub fn process_metrics(&self) -> bool {
        self.shared.settings.process_metrics
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
        if !lifecycle.is_running() {
            return Liveness::NotRunning;
        }
        let last = match shared.last_tick.load(Ordering::Acquire) {
            0 => shared.started_at.load(Ordering::Acquire),
            t => t,
        };
        let since_last_sample = Duration::from_nanos(self.now_mark().saturating_sub(last));
        if lifecycle == Lifecycle::Died || since_last_sample > shared.settings.stall_after {
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
