//! Handing freed memory back to the operating system.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

mod release;
mod report;

pub use release::{decay_allocator, purge_allocator};
pub use report::{
    RECLAIM_DURATION_METRIC, ReclaimError, ReclaimReport, ReclaimStats, ReclaimTrigger,
    TriggerStats,
};

use release::release;

use crate::process::resident_now;
use crate::{AllocatorKind, self_check};

/// Runs kept for [`Reclaimer::history`].
const HISTORY: usize = 32;

/// Releases memory the allocator holds but the program has freed, back to the OS.
///
/// - jemalloc: `arena.4096.purge` (every arena's dirty and muzzy pages);
/// - glibc: `malloc_trim(0)` (every arena, including pages in the middle of the heap);
/// - mimalloc (feature `mimalloc`): `mi_collect(true)`.
///
/// The call runs on Tokio's blocking pool, never on the caller's task. Concurrent callers share
/// one run (single-flight): whoever arrives while a run is under way gets that run's report.
/// Runs are at least `min_interval` apart (default 1 s); an earlier call gets
/// [`ReclaimError::RateLimited`]. Every run is counted under its [`ReclaimTrigger`]
/// ([`stats`](Self::stats), [`history`](Self::history)) and its duration recorded in the
/// [`RECLAIM_DURATION_METRIC`] histogram. Cloning shares the state.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tower_memory_probe::Reclaimer;
///
/// let reclaimer = Reclaimer::new();
/// drop(vec![1u8; 64 << 20]);
/// match reclaimer.reclaim().await {
///     Ok(report) => println!("released {} bytes in {:?}", report.released_bytes(), report.duration),
///     Err(e) => println!("nothing released: {e}"),
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Reclaimer {
    inner: Arc<Inner>,
}

struct Inner {
    min_interval: Duration,
    allocator: AllocatorKind,
    state: Mutex<State>,
    runs: AtomicU64,
    failures: AtomicU64,
    released: AtomicU64,
}

/// Per-trigger totals and the latest runs, updated once per run (never on a request's path).
#[derive(Default)]
struct Tally {
    by_trigger: [TriggerStats; ReclaimTrigger::ALL.len()],
    history: VecDeque<ReclaimReport>,
}

type Outcome = Option<Result<ReclaimReport, ReclaimError>>;

#[derive(Default)]
struct State {
    running: Option<watch::Receiver<Outcome>>,
    last_start: Option<Instant>,
    last: Option<ReclaimReport>,
    tally: Tally,
    /// A background run was asked for while one ran or the interval had not passed: one more
    /// runs as soon as allowed, so the memory of the last heavy request of a burst goes back too.
    trailing: bool,
}

/// Builder for [`Reclaimer`].
#[derive(Debug, Clone)]
pub struct ReclaimerBuilder {
    min_interval: Duration,
    allocator: Option<AllocatorKind>,
}

impl ReclaimerBuilder {
    /// Minimum time between the starts of two runs (default 1 s).
    #[must_use]
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    /// The reclaimer.
    pub fn build(self) -> Reclaimer {
        Reclaimer {
            inner: Arc::new(Inner {
                min_interval: self.min_interval,
                allocator: self.allocator.unwrap_or_else(|| self_check().allocator),
                state: Mutex::new(State::default()),
                runs: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                released: AtomicU64::new(0),
            }),
        }
    }
}

impl Default for Reclaimer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Reclaimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reclaimer")
            .field("allocator", &self.inner.allocator)
            .field("min_interval", &self.inner.min_interval)
            .field("runs", &self.runs())
            .finish()
    }
}

impl Reclaimer {
    /// A reclaimer for the allocator [`self_check`] detects, with the default interval.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder with the defaults.
    pub fn builder() -> ReclaimerBuilder {
        ReclaimerBuilder {
            min_interval: Duration::from_secs(1),
            allocator: None,
        }
    }

    /// The allocator this reclaimer releases memory from.
    pub fn allocator(&self) -> AllocatorKind {
        self.inner.allocator
    }

    /// Completed runs.
    pub fn runs(&self) -> u64 {
        self.inner.runs.load(Ordering::Relaxed)
    }

    /// Runs that failed.
    pub fn failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    /// Resident bytes released over all runs.
    pub fn released_bytes_total(&self) -> u64 {
        self.inner.released.load(Ordering::Relaxed)
    }

    /// The report of the last completed run.
    pub fn last(&self) -> Option<ReclaimReport> {
        self.inner
            .state
            .lock()
            .expect("reclaimer state")
            .last
            .clone()
    }

    /// Runs a reclaim (or joins the one under way) and waits for its report; counted under
    /// [`ReclaimTrigger::Api`].
    pub async fn reclaim(&self) -> Result<ReclaimReport, ReclaimError> {
        self.reclaim_for(ReclaimTrigger::Api).await
    }

    /// Runs a reclaim for `trigger` (or joins the one under way) and waits for its report.
    pub async fn reclaim_for(
        &self,
        trigger: ReclaimTrigger,
    ) -> Result<ReclaimReport, ReclaimError> {
        let mut rx = self.start(trigger)?;
        loop {
            if let Some(outcome) = rx.borrow_and_update().clone() {
                return outcome;
            }
            if rx.changed().await.is_err() {
                // The run's task ended without a result: the runtime is shutting down.
                return Err(ReclaimError::Failed("reclaim task was cancelled".into()));
            }
        }
    }

    /// Starts a run in the background unless one is under way or the interval has not passed;
    /// in those cases one trailing run is scheduled for as soon as the interval allows (several
    /// such calls share it), so that what the last of a burst of heavy requests freed goes back
    /// too. Returns whether a new run started now. Never blocks; needs a Tokio runtime.
    pub fn reclaim_in_background(&self, trigger: ReclaimTrigger) -> bool {
        let mut state = self.inner.state.lock().expect("reclaimer state");
        let wait = match (&state.running, state.last_start) {
            (Some(_), _) => Some(self.inner.min_interval),
            (None, Some(last)) if last.elapsed() < self.inner.min_interval => {
                Some(self.inner.min_interval - last.elapsed())
            }
            _ => None,
        };
        let Some(wait) = wait else {
            drop(state);
            return self.start(trigger).is_ok();
        };
        if state.trailing {
            return false;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        state.trailing = true;
        drop(state);
        let this = self.clone();
        handle.spawn(async move {
            tokio::time::sleep(wait).await;
            loop {
                let started = {
                    let mut state = this.inner.state.lock().expect("reclaimer state");
                    let due = state.running.is_none()
                        && state
                            .last_start
                            .is_none_or(|l| l.elapsed() >= this.inner.min_interval);
                    if due {
                        state.trailing = false;
                    }
                    due
                };
                if started {
                    let _ = this.start(trigger);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        false
    }

    /// Per-trigger totals and the latest run.
    pub fn stats(&self) -> ReclaimStats {
        let state = self.inner.state.lock().expect("reclaimer state");
        ReclaimStats {
            by_trigger: ReclaimTrigger::ALL
                .iter()
                .map(|&t| (t, state.tally.by_trigger[t.index()]))
                .collect(),
            last: state.last.clone(),
        }
    }

    /// The latest completed runs (up to 32), oldest first.
    pub fn history(&self) -> Vec<ReclaimReport> {
        let state = self.inner.state.lock().expect("reclaimer state");
        state.tally.history.iter().cloned().collect()
    }

    /// Joins the run under way, or starts one for `trigger`.
    fn start(&self, trigger: ReclaimTrigger) -> Result<watch::Receiver<Outcome>, ReclaimError> {
        let mut state = self.inner.state.lock().expect("reclaimer state");
        if let Some(rx) = &state.running {
            return Ok(rx.clone());
        }
        if let Some(last_start) = state.last_start {
            let since = last_start.elapsed();
            if since < self.inner.min_interval {
                return Err(ReclaimError::RateLimited {
                    retry_after: self.inner.min_interval - since,
                });
            }
        }
        if self.inner.allocator == AllocatorKind::Unknown
            || (self.inner.allocator == AllocatorKind::Mimalloc && !cfg!(feature = "mimalloc"))
        {
            return Err(ReclaimError::Unsupported(self.inner.allocator));
        }
        let handle = tokio::runtime::Handle::try_current().map_err(|_| ReclaimError::NoRuntime)?;
        let (tx, rx) = watch::channel(None);
        state.running = Some(rx.clone());
        state.last_start = Some(Instant::now());
        drop(state);

        // The run lives in its own task so that a caller dropping its future cannot leave the
        // state marked as running forever.
        let inner = Arc::clone(&self.inner);
        handle.spawn(async move {
            let allocator = inner.allocator;
            let outcome = match tokio::task::spawn_blocking(move || run_blocking(allocator, trigger))
                .await
            {
                Ok(result) => result,
                Err(e) => Err(ReclaimError::Failed(format!("reclaim thread failed: {e}"))),
            };
            let mut state = inner.state.lock().expect("reclaimer state");
            state.running = None;
            let counts = &mut state.tally.by_trigger[trigger.index()];
            match &outcome {
                Ok(report) => {
                    inner.runs.fetch_add(1, Ordering::Relaxed);
                    inner
                        .released
                        .fetch_add(report.released_bytes(), Ordering::Relaxed);
                    counts.runs += 1;
                    counts.released_bytes += report.released_bytes();
                    counts.duration += report.duration;
                    if state.tally.history.len() == HISTORY {
                        state.tally.history.pop_front();
                    }
                    state.tally.history.push_back(report.clone());
                    state.last = Some(report.clone());
                    metrics::histogram!(report::RECLAIM_DURATION.get(), "trigger" => trigger.as_str())
                        .record(report.duration.as_secs_f64());
                    tracing::info!(
                        target: "tower_memory_probe",
                        trigger = trigger.as_str(),
                        allocator = %report.allocator,
                        released_bytes = report.released_bytes(),
                        resident_before = report.resident_before,
                        resident_after = report.resident_after,
                        duration_ms = report.duration.as_secs_f64() * 1e3,
                        "memory reclaimed"
                    );
                }
                Err(e) => {
                    inner.failures.fetch_add(1, Ordering::Relaxed);
                    counts.failures += 1;
                    tracing::warn!(target: "tower_memory_probe", trigger = trigger.as_str(), error = %e, "memory reclaim failed");
                }
            }
            drop(state);
            let _ = tx.send(Some(outcome));
        });
        Ok(rx)
    }
}

/// One release call, on the current (blocking) thread.
fn run_blocking(
    allocator: AllocatorKind,
    trigger: ReclaimTrigger,
) -> Result<ReclaimReport, ReclaimError> {
    let resident_before = resident_now().unwrap_or(0);
    let start = Instant::now();
    release(allocator).map_err(|e| ReclaimError::Failed(e.to_string()))?;
    let duration = start.elapsed();
    Ok(ReclaimReport {
        trigger,
        allocator,
        resident_before,
        resident_after: resident_now().unwrap_or(0),
        duration,
        finished_at: SystemTime::now(),
    })
}
