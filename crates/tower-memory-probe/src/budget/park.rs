//! The park: requests that grew past the capacity wait here, oldest first, until memory frees.

use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::{MemoryBudget, lock};

pub(super) struct ParkEntry {
    pub(super) seq: u64,
    /// Bytes the request holds in the budget: roughly the room it needs to make progress (it
    /// grew to this much, it will likely grow as much again before it ends).
    claim: AtomicU64,
    /// A [`ParkState`], stored as its `u8`.
    state: AtomicU8,
    waker: Mutex<Option<Waker>>,
}

/// Where a parked request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum ParkState {
    /// In the park queue, waiting for room.
    Queued = 0,
    /// Woken from the park, running: it has the right of way until it parks again or ends.
    Running = 1,
    /// Out of the park for good (the request ended or was aborted).
    Left = u8::MAX,
}

impl ParkState {
    fn from_u8(v: u8) -> ParkState {
        match v {
            0 => ParkState::Queued,
            1 => ParkState::Running,
            _ => ParkState::Left,
        }
    }
}

impl ParkEntry {
    fn state(&self) -> ParkState {
        ParkState::from_u8(self.state.load(Relaxed))
    }

    fn set_state(&self, state: ParkState) {
        self.state.store(state as u8, Relaxed);
    }
}

impl MemoryBudget {
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
            .is_some_and(|e| e.state() == ParkState::Queued);
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
                    state: AtomicU8::new(ParkState::Running as u8),
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
        match entry.state() {
            ParkState::Queued => Poll::Pending,
            _ if !self.is_over() => Poll::Ready(()),
            _ => {
                // Over again: back in line at its original place (oldest first).
                entry.set_state(ParkState::Queued);
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
    pub(super) fn leave_park(&self, entry: &Arc<ParkEntry>) {
        {
            let mut queues = lock(&self.inner.queues);
            match entry.state() {
                ParkState::Queued => {
                    if let Some(at) = queues.parked.iter().position(|e| Arc::ptr_eq(e, entry)) {
                        queues.parked.remove(at);
                    }
                }
                _ => queues.running -= 1,
            }
            self.inner.waiting.fetch_sub(1, Relaxed);
            entry.set_state(ParkState::Left);
        }
        // Whoever was held back behind it (parked or queued) may go on now.
        if self.inner.waiting.load(Relaxed) != 0 {
            self.inner.progress.fetch_add(1, Relaxed);
            self.wake();
        }
    }

    /// Grants queued reservations and wakes parked requests while there is room.
    pub(super) fn wake(&self) {
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
                entry.set_state(ParkState::Running);
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
            .is_some_and(|e| e.state() == ParkState::Queued)
    }

    /// Whether it was woken from the park and runs with the right of way.
    pub fn is_running(&self) -> bool {
        self.entry
            .as_ref()
            .is_some_and(|e| e.state() == ParkState::Running)
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
