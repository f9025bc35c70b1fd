//! The per-request account, the owner's view of it (`Tracker`) and the measurement taken around
//! every poll (`Measure`).
//!
//! Why the split: the response future and then the response body are the only writers of the
//! request's own counters, one after the other, so they update them with a relaxed load and store
//! (no read-modify-write on the hot path). Work charged through
//! [`RequestMemory::instrument`](crate::RequestMemory::instrument) runs concurrently on other
//! threads and adds to separate atomic counters. Readers sum both.

use std::cell::Cell;
use std::mem::ManuallyDrop;
use std::ptr;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, RawWakerVTable, Waker};
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Method, Request, StatusCode};
use memory_probe::{AllocCounters, thread_counters};

use crate::layer::Config;
use crate::report::{AbortReason, Ended, Outcome, Route};

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
    // Written only by the owner (response future, then body).
    own_allocated: Owned,
    own_deallocated: Owned,
    own_handed_off: Owned,
    // The owner's counters at the start of its poll in progress (for `RequestMemory`).
    poll_start_allocated: Owned,
    poll_start_deallocated: Owned,
    peak: AtomicI64,
    polls: Owned,
    body_bytes: Owned,
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
    /// When the call started; `None` when nothing would read the duration (no `on_report`, and
    /// no subscriber listening to this crate's events), which saves two clock reads.
    pub(crate) start: Option<quanta::Instant>,
}

/// A counter that only the owner writes: a relaxed load and store, which compile to plain moves,
/// where a `fetch_add` would lock the bus. Anyone may read it.
#[derive(Default)]
struct Owned(AtomicU64);

impl Owned {
    #[inline(always)]
    fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }

    #[inline(always)]
    fn add(&self, n: u64) {
        self.set(self.get().wrapping_add(n));
    }

    #[inline(always)]
    fn set(&self, n: u64) {
        self.0.store(n, Relaxed);
    }
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
            own_allocated: Owned::default(),
            own_deallocated: Owned::default(),
            own_handed_off: Owned::default(),
            poll_start_allocated: Owned::default(),
            poll_start_deallocated: Owned::default(),
            peak: AtomicI64::new(i64::MIN),
            polls: Owned::default(),
            body_bytes: Owned::default(),
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
            start: (config.on_report.is_some()
                || tracing::enabled!(target: "memory_interceptor", tracing::Level::WARN))
            .then(quanta::Instant::now),
        }
    }

    #[inline]
    pub(crate) fn allocated(&self) -> u64 {
        self.own_allocated
            .get()
            .wrapping_add(self.extra_allocated.load(Relaxed))
    }

    #[inline]
    pub(crate) fn deallocated(&self) -> u64 {
        self.own_deallocated
            .get()
            .wrapping_add(self.extra_deallocated.load(Relaxed))
    }

    #[inline]
    pub(crate) fn handed_off(&self) -> u64 {
        self.own_handed_off.get()
    }

    /// Bytes the request holds now, as last published.
    #[inline]
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

/// The owner's side of the account, handed from the response future to the response body. Kept
/// small: it travels inside the response.
pub(crate) struct Tracker {
    pub(crate) account: Arc<Account>,
    /// Which waker was last published to the account (its data and vtable addresses, compared as
    /// `Waker::will_wake` does): one clone per change of waker instead of two. The account holds
    /// that waker, so the addresses cannot be reused by another task meanwhile.
    published: (usize, usize),
    // Copied from the configuration so that a poll reads no further than the account.
    quota: i64,
    external_aborts: bool,
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
        let config = &account.config;
        let external_aborts = config.external_aborts;
        let quota = config
            .max_request_memory
            .map_or(i64::MAX, |q| q.min(i64::MAX as u64) as i64);
        Tracker {
            account,
            published: (0, 0),
            quota,
            external_aborts,
            panicked: false,
            status: None,
        }
    }

    /// Before a poll: keeps the account's waker current (when an abort can be decided elsewhere)
    /// and tells whether such an abort is pending.
    #[inline]
    pub(crate) fn before_poll(&mut self, cx: &Context<'_>) -> Verdict {
        if self.external_aborts {
            let waker = cx.waker();
            let identity = (
                waker.data() as usize,
                ptr::from_ref::<RawWakerVTable>(waker.vtable()) as usize,
            );
            if identity != self.published {
                *self.account.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker.clone());
                self.published = identity;
            }
            match self.account.state.load(Relaxed) {
                ABORT_QUOTA => return Verdict::Abort(AbortReason::Quota),
                ABORT_PRESSURE => return Verdict::Abort(AbortReason::Pressure),
                _ => {}
            }
        }
        Verdict::Continue
    }

    /// After a poll (or the call, or a drop): counts it, and when the section left the request
    /// holding more (`grew`), updates the peak and checks the quota. A section that did not grow
    /// the request cannot set a new peak or cross the quota (instrumented work checks its own).
    #[inline]
    pub(crate) fn after_poll(&mut self, grew: bool, count_poll: bool) -> Verdict {
        let a = &*self.account;
        a.polls.add(u64::from(count_poll));
        if !grew {
            return Verdict::Continue;
        }
        let held = a.held();
        if held > a.peak.load(Relaxed) {
            a.peak.store(held, Relaxed);
        }
        if held > self.quota {
            Verdict::Abort(AbortReason::Quota)
        } else {
            Verdict::Continue
        }
    }

    /// Bytes held now.
    #[inline]
    pub(crate) fn held(&self) -> i64 {
        self.account.held()
    }

    /// A data frame of `len` bytes went to the server, which frees it outside any poll of this
    /// request: count it as released, up to what the request holds (so frames made from static or
    /// shared memory do not hide the request's own allocations).
    #[inline]
    pub(crate) fn handed_off(&mut self, len: usize) {
        let a = &*self.account;
        let len = len as u64;
        a.body_bytes.add(len);
        let credit = len.min(a.held().max(0) as u64);
        a.own_handed_off.add(credit);
    }

    /// Emits the request's one report.
    #[inline(never)]
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
        let allocated = account.allocated();
        let deallocated = account.deallocated();
        let handed_off = account.handed_off();
        let net = allocated.wrapping_sub(deallocated).wrapping_sub(handed_off) as i64;
        let peak_net = account
            .peak
            .load(Relaxed)
            .max(account.extra_peak.load(Relaxed))
            .max(net);
        let override_route;
        let route = match account.route_override.get() {
            Some(r) => {
                override_route = Route::from_static(r);
                &override_route
            }
            None => &account.route,
        };
        let report = Ended {
            method: &account.method,
            route,
            path_and_query: &account.path,
            status: self.status,
            outcome,
            allocated,
            deallocated,
            handed_off,
            net,
            peak_net,
            polls: account.polls.get(),
            body_bytes: account.body_bytes.get(),
            duration: account.start.map_or(Duration::ZERO, |start| {
                quanta::Instant::now().saturating_duration_since(start)
            }),
            heavy: allocated >= config.heavy_threshold,
        };
        crate::report::emit(config, &report);
    }
}
