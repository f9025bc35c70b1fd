//! The sampling task: samples on the timer, on budget movements and on the kernel's memory
//! notifications, and follows the thresholds of the current limit with those notifications.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tower_memory_probe::MemoryBudget;

use super::lifecycle::TaskGuard;
use super::{MemoryMonitor, Shared};

pub(super) async fn run(
    weak: Weak<Shared>,
    stop: Arc<Notify>,
    interval: Duration,
    generation: u64,
) {
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
                    tracing::debug!(target: "tower_memory_health", source = %event.source, count = event.count, "kernel memory event");
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
    events: Option<tower_memory_probe::MemoryEvents>,
    /// Registration failed (or every source closed): the timer and the budget are all there is.
    unavailable: bool,
}

impl KernelEvents {
    async fn next(&self) -> Option<tower_memory_probe::MemoryEvent> {
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
            None => tower_memory_probe::MemoryEvents::subscribe(&wanted),
        };
        match result {
            Ok(events) => {
                let sources: Vec<String> = events.sources().iter().map(|s| s.to_string()).collect();
                tracing::debug!(target: "tower_memory_health", sources = ?sources, "listening to kernel memory events");
                self.events = Some(events);
                Some(sources)
            }
            Err(e) => {
                tracing::debug!(target: "tower_memory_health", error = %e, "no kernel memory events: sampling on the timer and budget movements only");
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
