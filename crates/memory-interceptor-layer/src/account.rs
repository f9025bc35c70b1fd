//! The per-request account, the owner's view of it (`Tracker`) and the measurement taken around
//! every poll (`Measure`).
//!
//! Why the split: the response future and then the response body are the only writers of the
//! request's own counters, one after the other, so they keep them in plain fields and publish
//! them with relaxed stores (no read-modify-write on the hot path). Work charged through
//! [`RequestMemory::instrument`](crate::RequestMemory::instrument) runs concurrently on other
//! threads and adds to separate atomic counters. Readers sum both.

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Waker};
use std::time::Instant;

use http::uri::PathAndQuery;
use http::{Method, Request, StatusCode};
use memory_probe::{AllocCounters, thread_counters};

use crate::layer::Config;
use crate::report::{AbortReason, MemoryReport, Outcome, Route};

/// The request is being served.
pub(crate) const LIVE: u8 = 0;
/// Something outside the owner (instrumented work) saw the quota crossed.
pub(crate) const ABORT_QUOTA: u8 = 1;
/// The pressure watcher picked this request.
pub(crate) const ABORT_PRESSURE: u8 = 2;
/// The report has been emitted.
pub(crate) const FINISHED: u8 = 3;

/// One request's memory account, shared by its owner, its `RequestMemory` handles, instrumented
/// work and the pressure registry.
pub(crate) struct Account {
    pub(crate) config: Arc<Config>,
    // Written only by the owner (response future, then body), with plain stores.
    own_allocated: AtomicU64,
    own_deallocated: AtomicU64,
    own_handed_off: AtomicU64,
    // Added to by instrumented work from any thread.
    extra_allocated: AtomicU64,
    extra_deallocated: AtomicU64,
    extra_peak: AtomicI64,
    pub(crate) state: AtomicU8,
    /// The owner's waker, so an abort decided elsewhere gets the owner polled.
    waker: Mutex<Option<Waker>>,
    route_override: OnceLock<&'static str>,
    /// Key in the pressure registry (`usize::MAX` when there is none).
    pub(crate) registry_key: usize,
    pub(crate) method: Method,
    pub(crate) route: Route,
    pub(crate) path: PathAndQuery,
    pub(crate) start: Instant,
}

impl Account {
    pub(crate) fn new<B>(
        config: &Arc<Config>,
        req: &Request<B>,
        route: Route,
        registry_key: usize,
    ) -> Account {
        Account {
            config: Arc::clone(config),
            own_allocated: AtomicU64::new(0),
            own_deallocated: AtomicU64::new(0),
            own_handed_off: AtomicU64::new(0),
            extra_allocated: AtomicU64::new(0),
            extra_deallocated: AtomicU64::new(0),
            extra_peak: AtomicI64::new(i64::MIN),
            state: AtomicU8::new(LIVE),
            waker: Mutex::new(None),
            route_override: OnceLock::new(),
            registry_key,
            method: req.method().clone(),
            route,
            path: req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
            start: Instant::now(),
        }
    }

    pub(crate) fn allocated(&self) -> u64 {
        self.own_allocated
            .load(Relaxed)
            .wrapping_add(self.extra_allocated.load(Relaxed))
    }

    pub(crate) fn deallocated(&self) -> u64 {
        self.own_deallocated
            .load(Relaxed)
            .wrapping_add(self.extra_deallocated.load(Relaxed))
    }

    pub(crate) fn handed_off(&self) -> u64 {
        self.own_handed_off.load(Relaxed)
    }

    /// Bytes the request holds now, as last published.
    pub(crate) fn held(&self) -> i64 {
        self.allocated()
            .wrapping_sub(self.deallocated())
            .wrapping_sub(self.handed_off()) as i64
    }

    pub(crate) fn set_route(&self, route: &'static str) -> bool {
        self.route_override.set(route).is_ok()
    }

    pub(crate) fn route(&self) -> Route {
        match self.route_override.get() {
            Some(r) => Route::from_static(r),
            None => self.route.clone(),
        }
    }

    /// Marks the request for abort (unless it already is, or has finished) and wakes its owner.
    pub(crate) fn request_abort(&self, state: u8) -> bool {
        if self
            .state
            .compare_exchange(LIVE, state, Relaxed, Relaxed)
            .is_err()
        {
            return false;
        }
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = waker.as_ref() {
            w.wake_by_ref();
        }
        true
    }

    /// Adds what instrumented work measured; enforces the quota on the owner's behalf.
    fn charge_extra(&self, delta: AllocCounters) {
        self.extra_allocated.fetch_add(delta.allocated, Relaxed);
        self.extra_deallocated.fetch_add(delta.deallocated, Relaxed);
        let held = self.held();
        self.extra_peak.fetch_max(held, Relaxed);
        if let Some(quota) = self.config.max_request_memory
            && held > quota as i64
        {
            self.request_abort(ABORT_QUOTA);
        }
    }
}

// What is being measured on this thread right now: the account and the counters at the start of
// the current poll. It lets `RequestMemory` include the poll in progress, and keeps work charged
// to an account that is already being measured on this thread from being counted twice.
#[derive(Clone, Copy)]
struct Current {
    account: *const Account,
    start: AllocCounters,
}

thread_local! {
    static CURRENT: Cell<Current> = const {
        Cell::new(Current { account: ptr::null(), start: AllocCounters { allocated: 0, deallocated: 0 } })
    };
}

/// The bytes allocated and freed on this thread since the current poll of `account` started, if
/// `account` is being measured on this thread.
pub(crate) fn in_progress(account: &Account) -> Option<AllocCounters> {
    let current = CURRENT.get();
    ptr::eq(current.account, account).then(|| thread_counters().since(current.start))
}

/// Measures one section (a poll or a drop) for the owner. The counters are charged when the guard
/// drops, which also happens when the section panics: the owner then knows it panicked.
pub(crate) struct Measure<'a> {
    tracker: &'a mut Tracker,
    start: AllocCounters,
    previous: Current,
}

impl<'a> Measure<'a> {
    #[inline]
    pub(crate) fn start(tracker: &'a mut Tracker) -> Self {
        let start = thread_counters();
        let previous = CURRENT.replace(Current {
            account: Arc::as_ptr(&tracker.account),
            start,
        });
        Measure {
            tracker,
            start,
            previous,
        }
    }
}

impl Drop for Measure<'_> {
    #[inline]
    fn drop(&mut self) {
        let delta = thread_counters().since(self.start);
        CURRENT.set(self.previous);
        let t = &mut *self.tracker;
        t.allocated = t.allocated.wrapping_add(delta.allocated);
        t.deallocated = t.deallocated.wrapping_add(delta.deallocated);
        t.account.own_allocated.store(t.allocated, Relaxed);
        t.account.own_deallocated.store(t.deallocated, Relaxed);
        if std::thread::panicking() {
            t.panicked = true;
        }
    }
}

/// Measures work charged to `account` from outside its owner (instrumented futures and
/// closures). Nested inside a measurement of the same account on this thread it does nothing.
pub(crate) struct ExtraMeasure<'a> {
    account: &'a Account,
    start: AllocCounters,
    previous: Current,
}

impl<'a> ExtraMeasure<'a> {
    pub(crate) fn start(account: &'a Arc<Account>) -> Option<Self> {
        let previous = CURRENT.get();
        if ptr::eq(previous.account, Arc::as_ptr(account)) {
            return None;
        }
        let start = thread_counters();
        CURRENT.set(Current {
            account: Arc::as_ptr(account),
            start,
        });
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

/// The owner's side of the account: its counters in plain fields, handed from the response future
/// to the response body.
pub(crate) struct Tracker {
    pub(crate) account: Arc<Account>,
    allocated: u64,
    deallocated: u64,
    handed_off: u64,
    peak: i64,
    polls: u64,
    body_bytes: u64,
    /// The waker last published to the account (only kept when aborts can come from elsewhere).
    waker: Option<Waker>,
    pub(crate) panicked: bool,
    pub(crate) status: Option<StatusCode>,
}

/// What the owner should do after a poll boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Continue,
    Abort(AbortReason),
}

impl Tracker {
    pub(crate) fn new(account: Arc<Account>) -> Tracker {
        Tracker {
            account,
            allocated: 0,
            deallocated: 0,
            handed_off: 0,
            peak: i64::MIN,
            polls: 0,
            body_bytes: 0,
            waker: None,
            panicked: false,
            status: None,
        }
    }

    /// Before a poll: keeps the account's waker current (when an abort can be decided elsewhere)
    /// and tells whether such an abort is pending.
    #[inline]
    pub(crate) fn before_poll(&mut self, cx: &Context<'_>) -> Verdict {
        if self.account.config.external_aborts {
            if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                let waker = cx.waker().clone();
                *self.account.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker.clone());
                self.waker = Some(waker);
            }
            match self.account.state.load(Relaxed) {
                ABORT_QUOTA => return Verdict::Abort(AbortReason::Quota),
                ABORT_PRESSURE => return Verdict::Abort(AbortReason::Pressure),
                _ => {}
            }
        }
        Verdict::Continue
    }

    /// After a poll (or the call): counts it, updates the peak, checks the quota.
    #[inline]
    pub(crate) fn after_poll(&mut self, count_poll: bool) -> Verdict {
        self.polls += u64::from(count_poll);
        let held = self.held();
        if held > self.peak {
            self.peak = held;
        }
        match self.account.config.max_request_memory {
            Some(quota) if held > quota as i64 => Verdict::Abort(AbortReason::Quota),
            _ => Verdict::Continue,
        }
    }

    /// Bytes held now: own counters as measured, instrumented work as published.
    #[inline]
    pub(crate) fn held(&self) -> i64 {
        let a = &self.account;
        self.allocated
            .wrapping_add(a.extra_allocated.load(Relaxed))
            .wrapping_sub(self.deallocated)
            .wrapping_sub(a.extra_deallocated.load(Relaxed))
            .wrapping_sub(self.handed_off) as i64
    }

    /// A data frame of `len` bytes went to the server, which frees it outside any poll of this
    /// request: count it as released, up to what the request holds (so frames made from static or
    /// shared memory do not hide the request's own allocations).
    #[inline]
    pub(crate) fn handed_off(&mut self, len: usize) {
        let len = len as u64;
        self.body_bytes += len;
        let credit = len.min(self.held().max(0) as u64);
        if credit > 0 {
            self.handed_off += credit;
            self.account.own_handed_off.store(self.handed_off, Relaxed);
        }
    }

    /// Emits the request's one report.
    pub(crate) fn finish(self, outcome: Outcome) {
        let account = &self.account;
        match outcome {
            // Kept visible to `RequestMemory::abort_pending` (spawned work may be watching).
            Outcome::Aborted(AbortReason::Quota) => account.state.store(ABORT_QUOTA, Relaxed),
            Outcome::Aborted(AbortReason::Pressure) => account.state.store(ABORT_PRESSURE, Relaxed),
            _ => {
                let _ = account
                    .state
                    .compare_exchange(LIVE, FINISHED, Relaxed, Relaxed);
            }
        }
        let config = &account.config;
        if let Some(pressure) = &config.pressure {
            pressure.deregister(account.registry_key);
        }
        let extra_allocated = account.extra_allocated.load(Relaxed);
        let extra_deallocated = account.extra_deallocated.load(Relaxed);
        let allocated = self.allocated.wrapping_add(extra_allocated);
        let deallocated = self.deallocated.wrapping_add(extra_deallocated);
        let net = allocated
            .wrapping_sub(deallocated)
            .wrapping_sub(self.handed_off) as i64;
        let peak_net = self.peak.max(account.extra_peak.load(Relaxed)).max(net);
        let report = MemoryReport {
            method: account.method.clone(),
            route: account.route(),
            path_and_query: account.path.clone(),
            status: self.status,
            outcome,
            allocated,
            deallocated,
            handed_off: self.handed_off,
            net,
            peak_net,
            polls: self.polls,
            body_bytes: self.body_bytes,
            duration: account.start.elapsed(),
            heavy: allocated >= config.heavy_threshold,
        };
        crate::report::emit(config, &report);
    }
}
