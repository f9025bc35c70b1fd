//! `Measure`: the thread counters read around one poll (or drop) of the owner, and
//! `ExtraMeasure`, around work charged to the request from elsewhere.

use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::ptr;
use std::sync::Arc;

use tower_memory_probe::{AllocCounters, thread_counters};

use super::{Account, Tracker};

// The account being measured on this thread right now, if any (its address; the low bit set when
// it is instrumented work rather than the owner). It lets `RequestMemory` include the owner's poll
// in progress (whose starting counters the owner keeps in the account), and keeps work charged to
// an account already being measured on this thread from being counted twice.
thread_local! {
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

const EXTRA_TAG: usize = 1;

fn address(account: &Account) -> usize {
    ptr::from_ref(account) as usize
}

/// The bytes allocated and freed on this thread since the current poll of `account` started, if
/// the owner of `account` is being polled on this thread.
pub(crate) fn in_progress(account: &Account) -> Option<AllocCounters> {
    (CURRENT.get() == address(account)).then(|| {
        thread_counters().since(AllocCounters {
            allocated: account.poll_start_allocated.get(),
            deallocated: account.poll_start_deallocated.get(),
        })
    })
}

/// Measures one section (a poll or a drop) for the owner. [`Measure::end`] charges it; if the
/// section unwinds instead, the guard's drop charges it and marks the request as panicked.
pub(crate) struct Measure<'a> {
    tracker: &'a mut Tracker,
    start: AllocCounters,
    previous: usize,
}

impl<'a> Measure<'a> {
    #[inline]
    pub(crate) fn start(tracker: &'a mut Tracker) -> Self {
        let start = thread_counters();
        let account = &*tracker.account;
        account.poll_start_allocated.set(start.allocated);
        account.poll_start_deallocated.set(start.deallocated);
        let previous = CURRENT.replace(address(account));
        Measure {
            tracker,
            start,
            previous,
        }
    }

    /// Charges the section; returns whether it left the request holding more than before.
    #[inline]
    pub(crate) fn end(self) -> bool {
        // No drop on the normal path: the drop is the unwinding path.
        let mut this = ManuallyDrop::new(self);
        this.charge()
    }

    #[inline(always)]
    fn charge(&mut self) -> bool {
        let delta = thread_counters().since(self.start);
        CURRENT.set(self.previous);
        let account = &*self.tracker.account;
        account.own_allocated.add(delta.allocated);
        account.own_deallocated.add(delta.deallocated);
        delta.allocated > delta.deallocated
    }
}

impl Drop for Measure<'_> {
    fn drop(&mut self) {
        self.charge();
        self.tracker.panicked = true;
    }
}

/// Measures work charged to `account` from outside its owner (instrumented futures and
/// closures). Nested inside a measurement of the same account on this thread it does nothing.
pub(crate) struct ExtraMeasure<'a> {
    account: &'a Account,
    start: AllocCounters,
    previous: usize,
}

impl<'a> ExtraMeasure<'a> {
    pub(crate) fn start(account: &'a Arc<Account>) -> Option<Self> {
        let previous = CURRENT.get();
        if previous & !EXTRA_TAG == address(account) {
            return None;
        }
        let start = thread_counters();
        CURRENT.set(address(account) | EXTRA_TAG);
        Some(ExtraMeasure {
            account,
            start,
            previous,
        })
    }
}

impl Drop for ExtraMeasure<'_> {
    fn drop(&mut self) {
        let delta = thread_counters().since(self.start);
        CURRENT.set(self.previous);
        self.account.charge_extra(delta);
    }
}
