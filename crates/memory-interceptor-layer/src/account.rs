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
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, RawWakerVTable, Waker};

use http::uri::PathAndQuery;
use http::{Method, Request, StatusCode};
use memory_probe::{AllocCounters, RequestBudget, thread_counters};

use crate::governor::{Parking, Room};
use crate::layer::Config;
use crate::ledger::Entry;
use crate::registry::UNREGISTERED;
use crate::report::{AbortReason, Ended, Outcome, Route};

/// Where a request's account stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum State {
    /// The request is being served.
    Live = 0,
    /// Something outside the owner (instrumented work) saw the quota crossed.
    AbortQuota = 1,
    /// The pressure watcher picked this request.
    AbortPressure = 2,
    /// The governor picked this request: it is the furthest over its reservation.
    AbortOvercommit = 3,
    /// The report has been emitted.
    Finished = 4,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Live,
            1 => State::AbortQuota,
            2 => State::AbortPressure,
            3 => State::AbortOvercommit,
            _ => State::Finished,
        }
    }

    /// The abort this state asks for, if any.
    pub(crate) fn abort_reason(self) -> Option<AbortReason> {
        match self {
            State::AbortQuota => Some(AbortReason::Quota),
            State::AbortPressure => Some(AbortReason::Pressure),
            State::AbortOvercommit => Some(AbortReason::Overcommit),
            State::Live | State::Finished => None,
        }
    }
}

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
    state: AtomicU8,
    // The governor's side (owner-written; read by victim searches).
    reserved: Owned,
    charged: Owned,
    peak_own: AtomicI64,
    probe: Owned,
    park_state: Owned,
    seq: Owned,
    /// The route's ledger entry, whose cost model the governor reads and teaches.
    pub(crate) cost: Option<&'static Entry>,
    /// Reservations other layers made for this request (a buffered body), already in the budget.
    pub(crate) request_budget: Option<RequestBudget>,
    /// The owner's waker, so an abort decided elsewhere gets the owner polled.
    waker: Mutex<Option<Waker>>,
    route_override: OnceLock<&'static str>,
    /// Key in the registry of victims, [`UNREGISTERED`] until the request is registered.
    registry_key: Owned,
    /// When the request joined the registry (its age when `start` was not read).
    registered_at: OnceLock<quanta::Instant>,
    /// Whether the in-flight heavy warning has been logged (once per request).
    heavy_logged: AtomicBool,
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
        cost: Option<&'static Entry>,
        request_budget: Option<RequestBudget>,
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
            state: AtomicU8::new(State::Live as u8),
            reserved: Owned::default(),
            charged: Owned::default(),
            peak_own: AtomicI64::new(0),
            probe: Owned::default(),
            park_state: Owned::default(),
            seq: Owned::default(),
            cost,
            request_budget,
            waker: Mutex::new(None),
            route_override: OnceLock::new(),
            registry_key: Owned(AtomicU64::new(UNREGISTERED as u64)),
            registered_at: OnceLock::new(),
            heavy_logged: AtomicBool::new(false),
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

    /// The largest amount held at a poll boundary so far (owner and instrumented work).
    pub(crate) fn peak(&self) -> i64 {
        self.peak
            .load(Relaxed)
            .max(self.extra_peak.load(Relaxed))
            .max(self.held())
    }

    /// How long the request has run (since it joined the registry when its start was not read).
    pub(crate) fn age(&self) -> std::time::Duration {
        self.start
            .or_else(|| self.registered_at.get().copied())
            .map_or(std::time::Duration::ZERO, |t| {
                quanta::Instant::now().saturating_duration_since(t)
            })
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

    #[inline]
    pub(crate) fn state(&self) -> State {
        State::from_u8(self.state.load(Relaxed))
    }

    pub(crate) fn set_state(&self, state: State) {
        self.state.store(state as u8, Relaxed);
    }

    /// Bytes of the budget this request reserved at admission (until its response is ready).
    #[inline]
    pub(crate) fn reserved(&self) -> u64 {
        self.reserved.get()
    }

    pub(crate) fn set_reserved(&self, bytes: u64) {
        self.reserved.set(bytes);
    }

    /// Bytes of the budget this request has charged: its reservation and its growth beyond.
    #[inline]
    pub(crate) fn charged(&self) -> u64 {
        self.charged.get()
    }

    pub(crate) fn set_charged(&self, bytes: u64) {
        self.charged.set(bytes);
    }

    /// The largest `held - prepaid` at a poll boundary, and what is charged.
    #[inline]
    pub(crate) fn governed(&self) -> (i64, u64) {
        (self.peak_own.load(Relaxed), self.charged.get())
    }

    pub(crate) fn peak_own(&self) -> i64 {
        self.peak_own.load(Relaxed)
    }

    pub(crate) fn set_peak_own(&self, bytes: i64) {
        self.peak_own.store(bytes, Relaxed);
    }

    /// Bytes reserved for this request by other layers (prepaid in the budget).
    #[inline]
    pub(crate) fn prepaid(&self) -> u64 {
        self.request_budget
            .as_ref()
            .map_or(0, RequestBudget::prepaid)
    }

    /// Where the request stands in the governor's park (`PARK_*` in governor.rs).
    pub(crate) fn park_state(&self) -> u64 {
        self.park_state.get()
    }

    pub(crate) fn set_park_state(&self, state: u64) {
        self.park_state.set(state);
    }

    /// The request's admission order.
    pub(crate) fn seq(&self) -> u64 {
        self.seq.get()
    }

    pub(crate) fn set_seq(&self, seq: u64) {
        self.seq.set(seq);
    }

    /// Marks the request as its route's probe (the first of an unseen route).
    pub(crate) fn set_probe(&self) {
        self.probe.set(1);
    }

    pub(crate) fn is_probe(&self) -> bool {
        self.probe.get() == 1
    }

    /// Marks the request for abort (unless it already is, or has finished) and wakes its owner.
    pub(crate) fn request_abort(&self, state: State) -> bool {
        if self
            .state
            .compare_exchange(State::Live as u8, state as u8, Relaxed, Relaxed)
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
            self.request_abort(State::AbortQuota);
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
    /// Set while the request is parked by the governor.
    parking: Option<Box<Parking>>,
    /// Whether the request ran (was admitted and called); a refused one teaches its route nothing.
    pub(crate) ran: bool,
}

fn room_verdict(room: Room) -> Verdict {
    match room {
        Room::Go => Verdict::Continue,
        Room::Parked => Verdict::Park,
        Room::Abort => Verdict::Abort(AbortReason::Overcommit),
    }
}

/// What the owner should do after a poll boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Continue,
    Abort(AbortReason),
    /// The budget is over capacity: do not poll the inner future now (the waker is kept).
    Park,
    /// This poll took the budget over capacity: park.
    OverBudget,
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
            parking: None,
            ran: true,
        }
    }

    /// Starts the request's reservation: `bytes` admitted into the budget.
    pub(crate) fn reserve(&mut self, bytes: u64) {
        self.account.set_reserved(bytes);
        self.account.set_charged(bytes);
        if bytes > 0 {
            self.register();
        }
    }

    /// Puts the account where victim searches find it (once).
    #[inline]
    pub(crate) fn register(&self) {
        let a = &self.account;
        if a.registry_key.get() == UNREGISTERED as u64
            && let Some(registry) = &a.config.registry
        {
            if a.start.is_none() {
                let _ = a.registered_at.set(quanta::Instant::now());
            }
            a.registry_key.set(registry.register(a) as u64);
        }
    }

    /// Before a poll: keeps the account's waker current (when an abort can be decided elsewhere)
    /// and tells whether such an abort is pending.
    #[inline]
    pub(crate) fn before_poll(&mut self, cx: &mut Context<'_>) -> Verdict {
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
            if let Some(reason) = self.account.state().abort_reason() {
                return Verdict::Abort(reason);
            }
        }
        if self.parking.as_ref().is_some_and(|p| p.is_queued()) {
            return self.parked(cx);
        }
        Verdict::Continue
    }

    #[cold]
    fn parked(&mut self, cx: &mut Context<'_>) -> Verdict {
        let account = &*self.account;
        let (Some(governor), Some(parking)) = (&account.config.governor, &mut self.parking) else {
            return Verdict::Continue;
        };
        room_verdict(governor.poll_parked(account, parking, cx))
    }

    /// The last poll took the budget over capacity: park. Returns what to do now (the request
    /// may also be aborted after the timeouts, at a later poll).
    #[cold]
    pub(crate) fn park(&mut self, cx: &mut Context<'_>) -> Verdict {
        let account = &*self.account;
        match &account.config.governor {
            Some(governor) => room_verdict(governor.park(account, &mut self.parking, cx)),
            None => Verdict::Continue,
        }
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
            return Verdict::Abort(AbortReason::Quota);
        }
        if held >= a.config.watch_at as i64 {
            self.watch(held);
        }
        if let Some(governor) = &a.config.governor
            && governor.after_growth(a, held)
        {
            return Verdict::OverBudget;
        }
        Verdict::Continue
    }

    /// A large request's poll boundary (only requests holding at least `watch_at` get here): joins
    /// the registry, and logs once when the request crosses the heavy threshold while it runs.
    #[inline(never)]
    fn watch(&self, held: i64) {
        let a = &*self.account;
        if held >= a.config.register_at as i64 {
            self.register();
        }
        if held >= a.config.heavy_threshold as i64 && !a.heavy_logged.swap(true, Relaxed) {
            tracing::warn!(
                target: "memory_interceptor",
                method = %a.method,
                route = %a.route(),
                path = crate::report::logged_path(&a.config, &a.path),
                held,
                allocated = a.allocated(),
                age_ms = a.age().as_secs_f64() * 1e3,
                "request crossed the heavy threshold while running"
            );
        }
    }

    /// The response is ready: the governor trades the reservation for what is held.
    #[inline]
    pub(crate) fn response_ready(&mut self) {
        if let Some(governor) = &self.account.config.governor {
            governor.response_ready(&self.account, self.account.held());
        }
    }

    /// Bytes held now.
    #[inline]
    pub(crate) fn held(&self) -> i64 {
        self.account.held()
    }

    /// Bytes charged to the budget beyond the request's reservation.
    pub(crate) fn overcommit(&self) -> u64 {
        self.account
            .charged()
            .saturating_sub(self.account.reserved())
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
    pub(crate) fn finish(mut self, outcome: Outcome) {
        let account = &self.account;
        match outcome {
            // Kept visible to `RequestMemory::abort_pending` (spawned work may be watching).
            Outcome::Aborted(AbortReason::Quota) => account.set_state(State::AbortQuota),
            Outcome::Aborted(AbortReason::Pressure) => account.set_state(State::AbortPressure),
            Outcome::Aborted(AbortReason::Overcommit) => account.set_state(State::AbortOvercommit),
            _ => {
                let _ = account.state.compare_exchange(
                    State::Live as u8,
                    State::Finished as u8,
                    Relaxed,
                    Relaxed,
                );
            }
        }
        let config = &account.config;
        if let Some(registry) = &config.registry {
            let key = account.registry_key.get() as usize;
            if key != UNREGISTERED {
                registry.deregister(key);
            }
        }
        if let Some(governor) = &config.governor {
            if outcome == Outcome::Aborted(AbortReason::Overcommit) {
                governor.count_abort(account);
            }
            governor.finish(account, self.parking.take(), self.ran);
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
            start: account.start,
            duration: std::cell::Cell::new(None),
            heavy: allocated >= config.heavy_threshold,
        };
        crate::report::emit(config, &report);
    }
}
