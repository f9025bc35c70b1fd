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

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// Default capacity of [`MemoryBudget::global`] until something sets it: 256 MiB.
pub const DEFAULT_BUDGET_CAPACITY: u64 = 256 << 20;
/// Default bound of the admission queue: 1024 waiting reservations.
pub const DEFAULT_MAX_QUEUE: usize = 1024;

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
/// use memory_probe::MemoryBudget;
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

struct Waiter {
    bytes: u64,
    /// Set, with the bytes charged, when the waiter is granted (under the queue lock).
    granted: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

struct ParkEntry {
    seq: u64,
    /// Bytes the request holds in the budget: roughly the room it needs to make progress (it
    /// grew to this much, it will likely grow as much again before it ends).
    claim: AtomicU64,
    state: AtomicU8,
    waker: Mutex<Option<Waker>>,
}

/// In the park queue, waiting for room.
const QUEUED: u8 = 0;
/// Woken from the park, running: it has the right of way until it parks again or ends.
const RUNNING: u8 = 1;

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

    /// Charges `bytes` if they fit now and nobody is queued or parked ahead; returns whether it
    /// did. `bytes` is counted as reserved (see [`note_reserved`](Self::note_reserved)).
    #[inline]
    pub fn try_admit(&self, bytes: u64) -> bool {
        let i = &self.inner;
        if i.waiting.load(Relaxed) != 0 {
            return false;
        }
        let used = i.used.0.fetch_add(bytes, Relaxed).wrapping_add(bytes);
        if used > self.capacity() {
            // Undo; a waiter that queued meanwhile is woken by the release.
            self.release(bytes);
            return false;
        }
        self.check_marks(used);
        i.reserved.fetch_add(bytes, Relaxed);
        i.admitted.fetch_add(1, Relaxed);
        true
    }

    /// Charges `bytes` as a reservation, waiting in the FIFO queue up to `wait` for room. The
    /// future fails with [`BudgetError::QueueFull`] at once when the queue is full and with
    /// [`BudgetError::Exhausted`] when the wait runs out. Dropping it gives back whatever it was
    /// granted. Needs a Tokio runtime with the time driver when it has to wait.
    ///
    /// A reservation larger than the capacity waits until the budget is empty enough, like any
    /// other; use [`reserve`](Self::reserve) to refuse those at once.
    pub fn admit(&self, bytes: u64, wait: Duration) -> Admission {
        if self.try_admit(bytes) {
            return Admission {
                budget: self.clone(),
                state: AdmissionState::Done,
                bytes,
                wait,
            };
        }
        let mut queues = lock(&self.inner.queues);
        // Re-check under the lock: room may have freed before the queue was ours.
        if queues.admission.is_empty()
            && queues.parked.is_empty()
            && queues.running == 0
            && self.fits_locked(bytes)
        {
            drop(queues);
            self.inner.admitted.fetch_add(1, Relaxed);
            return Admission {
                budget: self.clone(),
                state: AdmissionState::Done,
                bytes,
                wait,
            };
        }
        if queues.admission.len() >= self.inner.max_queue {
            drop(queues);
            self.inner.rejected.fetch_add(1, Relaxed);
            return Admission {
                budget: self.clone(),
                state: AdmissionState::Refused(BudgetError::QueueFull {
                    requested: bytes,
                    max: self.inner.max_queue,
                }),
                bytes,
                wait,
            };
        }
        let waiter = Arc::new(Waiter {
            bytes,
            granted: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        queues.admission.push_back(Arc::clone(&waiter));
        self.inner.waiting.fetch_add(1, Relaxed);
        drop(queues);
        Admission {
            budget: self.clone(),
            state: AdmissionState::Waiting {
                waiter,
                deadline: None,
            },
            bytes,
            wait,
        }
    }

    /// Charges `bytes` as reserved when they fit (under the queue lock, FIFO already checked).
    fn fits_locked(&self, bytes: u64) -> bool {
        let i = &self.inner;
        let used = i.used.0.fetch_add(bytes, Relaxed).wrapping_add(bytes);
        if used > self.capacity() && used != bytes {
            i.used.0.fetch_sub(bytes, Relaxed);
            return false;
        }
        // Alone in an empty budget a reservation is granted whatever its size: it can only run
        // alone, and it would otherwise wait forever.
        self.check_marks(used);
        i.reserved.fetch_add(bytes, Relaxed);
        true
    }

    /// Reserves `bytes` now as a [`Reservation`], or fails without waiting (also while others
    /// wait: first come, first served).
    pub fn try_reserve(&self, bytes: u64) -> Result<Reservation, BudgetError> {
        self.check_size(bytes)?;
        if self.try_admit(bytes) {
            Ok(Reservation::new(self.clone(), bytes, None))
        } else {
            Err(BudgetError::Exhausted {
                requested: bytes,
                waited: Duration::ZERO,
            })
        }
    }

    /// Reserves `bytes` as a [`Reservation`], waiting up to `wait` in the queue. Fails at once
    /// with [`BudgetError::LargerThanBudget`] when `bytes` exceeds the whole capacity.
    pub async fn reserve(&self, bytes: u64, wait: Duration) -> Result<Reservation, BudgetError> {
        self.check_size(bytes)?;
        let mut admission = self.admit(bytes, wait);
        (&mut admission).await?;
        Ok(admission.into_reservation())
    }

    fn check_size(&self, bytes: u64) -> Result<(), BudgetError> {
        let total = self.capacity();
        if bytes > total {
            return Err(BudgetError::LargerThanBudget {
                requested: bytes,
                total,
            });
        }
        Ok(())
    }

    /// Whether a request that grew past the capacity may go on. `Ready` when the budget is not
    /// over capacity and the request is not waiting its turn in the park; otherwise it is parked
    /// (its waker kept) and `Pending`.
    ///
    /// When memory frees, parked requests are woken oldest first, each claiming about as much
    /// room as it already holds (it grew to that, it will likely grow as much again): as many as
    /// the room covers, and always one when nobody woken from the park is still running. A woken
    /// request has the right of way until it parks again or ends, so that memory concentrates on
    /// a few requests that can finish instead of being spread over many that cannot.
    ///
    /// `claim` is what the request holds in the budget now. Dropping the [`Park`] leaves the park.
    pub fn poll_room(&self, park: &mut Park, claim: u64, cx: &mut Context<'_>) -> Poll<()> {
        let queued = park
            .entry
            .as_ref()
            .is_some_and(|e| e.state.load(Relaxed) == QUEUED);
        if !queued && !self.is_over() {
            return Poll::Ready(());
        }
        let mut queues = lock(&self.inner.queues);
        let entry = match &park.entry {
            Some(entry) => Arc::clone(entry),
            None => {
                if !self.is_over() {
                    return Poll::Ready(());
                }
                let seq = queues.next_park_seq;
                queues.next_park_seq += 1;
                self.inner.parked.fetch_add(1, Relaxed);
                let entry = Arc::new(ParkEntry {
                    seq,
                    claim: AtomicU64::new(claim),
                    state: AtomicU8::new(RUNNING),
                    waker: Mutex::new(None),
                });
                // Counted as running until queued just below, like a request parked again; and
                // as waiting until it leaves the park, queued or running (both hold back
                // admissions, both need a wake when memory frees).
                queues.running += 1;
                self.inner.waiting.fetch_add(1, Relaxed);
                park.entry = Some(Arc::clone(&entry));
                park.budget = Some(self.clone());
                entry
            }
        };
        entry.claim.store(claim.max(1), Relaxed);
        *lock(&entry.waker) = Some(cx.waker().clone());
        match entry.state.load(Relaxed) {
            QUEUED => Poll::Pending,
            _ if !self.is_over() => Poll::Ready(()),
            _ => {
                // Over again: back in line at its original place (oldest first).
                entry.state.store(QUEUED, Relaxed);
                queues.running -= 1;
                let at = queues
                    .parked
                    .iter()
                    .rposition(|e| e.seq < entry.seq)
                    .map_or(0, |i| i + 1);
                queues.parked.insert(at, entry);
                Poll::Pending
            }
        }
    }

    /// Takes a request out of the park for good (it ended, or was aborted).
    fn leave_park(&self, entry: &Arc<ParkEntry>) {
        {
            let mut queues = lock(&self.inner.queues);
            match entry.state.load(Relaxed) {
                QUEUED => {
                    if let Some(at) = queues.parked.iter().position(|e| Arc::ptr_eq(e, entry)) {
                        queues.parked.remove(at);
                    }
                }
                _ => queues.running -= 1,
            }
            self.inner.waiting.fetch_sub(1, Relaxed);
            entry.state.store(u8::MAX, Relaxed);
        }
        // Whoever was held back behind it (parked or queued) may go on now.
        if self.inner.waiting.load(Relaxed) != 0 {
            self.inner.progress.fetch_add(1, Relaxed);
            self.wake();
        }
    }

    /// Grants queued reservations and wakes parked requests while there is room.
    fn wake(&self) {
        let mut wakers = Vec::new();
        {
            let mut queues = lock(&self.inner.queues);
            let capacity = self.capacity();
            let mut room = capacity.saturating_sub(self.in_use());
            // Parked requests hold memory already: they go first, oldest first.
            while room > 0 {
                let Some(front) = queues.parked.front() else {
                    break;
                };
                let claim = front.claim.load(Relaxed);
                if claim > room && queues.running > 0 {
                    break;
                }
                let entry = queues.parked.pop_front().expect("front exists");
                entry.state.store(RUNNING, Relaxed);
                queues.running += 1;
                room = room.saturating_sub(claim);
                if let Some(w) = lock(&entry.waker).take() {
                    wakers.push(w);
                }
            }
            // New work waits while work in flight is short of memory.
            if queues.parked.is_empty() && queues.running == 0 {
                while let Some(front) = queues.admission.front() {
                    if !self.fits_locked(front.bytes) {
                        break;
                    }
                    let waiter = queues.admission.pop_front().expect("front exists");
                    self.inner.waiting.fetch_sub(1, Relaxed);
                    self.inner.admitted_after_wait.fetch_add(1, Relaxed);
                    waiter.granted.store(true, Relaxed);
                    if let Some(w) = lock(&waiter.waker).take() {
                        wakers.push(w);
                    }
                }
            }
        }
        for w in wakers {
            w.wake();
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

/// A request's place in the park of a [`MemoryBudget`] (see [`MemoryBudget::poll_room`]).
/// Empty until the request is first parked; dropping it leaves the park.
#[derive(Default)]
pub struct Park {
    entry: Option<Arc<ParkEntry>>,
    budget: Option<MemoryBudget>,
}

impl Park {
    /// An empty place.
    pub const fn new() -> Park {
        Park {
            entry: None,
            budget: None,
        }
    }

    /// Whether the request has been parked (and has not ended).
    pub fn was_parked(&self) -> bool {
        self.entry.is_some()
    }

    /// Whether it waits in the park queue now.
    pub fn is_queued(&self) -> bool {
        self.entry
            .as_ref()
            .is_some_and(|e| e.state.load(Relaxed) == QUEUED)
    }

    /// Whether it was woken from the park and runs with the right of way.
    pub fn is_running(&self) -> bool {
        self.entry
            .as_ref()
            .is_some_and(|e| e.state.load(Relaxed) == RUNNING)
    }
}

impl Drop for Park {
    fn drop(&mut self) {
        if let (Some(entry), Some(budget)) = (self.entry.take(), self.budget.take()) {
            budget.leave_park(&entry);
        }
    }
}

impl fmt::Debug for Park {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Park")
            .field("queued", &self.is_queued())
            .field("running", &self.is_running())
            .finish()
    }
}

/// A reservation waiting in (or refused by, or granted from) a [`MemoryBudget`]'s queue; see
/// [`MemoryBudget::admit`]. Resolves to `Ok(())` once the bytes are charged.
pub struct Admission {
    budget: MemoryBudget,
    state: AdmissionState,
    bytes: u64,
    wait: Duration,
}

enum AdmissionState {
    Waiting {
        waiter: Arc<Waiter>,
        deadline: Option<Pin<Box<Sleep>>>,
    },
    /// Granted and handed over (or about to be).
    Done,
    Refused(BudgetError),
    /// The error was returned.
    Finished,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            AdmissionState::Waiting { .. } => "waiting",
            AdmissionState::Done => "granted",
            AdmissionState::Refused(_) | AdmissionState::Finished => "refused",
        };
        f.debug_struct("Admission")
            .field("bytes", &self.bytes)
            .field("state", &state)
            .finish()
    }
}

impl Admission {
    /// Whether it was granted without waiting.
    pub fn is_granted(&self) -> bool {
        matches!(self.state, AdmissionState::Done)
    }

    /// The bytes asked for.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Hands the granted bytes to the caller, who now owes their [`MemoryBudget::release`].
    /// Returns 0 (and gives nothing) if the admission was not granted.
    pub fn take(mut self) -> u64 {
        if matches!(self.state, AdmissionState::Done) {
            self.state = AdmissionState::Finished;
            self.bytes
        } else {
            0
        }
    }

    fn into_reservation(self) -> Reservation {
        let budget = self.budget.clone();
        let bytes = self.take();
        Reservation::new(budget, bytes, None)
    }

    /// Leaves the queue; returns whether the waiter had been granted meanwhile (and so holds
    /// bytes).
    fn leave(&self, waiter: &Arc<Waiter>) -> bool {
        let inner = &self.budget.inner;
        let mut queues = lock(&inner.queues);
        if waiter.granted.load(Relaxed) {
            return true;
        }
        if let Some(at) = queues.admission.iter().position(|w| Arc::ptr_eq(w, waiter)) {
            queues.admission.remove(at);
            inner.waiting.fetch_sub(1, Relaxed);
        }
        false
    }
}

impl Future for Admission {
    type Output = Result<(), BudgetError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.state {
            AdmissionState::Done => Poll::Ready(Ok(())),
            AdmissionState::Finished => panic!("Admission polled after it failed"),
            AdmissionState::Refused(_) => {
                let AdmissionState::Refused(e) =
                    std::mem::replace(&mut this.state, AdmissionState::Finished)
                else {
                    unreachable!("matched above")
                };
                Poll::Ready(Err(e))
            }
            AdmissionState::Waiting { waiter, deadline } => {
                if waiter.granted.load(Relaxed) {
                    this.state = AdmissionState::Done;
                    return Poll::Ready(Ok(()));
                }
                *lock(&waiter.waker) = Some(cx.waker().clone());
                // Granted between the check and the waker: the grant's wake may have missed us.
                if waiter.granted.load(Relaxed) {
                    this.state = AdmissionState::Done;
                    return Poll::Ready(Ok(()));
                }
                let wait = this.wait;
                let sleep = deadline.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until(Instant::now() + wait))
                });
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let waiter = Arc::clone(waiter);
                if this.leave(&waiter) {
                    this.state = AdmissionState::Done;
                    return Poll::Ready(Ok(()));
                }
                this.budget.inner.rejected.fetch_add(1, Relaxed);
                this.state = AdmissionState::Finished;
                Poll::Ready(Err(BudgetError::Exhausted {
                    requested: this.bytes,
                    waited: wait,
                }))
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let granted = match &self.state {
            AdmissionState::Done => true,
            AdmissionState::Waiting { waiter, .. } => {
                let waiter = Arc::clone(waiter);
                self.leave(&waiter)
            }
            AdmissionState::Refused(_) | AdmissionState::Finished => false,
        };
        if granted {
            self.budget.note_reserved(-(self.bytes as i64));
            self.budget.release(self.bytes);
        }
    }
}

/// Bytes held in a [`MemoryBudget`]; they go back when this is dropped, whatever path the holder
/// took (normal end, error, disconnect, panic, future dropped).
#[must_use = "the bytes go back to the budget as soon as the reservation is dropped"]
pub struct Reservation {
    budget: MemoryBudget,
    bytes: u64,
    /// A request's prepaid counter that mirrors this reservation (see [`RequestBudget`]).
    prepaid: Option<Arc<AtomicU64>>,
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Reservation {
    fn new(budget: MemoryBudget, bytes: u64, prepaid: Option<Arc<AtomicU64>>) -> Self {
        if let Some(p) = &prepaid {
            p.fetch_add(bytes, Relaxed);
        }
        Reservation {
            budget,
            bytes,
            prepaid,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The budget the bytes belong to.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Adds `other`'s bytes to this reservation (both must come from the same budget).
    pub fn merge(&mut self, mut other: Reservation) {
        debug_assert!(self.budget.same_as(&other.budget));
        let n = std::mem::take(&mut other.bytes);
        if let Some(p) = &other.prepaid {
            p.fetch_sub(n, Relaxed);
        }
        if let Some(p) = &self.prepaid {
            p.fetch_add(n, Relaxed);
        }
        self.bytes += n;
    }

    /// Gives `bytes` back early (at most what is held).
    pub fn release(&mut self, bytes: u64) {
        let n = bytes.min(self.bytes);
        if n == 0 {
            return;
        }
        self.bytes -= n;
        if let Some(p) = &self.prepaid {
            p.fetch_sub(n, Relaxed);
        }
        self.budget.note_reserved(-(n as i64));
        self.budget.release(n);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let n = self.bytes;
        self.release(n);
    }
}

/// One request's handle on the budget, placed in the request extensions by the layer that
/// accounts for the request's memory (the interceptor), and used by layers that reserve memory on
/// the request's behalf (the body layer buffering a body).
///
/// Reservations taken through it are *prepaid*: the accounting layer, which measures every byte
/// the request allocates, subtracts them from what it charges, so buffered bytes are counted
/// once, not twice.
#[derive(Clone)]
pub struct RequestBudget {
    budget: MemoryBudget,
    prepaid: Arc<AtomicU64>,
}

impl fmt::Debug for RequestBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBudget")
            .field("prepaid", &self.prepaid())
            .finish()
    }
}

impl RequestBudget {
    /// A handle for one request on `budget`.
    pub fn new(budget: MemoryBudget) -> Self {
        RequestBudget {
            budget,
            prepaid: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The shared budget.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Bytes reserved through this handle and still held.
    #[inline]
    pub fn prepaid(&self) -> u64 {
        self.prepaid.load(Relaxed)
    }

    /// Like [`MemoryBudget::try_reserve`], prepaid for this request.
    pub fn try_reserve(&self, bytes: u64) -> Result<Reservation, BudgetError> {
        let r = self.budget.try_reserve(bytes)?;
        Ok(self.prepay(r))
    }

    /// Like [`MemoryBudget::reserve`], prepaid for this request.
    pub async fn reserve(&self, bytes: u64, wait: Duration) -> Result<Reservation, BudgetError> {
        let r = self.budget.reserve(bytes, wait).await?;
        Ok(self.prepay(r))
    }

    fn prepay(&self, mut r: Reservation) -> Reservation {
        let bytes = std::mem::take(&mut r.bytes);
        drop(r);
        Reservation::new(self.budget.clone(), bytes, Some(Arc::clone(&self.prepaid)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_and_releases_balance() {
        let budget = MemoryBudget::new(100);
        assert!(!budget.charge(60));
        assert!(!budget.charge(40));
        assert!(budget.charge(1));
        assert!(budget.is_over());
        budget.release(101);
        assert_eq!(budget.in_use(), 0);
        assert!(!budget.is_over());
    }

    #[test]
    fn reservations_merge_release_and_return() {
        let budget = MemoryBudget::new(100);
        let mut a = budget.try_reserve(40).unwrap();
        let b = budget.try_reserve(30).unwrap();
        assert_eq!((budget.in_use(), budget.reserved()), (70, 70));
        a.merge(b);
        assert_eq!(a.bytes(), 70);
        a.release(25);
        assert_eq!(budget.available(), 55);
        a.release(1000);
        assert_eq!(a.bytes(), 0);
        assert_eq!((budget.in_use(), budget.reserved()), (0, 0));
        assert_eq!(
            budget.try_reserve(101).unwrap_err(),
            BudgetError::LargerThanBudget {
                requested: 101,
                total: 100
            }
        );
        assert_eq!(budget.try_reserve(0).unwrap().bytes(), 0);
    }

    #[test]
    fn prepaid_reservations_mirror_their_bytes() {
        let budget = MemoryBudget::new(100);
        let request = RequestBudget::new(budget.clone());
        let mut r = request.try_reserve(30).unwrap();
        assert_eq!((request.prepaid(), budget.in_use()), (30, 30));
        r.merge(budget.try_reserve(10).unwrap());
        assert_eq!((request.prepaid(), budget.in_use()), (40, 40));
        r.release(15);
        assert_eq!((request.prepaid(), budget.in_use()), (25, 25));
        drop(r);
        assert_eq!((request.prepaid(), budget.in_use()), (0, 0));
    }

    #[tokio::test]
    async fn the_queue_is_first_come_first_served() {
        let budget = MemoryBudget::new(100);
        let held = budget.try_reserve(90).unwrap();
        let big = budget.admit(50, Duration::from_secs(5));
        assert!(!big.is_granted());
        // A small one that would fit still queues behind the big one.
        assert!(!budget.try_admit(5));
        let small = budget.admit(5, Duration::from_secs(5));
        assert!(!small.is_granted());
        assert_eq!(budget.queue_len(), 2);
        drop(held);
        let (big, small) = tokio::join!(
            async {
                let mut big = big;
                (&mut big).await.unwrap();
                big.take()
            },
            async {
                let mut small = small;
                (&mut small).await.unwrap();
                small.take()
            }
        );
        assert_eq!((big, small), (50, 5));
        assert_eq!(budget.in_use(), 55);
        assert_eq!(budget.stats().admitted_after_wait, 2);
        budget.note_reserved(-55);
        budget.release(55);
        assert_eq!((budget.in_use(), budget.reserved()), (0, 0));
    }

    #[tokio::test]
    async fn waits_time_out_and_the_queue_is_bounded() {
        let budget = MemoryBudget::with_max_queue(100, 1);
        let held = budget.try_reserve(80).unwrap();
        let err = budget
            .reserve(50, Duration::from_millis(20))
            .await
            .unwrap_err();
        assert!(matches!(err, BudgetError::Exhausted { requested: 50, .. }));
        assert_eq!((budget.in_use(), budget.queue_len()), (80, 0));
        let waiting = budget.admit(50, Duration::from_secs(5));
        let refused = budget.admit(10, Duration::from_secs(5));
        assert_eq!(
            refused.await.unwrap_err(),
            BudgetError::QueueFull {
                requested: 10,
                max: 1
            }
        );
        // A waiter dropped before its grant leaves the queue and takes nothing.
        drop(waiting);
        assert_eq!(budget.queue_len(), 0);
        drop(held);
        assert_eq!(budget.in_use(), 0);
        assert_eq!(budget.stats().rejected, 2);
    }

    #[tokio::test]
    async fn a_waiter_granted_and_dropped_gives_its_bytes_back() {
        let budget = MemoryBudget::new(100);
        let held = budget.try_reserve(100).unwrap();
        let waiting = budget.admit(60, Duration::from_secs(5));
        drop(held);
        // Granted by the release, never polled.
        assert_eq!(budget.in_use(), 60);
        drop(waiting);
        assert_eq!((budget.in_use(), budget.reserved()), (0, 0));
    }

    #[tokio::test]
    async fn an_oversized_reservation_runs_alone() {
        let budget = MemoryBudget::new(100);
        let held = budget.try_reserve(10).unwrap();
        let mut alone = budget.admit(500, Duration::from_secs(5));
        assert!(!alone.is_granted());
        drop(held);
        (&mut alone).await.unwrap();
        assert_eq!(budget.in_use(), 500);
        drop(alone);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn parked_requests_wake_oldest_first_and_hold_back_admissions() {
        let budget = MemoryBudget::new(100);
        assert!(!budget.charge(90));
        assert!(budget.charge(20)); // over: both park
        let mut first = Park::new();
        let mut second = Park::new();
        let woken = Arc::new(AtomicUsize::new(0));
        let (w1, w2) = (counting_waker(&woken, 1), counting_waker(&woken, 10));
        let mut cx1 = Context::from_waker(&w1);
        let mut cx2 = Context::from_waker(&w2);
        assert!(budget.poll_room(&mut first, 40, &mut cx1).is_pending());
        assert!(budget.poll_room(&mut second, 30, &mut cx2).is_pending());
        assert_eq!(budget.parked_len(), 2);
        // A new reservation waits while anyone is parked.
        let mut queued = budget.admit(1, Duration::from_secs(5));
        assert!(!queued.is_granted());
        // 20 bytes of room: the oldest goes first even if it claims more, the next waits.
        budget.release(30);
        assert_eq!(woken.load(Relaxed), 1);
        assert_eq!(budget.parked_len(), 1);
        assert!(budget.poll_room(&mut first, 40, &mut cx1).is_ready());
        assert!(first.is_running());
        // Room, but the second stays queued until woken: the running one has the right of way.
        budget.release(9);
        assert_eq!(
            woken.load(Relaxed),
            1,
            "29 of room < the second's claim of 30"
        );
        assert!(budget.poll_room(&mut second, 30, &mut cx2).is_pending());
        budget.release(20);
        assert_eq!(woken.load(Relaxed), 11, "49 of room covers the claim");
        assert!(budget.poll_room(&mut second, 30, &mut cx2).is_ready());
        // Admission waits until everyone woken from the park has ended.
        assert!(!queued.is_granted());
        drop(first);
        assert!(!queued.is_granted());
        drop(second);
        (&mut queued).await.unwrap();
        assert_eq!(queued.take(), 1);
        assert_eq!(budget.stats().parked, 2);
        assert_eq!(budget.inner.waiting.load(Relaxed), 0);
    }

    #[test]
    fn a_running_request_that_grows_over_again_queues_at_its_place() {
        let budget = MemoryBudget::new(10);
        budget.charge(20);
        let (mut old, mut young) = (Park::new(), Park::new());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(budget.poll_room(&mut old, 10, &mut cx).is_pending());
        assert!(budget.poll_room(&mut young, 10, &mut cx).is_pending());
        budget.release(15);
        assert!(old.is_running() && young.is_queued());
        assert!(budget.poll_room(&mut old, 10, &mut cx).is_ready());
        budget.charge(10); // over again
        assert!(budget.poll_room(&mut old, 15, &mut cx).is_pending());
        assert!(old.is_queued());
        assert_eq!(
            budget
                .inner
                .queues
                .lock()
                .unwrap()
                .parked
                .front()
                .unwrap()
                .seq,
            0
        );
        let progress = budget.progress();
        drop(young);
        assert!(
            budget.progress() > progress,
            "leaving frees room for others"
        );
        drop(old);
        assert_eq!(budget.inner.waiting.load(Relaxed), 0);
        assert_eq!(budget.parked_len(), 0);
    }

    #[tokio::test]
    async fn growing_capacity_grants_waiters() {
        let budget = MemoryBudget::new(10);
        budget.charge(5);
        let mut waiting = budget.admit(50, Duration::from_secs(5));
        assert!(!waiting.is_granted());
        budget.set_capacity(100);
        (&mut waiting).await.unwrap();
        assert_eq!(budget.in_use(), 55);
    }

    #[tokio::test]
    async fn movement_past_the_marks_notifies_once() {
        let budget = MemoryBudget::new(1000);
        budget.set_marks(0, 100);
        budget.charge(50);
        let moved = budget.moved();
        tokio::pin!(moved);
        assert!(futures_poll(&mut moved).is_pending());
        budget.charge(60);
        assert!(futures_poll(&mut moved).is_ready());
        // Disarmed until new marks.
        budget.charge(500);
        let again = budget.moved();
        tokio::pin!(again);
        assert!(futures_poll(&mut again).is_pending());
    }

    fn futures_poll<F: Future>(f: &mut Pin<&mut F>) -> Poll<F::Output> {
        f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    }

    fn counting_waker(count: &Arc<AtomicUsize>, by: usize) -> Waker {
        struct W(Arc<AtomicUsize>, usize);
        impl std::task::Wake for W {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(self.1, Relaxed);
            }
        }
        Waker::from(Arc::new(W(Arc::clone(count), by)))
    }
}
