//! `Tracker`: the owner's side of the account (the response future, then the body): what a poll
//! boundary decides, and the request's one report at its end.

use std::ptr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, RawWakerVTable};

use http::StatusCode;

use super::{Account, State};
use crate::governor::{Parking, Room};
use crate::outcome::{AbortReason, Outcome};
use crate::registry::UNREGISTERED;
use crate::report::Ended;
use crate::route::Route;

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
        let shared = &account.shared;
        let external_aborts = shared.external_aborts;
        let quota = shared
            .config
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
            && let Some(registry) = &a.shared.registry
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
        let (Some(governor), Some(parking)) = (&account.shared.governor, &mut self.parking) else {
            return Verdict::Continue;
        };
        room_verdict(governor.poll_parked(account, parking, cx))
    }

    /// The last poll took the budget over capacity: park. Returns what to do now (the request
    /// may also be aborted after the timeouts, at a later poll).
    #[cold]
    pub(crate) fn park(&mut self, cx: &mut Context<'_>) -> Verdict {
        let account = &*self.account;
        match &account.shared.governor {
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
        if held >= a.shared.watch_at as i64 {
            self.watch(held);
        }
        if let Some(governor) = &a.shared.governor
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
        if held >= a.shared.register_at as i64 {
            self.register();
        }
        if held >= a.shared.config.heavy_threshold as i64 && !a.heavy_logged.swap(true, Relaxed) {
            tracing::warn!(
                target: "memory_interceptor",
                method = %a.method,
                route = %a.route(),
                path = a.shared.config.logged_path(&a.path),
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
        if let Some(governor) = &self.account.shared.governor {
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
        let shared = &account.shared;
        if let Some(registry) = &shared.registry {
            let key = account.registry_key.get() as usize;
            if key != UNREGISTERED {
                registry.deregister(key);
            }
        }
        if let Some(governor) = &shared.governor {
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
            heavy: allocated >= shared.config.heavy_threshold,
            span: &account.span,
        };
        crate::emit::emit(&shared.config, &report);
    }
}
