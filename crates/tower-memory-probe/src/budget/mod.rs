//! The process-wide memory budget: how many bytes requests may hold at once, shared by every layer.
//!
//! One number bounds everything requests hold: the interceptor's admissions and the growth it
//! measures at poll boundaries, and the request bodies the body layer buffers. The capacity
//! follows the memory limit (a monitor sets it as samples come in) or is fixed.
//!
//! Hot paths are single atomic operations: [`MemoryBudget::charge`] and
//! [`MemoryBudget::release`] are one `fetch_add`/`fetch_sub` each plus a relaxed load of a counter
//! that says whether anybody waits. Waiting (the admission queue, parked requests) takes a lock,
//! only when the budget is full.
//!
//! The files: this one holds the budget and its counters; `admission.rs` the FIFO queue of
//! reservations, `park.rs` the park of requests that grew past the capacity, `reservation.rs` the
//! RAII reservations and the per-request handle, `error.rs` the error and the statistics.

mod admission;
mod error;
mod park;
mod reservation;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::Notify;

pub use admission::Admission;
pub use error::{BudgetError, BudgetStats};
pub use park::Park;
pub use reservation::{RequestBudget, Reservation};

use admission::Waiter;
use park::ParkEntry;

/// Default capacity of [`MemoryBudget::global`] until something sets it: 256 MiB.
pub const DEFAULT_BUDGET_CAPACITY: u64 = 256 << 20;
/// Default bound of the admission queue: 1024 waiting reservations.
pub const DEFAULT_MAX_QUEUE: usize = 1024;

// The governor's defaults (tower-memory-interceptor runs it and re-exports them) live here, beside
// the budget they govern, so that tower-memory-health's configuration has them without the
// interceptor.
/// Default floor of the governor: requests predicted to hold less are admitted without a
/// reservation and never queue (64 KiB).
pub const DEFAULT_FLOOR: u64 = 64 << 10;
/// Default longest wait in the governor's admission queue (5 s).
pub const DEFAULT_QUEUE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Default time a request stays parked before the governor aborts the request furthest over its
/// reservation (500 ms).
pub const DEFAULT_PARK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// A byte budget shared by every layer that holds a clone (cloning shares it).
///
/// - **Reservations** ([`try_reserve`](Self::try_reserve), [`reserve`](Self::reserve)) are
///   granted while they fit under the capacity, first come, first served: while anyone waits,
///   newcomers queue behind them, so a large reservation is not starved by a stream of small
///   ones. The queue is bounded ([`DEFAULT_MAX_QUEUE`]) and so is each wait.
/// - **Charges** ([`charge`](Self::charge)) count memory that is already allocated (a request grew
///   between two polls): they always succeed and say whether the budget is now over capacity;
///   the caller then parks ([`poll_room`](Self::poll_room)) until memory frees.
/// - While anyone is parked, queued reservations wait: memory goes to work in flight first.
///
/// ```
/// use tower_memory_probe::MemoryBudget;
///
/// let budget = MemoryBudget::new(1024);
/// let held = budget.try_reserve(600).unwrap();
/// assert_eq!(budget.available(), 424);
/// assert!(budget.try_reserve(600).is_err());
/// drop(held);
/// assert_eq!(budget.available(), 1024);
///
/// // Memory already allocated is charged unconditionally; the answer says whether it is over.
/// assert!(!budget.charge(1000));
/// assert!(budget.charge(100));
/// budget.release(1100);
/// assert_eq!(budget.in_use(), 0);
/// ```
#[derive(Clone)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

// The counter every request writes and the limit every request reads sit on separate cache lines.
#[repr(align(64))]
struct Line<T>(T);

struct Inner {
    used: Line<AtomicU64>,
    capacity: Line<AtomicU64>,
    /// The part of `used` that admissions reserved (for reports; not used for decisions).
    reserved: AtomicU64,
    /// Queued reservations plus requests in the park (queued, or woken and still running):
    /// zero means release has nothing to wake and admission may take the fast path.
    waiting: AtomicUsize,
    max_queue: usize,
    queues: Mutex<Queues>,
    /// Movement marks for a monitor: `used` leaving `[low, high]` notifies `moved`.
    mark_low: AtomicU64,
    mark_high: AtomicU64,
    moved: Notify,
    admitted: AtomicU64,
    admitted_after_wait: AtomicU64,
    rejected: AtomicU64,
    parked: AtomicU64,
    /// Counts releases while anybody waits: a parked request that sees it move knows memory is
    /// being freed, and that waiting longer is not a deadlock.
    progress: AtomicU64,
}

#[derive(Default)]
struct Queues {
    admission: VecDeque<Arc<Waiter>>,
    /// Parked requests, oldest park first.
    parked: VecDeque<Arc<ParkEntry>>,
    /// Requests woken from the park and still running.
    running: usize,
    next_park_seq: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves plain data consistent; a panic elsewhere changes nothing.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("capacity", &self.capacity())
            .field("in_use", &self.in_use())
            .field("reserved", &self.reserved())
            .field("queued", &self.queue_len())
            .field("parked", &self.parked_len())
            .finish()
    }
}

impl MemoryBudget {
    /// A new, independent budget of `capacity` bytes with a queue of [`DEFAULT_MAX_QUEUE`].
    pub fn new(capacity: u64) -> Self {
        Self::with_max_queue(capacity, DEFAULT_MAX_QUEUE)
    }

    /// A new budget whose admission queue holds at most `max_queue` waiting reservations (0:
    /// nobody waits, a reservation that does not fit is refused at once).
    pub fn with_max_queue(capacity: u64, max_queue: usize) -> Self {
        MemoryBudget {
            inner: Arc::new(Inner {
                used: Line(AtomicU64::new(0)),
                capacity: Line(AtomicU64::new(capacity)),
                reserved: AtomicU64::new(0),
                waiting: AtomicUsize::new(0),
                max_queue,
                queues: Mutex::new(Queues::default()),
                mark_low: AtomicU64::new(0),
                mark_high: AtomicU64::new(u64::MAX),
                moved: Notify::new(),
                admitted: AtomicU64::new(0),
                admitted_after_wait: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                parked: AtomicU64::new(0),
                progress: AtomicU64::new(0),
            }),
        }
    }

    /// The process-wide default budget, [`DEFAULT_BUDGET_CAPACITY`] until a monitor or the
    /// program sets its capacity. Layers that are not given a budget share this one.
    pub fn global() -> MemoryBudget {
        static GLOBAL: OnceLock<MemoryBudget> = OnceLock::new();
        GLOBAL
            .get_or_init(|| MemoryBudget::new(DEFAULT_BUDGET_CAPACITY))
            .clone()
    }

    /// The capacity in bytes.
    #[inline]
    pub fn capacity(&self) -> u64 {
        self.inner.capacity.0.load(Relaxed)
    }

    /// Same as [`capacity`](Self::capacity).
    pub fn total(&self) -> u64 {
        self.capacity()
    }

    /// Sets the capacity (a monitor does this as the limit and the memory held outside requests
    /// change). Growing it grants waiting reservations and wakes parked requests; shrinking it
    /// takes nothing back from what is held, it only makes new growth wait.
    pub fn set_capacity(&self, bytes: u64) {
        let previous = self.inner.capacity.0.swap(bytes, Relaxed);
        if bytes > previous {
            self.inner.progress.fetch_add(1, Relaxed);
            self.wake();
        }
    }

    /// Bytes charged now: reservations plus growth beyond them.
    #[inline]
    pub fn in_use(&self) -> u64 {
        self.inner.used.0.load(Relaxed)
    }

    /// Bytes not charged now (zero when over capacity).
    pub fn available(&self) -> u64 {
        self.capacity().saturating_sub(self.in_use())
    }

    /// Whether more is charged than the capacity allows.
    #[inline]
    pub fn is_over(&self) -> bool {
        self.in_use() > self.capacity()
    }

    /// The part of [`in_use`](Self::in_use) that admissions reserved ahead of use (see
    /// [`note_reserved`](Self::note_reserved)).
    pub fn reserved(&self) -> u64 {
        self.inner.reserved.load(Relaxed)
    }

    /// Reservations waiting in the admission queue.
    pub fn queue_len(&self) -> usize {
        lock(&self.inner.queues).admission.len()
    }

    /// Requests parked until memory frees.
    pub fn parked_len(&self) -> usize {
        lock(&self.inner.queues).parked.len()
    }

    /// The admission queue's bound.
    pub fn max_queue(&self) -> usize {
        self.inner.max_queue
    }

    /// What the budget decided so far.
    pub fn stats(&self) -> BudgetStats {
        let i = &self.inner;
        BudgetStats {
            admitted: i.admitted.load(Relaxed),
            admitted_after_wait: i.admitted_after_wait.load(Relaxed),
            rejected: i.rejected.load(Relaxed),
            parked: i.parked.load(Relaxed),
        }
    }

    /// Whether `self` and `other` are handles to the same budget.
    pub fn same_as(&self, other: &MemoryBudget) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Charges `bytes` that are already allocated (one atomic addition); returns whether the
    /// budget is now over capacity. Pair every charge with a [`release`](Self::release).
    #[inline]
    pub fn charge(&self, bytes: u64) -> bool {
        let used = self
            .inner
            .used
            .0
            .fetch_add(bytes, Relaxed)
            .wrapping_add(bytes);
        self.check_marks(used);
        used > self.capacity()
    }

    /// Gives back `bytes` charged or reserved earlier (one atomic subtraction); grants waiting
    /// reservations and wakes parked requests when there is room.
    #[inline]
    pub fn release(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let used = self
            .inner
            .used
            .0
            .fetch_sub(bytes, Relaxed)
            .wrapping_sub(bytes);
        self.check_marks(used);
        if self.inner.waiting.load(Relaxed) != 0 {
            self.inner.progress.fetch_add(1, Relaxed);
            self.wake();
        }
    }

    /// A counter that moves whenever memory is given back while somebody waits (see
    /// [`Park`]): a parked request that sees no movement for a while is in a deadlock that only
    /// an abort can break.
    pub fn progress(&self) -> u64 {
        self.inner.progress.load(Relaxed)
    }

    /// Records that `delta` bytes of what is charged are (positive) or are no longer (negative)
    /// reservations made ahead of use. Informational: decisions look at the total only.
    pub fn note_reserved(&self, delta: i64) {
        if delta >= 0 {
            self.inner.reserved.fetch_add(delta as u64, Relaxed);
        } else {
            self.inner.reserved.fetch_sub(delta.unsigned_abs(), Relaxed);
        }
    }

    /// Sets the movement marks: when [`in_use`](Self::in_use) leaves `[low, high]`,
    /// [`moved`](Self::moved) resolves. A monitor sets them around the usage it just sampled.
    pub fn set_marks(&self, low: u64, high: u64) {
        self.inner.mark_low.store(low, Relaxed);
        self.inner.mark_high.store(high, Relaxed);
    }

    /// Resolves when the usage left the marks set by [`set_marks`](Self::set_marks) (or had left
    /// them since the last call).
    pub async fn moved(&self) {
        self.inner.moved.notified().await;
    }

    #[inline]
    fn check_marks(&self, used: u64) {
        let i = &self.inner;
        if used > i.mark_high.load(Relaxed) || used < i.mark_low.load(Relaxed) {
            // Disarm until the monitor sets new marks: one notification per movement.
            i.mark_low.store(0, Relaxed);
            i.mark_high.store(u64::MAX, Relaxed);
            i.moved.notify_one();
        }
    }
}
