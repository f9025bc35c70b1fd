//! Memory pressure level and the signal that carries it to the layers.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::watch;

/// How close the process is to its memory limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum Pressure {
    /// Below the warning threshold.
    #[default]
    Normal = 0,
    /// Past the warning threshold: spend less (cheaper compression, smaller windows).
    Warning = 1,
    /// Past the critical threshold: refuse new work, release memory.
    Critical = 2,
}

impl Pressure {
    /// 0, 1 or 2, as exported in the `memory_pressure_level` gauge.
    pub fn level(self) -> u8 {
        self as u8
    }

    /// The inverse of [`Pressure::level`]; anything above 2 is `Critical`.
    pub fn from_level(level: u8) -> Pressure {
        match level {
            0 => Pressure::Normal,
            1 => Pressure::Warning,
            _ => Pressure::Critical,
        }
    }

    /// `"normal"`, `"warning"` or `"critical"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Pressure::Normal => "normal",
            Pressure::Warning => "warning",
            Pressure::Critical => "critical",
        }
    }
}

impl fmt::Display for Pressure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The current [`Pressure`], shared between whoever measures it and the layers that act on it.
///
/// Cloning is cheap (one `Arc`). [`current`](Self::current) is a single atomic load, so a layer
/// can read it on every request; [`subscribe`](Self::subscribe) gives a `watch` receiver for tasks
/// that wait for changes.
///
/// ```
/// use tower_memory_probe::{Pressure, PressureSignal};
///
/// let signal = PressureSignal::new();
/// let reader = signal.clone();
/// assert_eq!(reader.current(), Pressure::Normal);
/// assert!(signal.set(Pressure::Critical));
/// assert_eq!(reader.current(), Pressure::Critical);
/// ```
#[derive(Clone)]
pub struct PressureSignal {
    shared: Arc<Shared>,
}

struct Shared {
    level: AtomicU8,
    tx: watch::Sender<Pressure>,
}

impl PressureSignal {
    /// A signal at `Normal`.
    pub fn new() -> Self {
        let (tx, _) = watch::channel(Pressure::Normal);
        Self {
            shared: Arc::new(Shared {
                level: AtomicU8::new(Pressure::Normal.level()),
                tx,
            }),
        }
    }

    /// The current level: one relaxed atomic load, no lock.
    #[inline]
    pub fn current(&self) -> Pressure {
        Pressure::from_level(self.shared.level.load(Ordering::Relaxed))
    }

    /// Publishes `level`; returns whether it differs from the previous one. Subscribers are woken
    /// only on a change.
    pub fn set(&self, level: Pressure) -> bool {
        let previous = self.shared.level.swap(level.level(), Ordering::Relaxed);
        if previous != level.level() {
            self.shared.tx.send_replace(level);
            true
        } else {
            false
        }
    }

    /// A receiver that sees every change of level.
    pub fn subscribe(&self) -> watch::Receiver<Pressure> {
        self.shared.tx.subscribe()
    }
}

impl Default for PressureSignal {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for PressureSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PressureSignal")
            .field("current", &self.current())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip_and_order() {
        for p in [Pressure::Normal, Pressure::Warning, Pressure::Critical] {
            assert_eq!(Pressure::from_level(p.level()), p);
        }
        assert!(Pressure::Normal < Pressure::Warning && Pressure::Warning < Pressure::Critical);
        assert_eq!(Pressure::from_level(9), Pressure::Critical);
        assert_eq!(Pressure::Warning.to_string(), "warning");
    }

    #[tokio::test]
    async fn clones_share_the_level_and_subscribers_see_changes_only() {
        let signal = PressureSignal::new();
        let reader = signal.clone();
        let mut rx = reader.subscribe();
        assert!(!signal.set(Pressure::Normal));
        assert!(!rx.has_changed().unwrap());
        assert!(signal.set(Pressure::Warning));
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow_and_update(), Pressure::Warning);
        assert_eq!(reader.current(), Pressure::Warning);
        assert!(signal.set(Pressure::Critical));
        assert_eq!(reader.current(), Pressure::Critical);
        rx.changed().await.unwrap();
        assert_eq!(*rx.borrow(), Pressure::Critical);
    }
}
