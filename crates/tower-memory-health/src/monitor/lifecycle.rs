//! The sampling task's lifecycle (stored in an atomic, read through [`Lifecycle`]) and what
//! `/health/live` makes of it.

use std::sync::Weak;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use super::Shared;

/// Where the sampling task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Lifecycle {
    /// Never started.
    Idle = 0,
    /// Started and meant to be sampling.
    Running = 1,
    /// Stopped on purpose (or its task ended without a panic).
    Stopped = 2,
    /// Its task ended by a panic while it was meant to run.
    Died = 3,
}

impl Lifecycle {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Lifecycle::Idle,
            1 => Lifecycle::Running,
            2 => Lifecycle::Stopped,
            3 => Lifecycle::Died,
            _ => unreachable!("only Lifecycle values are stored"),
        }
    }

    /// Whether the task is meant to be running (it may have died: see [`Liveness`]).
    pub(super) fn is_running(self) -> bool {
        matches!(self, Lifecycle::Running | Lifecycle::Died)
    }
}

/// A [`Lifecycle`] in an atomic: the one place that converts it to and from `u8`.
#[derive(Debug)]
pub(super) struct AtomicLifecycle(AtomicU8);

impl AtomicLifecycle {
    pub(super) fn new(value: Lifecycle) -> Self {
        Self(AtomicU8::new(value as u8))
    }

    pub(super) fn load(&self, order: Ordering) -> Lifecycle {
        Lifecycle::from_u8(self.0.load(order))
    }

    pub(super) fn swap(&self, value: Lifecycle, order: Ordering) -> Lifecycle {
        Lifecycle::from_u8(self.0.swap(value as u8, order))
    }

    pub(super) fn compare_exchange(
        &self,
        current: Lifecycle,
        new: Lifecycle,
        success: Ordering,
        failure: Ordering,
    ) -> Result<Lifecycle, Lifecycle> {
        self.0
            .compare_exchange(current as u8, new as u8, success, failure)
            .map(Lifecycle::from_u8)
            .map_err(Lifecycle::from_u8)
    }
}

/// Whether the monitor task is doing its job, for `/health/live`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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

/// Marks the monitor as died when its task ends by a panic.
pub(super) struct TaskGuard {
    pub(super) shared: Weak<Shared>,
    pub(super) generation: u64,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade()
            && shared.generation.load(Ordering::Acquire) == self.generation
        {
            let end = if std::thread::panicking() {
                Lifecycle::Died
            } else {
                Lifecycle::Stopped
            };
            let _ = shared.lifecycle.compare_exchange(
                Lifecycle::Running,
                end,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }
}
