//! The per-request account: what a request allocated, freed and handed to the server, its
//! state, and the governor's figures for it.
//!
//! Why the split: the response future and then the response body are the only writers of the
//! request's own counters, one after the other, so they update them with a relaxed load and store
//! (no read-modify-write on the hot path). Work charged through
//! [`RequestMemory::instrument`](crate::RequestMemory::instrument) runs concurrently on other
//! threads and adds to separate atomic counters. Readers sum both.
//!
//! The owner's side (`Tracker`, in `tracker.rs`) and the measurement around every poll
//! (`Measure`, in `measure.rs`) are submodules: they update the account's fields directly.

mod measure;
mod tracker;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Waker;

use http::uri::PathAndQuery;
use http::{Method, Request};
use tower_memory_probe::{AllocCounters, RequestBudget};

use crate::ledger::Entry;
use crate::outcome::AbortReason;
use crate::registry::UNREGISTERED;
use crate::route::Route;
use crate::shared::Shared;

pub(crate) use measure::{ExtraMeasure, Measure, in_progress};
pub(crate) use tracker::{Tracker, Verdict};

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

/// Where a request stands in the governor's park (kept in the account for victim searches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ParkState {
    /// Never parked.
    Never = 0,
    /// Waiting in the park.
    Queued = 1,
    /// Woken from the park and running with the right of way.
    Running = 2,
}

impl ParkState {
    fn from_u64(v: u64) -> ParkState {
        match v {
            1 => ParkState::Queued,
            2 => ParkState::Running,
            _ => ParkState::Never,
        }
    }
}

/// One request's memory account, shared by its owner, its `RequestMemory` handles, instrumented
/// work and the pressure registry.
pub(crate) struct Account {
    pub(crate) shared: Arc<Shared>,
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
    /// The span current at the call, when it declares a field the report fills (else none).
    pub(crate) span: tracing::Span,
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
        shared: &Arc<Shared>,
        req: &Request<B>,
        route: Route,
        cost: Option<&'static Entry>,
        request_budget: Option<RequestBudget>,
    ) -> Account {
        Account {
            shared: Arc::clone(shared),
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
            start: (shared.config.on_report.is_some()
                || tracing::enabled!(target: "memory_interceptor", tracing::Level::WARN))
            .then(quanta::Instant::now),
            span: crate::span::capture(),
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

    /// Where the request stands in the governor's park.
    pub(crate) fn park_state(&self) -> ParkState {
        ParkState::from_u64(self.park_state.get())
    }

    pub(crate) fn set_park_state(&self, state: ParkState) {
        self.park_state.set(state as u64);
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
        if let Some(quota) = self.shared.config.max_request_memory
            && held > quota as i64
        {
            self.request_abort(State::AbortQuota);
        }
    }
}
