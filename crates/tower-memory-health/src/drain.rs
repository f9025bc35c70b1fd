//! `Drain`: the switch that takes the server out of load balancing on shutdown.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Once started, `/health/ready` answers 503 so that the orchestrator stops sending new traffic
/// while requests in flight finish. Cloning shares the switch.
///
/// ```
/// use tower_memory_health::Drain;
///
/// let drain = Drain::new();
/// assert!(!drain.is_draining());
/// drain.start();
/// assert!(drain.is_draining());
/// ```
#[derive(Clone, Default)]
pub struct Drain {
    draining: Arc<AtomicBool>,
}

impl Drain {
    /// A switch that is off.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts draining; returns whether this call started it.
    pub fn start(&self) -> bool {
        let started = !self.draining.swap(true, Ordering::AcqRel);
        if started {
            tracing::info!(target: "tower_memory_health", "draining: readiness now reports 503");
        }
        started
    }

    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

impl fmt::Debug for Drain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("draining", &self.is_draining())
            .finish()
    }
}
