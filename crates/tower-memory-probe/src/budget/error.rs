//! Why a reservation failed, and what the budget decided so far.

use std::time::Duration;

/// Why bytes could not be reserved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    /// Waiting cannot help: the reservation is larger than the whole budget.
    #[error("{requested} bytes exceed the whole memory budget of {total} bytes")]
    LargerThanBudget {
        /// Bytes asked for.
        requested: u64,
        /// The budget's capacity.
        total: u64,
    },
    /// The budget stayed full for the whole wait.
    #[error("memory budget exhausted: {requested} bytes not available within {waited:?}")]
    Exhausted {
        /// Bytes asked for.
        requested: u64,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The admission queue was full: the caller was refused without waiting.
    #[error("memory budget queue full: {max} reservations already waiting")]
    QueueFull {
        /// Bytes asked for.
        requested: u64,
        /// The queue's bound.
        max: usize,
    },
}

/// Counters of what the budget decided since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BudgetStats {
    /// Reservations granted at once.
    pub admitted: u64,
    /// Reservations granted after waiting in the queue.
    pub admitted_after_wait: u64,
    /// Reservations refused: queue full or the wait ran out.
    pub rejected: u64,
    /// Times a request was parked because the budget was over capacity.
    pub parked: u64,
}
