//! The memory governor: admission by predicted cost, growth charged at poll boundaries, parking
//! over capacity, and aborts of the requests furthest over their reservations.
//!
//! The budget itself ([`MemoryBudget`]) lives in memory-probe so that the body layer draws on it
//! too; this module decides, per request, what to reserve and what to do when the budget is full.

use std::cell::RefCell;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use memory_probe::{Admission, BudgetError, MemoryBudget, Park};
use tokio::time::{Instant, Sleep};

use crate::account::{Account, ParkState, State};
use crate::config::GovernorConfig;
use crate::cost::{Learning, Prediction};
use crate::ledger::{Entry, Ledger};
use crate::metrics::{ADMISSION_WAIT_METRIC, GOVERNOR_METRIC};
use crate::registry::Registry;
use crate::route::Route;

/// Park timeouts a request sits through before it is aborted itself, whoever else was: nothing
/// stays parked for ever, even while memory keeps moving.
const MAX_PARK_ROUNDS: u32 = 10;

/// The governor at run time: the settings, the ledger that holds each route's cost model, and the
/// registry where victims are found.
pub(crate) struct Governor {
    pub(crate) budget: MemoryBudget,
    pub(crate) floor: u64,
    unseen_cost: u64,
    learning: Learning,
    queue_timeout: Duration,
    park_timeout: Duration,
    probe_timeout: Duration,
    ledger: Ledger,
    registry: Arc<Registry>,
    /// Admission order, for the tie-break between victims.
    next_seq: std::sync::atomic::AtomicU64,
}

/// What admission decided for a request.
pub(crate) enum Admit {
    /// Go on now (with the bytes reserved, possibly none).
    Now(u64),
    /// Wait (the request is kept, the service called later).
    Wait(Waiting),
}

/// A request waiting to be admitted.
pub(crate) struct Waiting {
    kind: WaitKind,
    since: Instant,
}

enum WaitKind {
    /// For the route's probe to show the cost.
    Probe { deadline: Pin<Box<Sleep>> },
    /// In the budget's queue.
    Queue(Admission),
    /// Refused at once (queue full).
    Refused(BudgetError),
}

/// A parked request's state, kept by its owner (until the request ends: its place in the park
/// keeps its rank, and its right of way once woken).
pub(crate) struct Parking {
    park: Park,
    timer: Pin<Box<Sleep>>,
    rounds: u32,
    /// The budget's progress counter when the timer was last set.
    progress: u64,
}

impl Parking {
    /// Whether the request waits in the park now (not polled until woken).
    pub(crate) fn is_queued(&self) -> bool {
        self.park.is_queued()
    }
}

/// What a poll boundary says about the budget.
pub(crate) enum Room {
    Go,
    Parked,
    Abort,
}

thread_local! {
    // The ledger entry of each hot route, per thread: an admission looks its route up without a
    // lock or a hash. Bounded and keyed by the ledger, like the report's metric handles.
    static ENTRIES: RefCell<Vec<(usize, Route, &'static Entry)>> = const { RefCell::new(Vec::new()) };
}

const ENTRY_SLOTS: usize = 32;

thread_local! {
    // The last route looked up on this thread, compared by ledger and text address: most
    // lookups in a row are of the same route. Only the address is kept, never dereferenced;
    // the `Route` that owns the text lives on in `ENTRIES` (or was static).
    static LAST_ENTRY: std::cell::Cell<LastEntry> =
        const { std::cell::Cell::new((0, std::ptr::null(), None)) };
}

/// Ledger id, route text address, and the text's length with the entry.
type LastEntry = (usize, *const u8, Option<(usize, &'static Entry)>);

impl Governor {
    pub(crate) fn new(config: GovernorConfig, ledger: Ledger, registry: Arc<Registry>) -> Self {
        Governor {
            learning: Learning {
                quantile: config.quantile,
                growth: 2f64.powf(1.0 / f64::from(config.half_life)),
                floor: config.floor,
            },
            budget: config.budget,
            floor: config.floor,
            unseen_cost: config.unseen_cost,
            queue_timeout: config.queue_timeout,
            park_timeout: config.park_timeout,
            probe_timeout: config.probe_timeout,
            ledger,
            registry,
            next_seq: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The route's ledger entry (its cost model).
    #[inline]
    pub(crate) fn entry(&self, route: &Route) -> &'static Entry {
        let id = self.ledger.id() as usize;
        let hit = LAST_ENTRY.with(|last| {
            let (l, text, entry) = last.get();
            let r = route.as_str();
            (l == id
                && std::ptr::eq(text, r.as_ptr())
                && entry.is_some_and(|(len, _)| len == r.len()))
            .then(|| entry.map(|(_, e)| e))
            .flatten()
        });
        match hit {
            Some(entry) => entry,
            None => self.entry_slow(id, route),
        }
    }

    #[cold]
    fn entry_slow(&self, id: usize, route: &Route) -> &'static Entry {
        let entry = ENTRIES
            .try_with(|cell| {
                let mut entries = cell.try_borrow_mut().ok()?;
                if let Some(i) = entries
                    .iter()
                    .position(|(l, r, _)| *l == id && r.same(route))
                {
                    let at = i.saturating_sub(1);
                    entries.swap(i, at);
                    return Some(entries[at].2);
                }
                let entry = self.ledger.entry(route.as_str());
                if entries.len() == ENTRY_SLOTS {
                    entries.pop();
                }
                entries.push((id, route.clone(), entry));
                Some(entry)
            })
            .ok()
            .flatten()
            .unwrap_or_else(|| self.ledger.entry(route.as_str()));
        // The text's address identifies the route next time: a router hands out clones of one
        // label, a classifier the same static string.
        let text = route.as_str();
        LAST_ENTRY.with(|last| last.set((id, text.as_ptr(), Some((text.len(), entry)))));
        entry
    }

    /// Admission before the inner service is called.
    #[inline]
    pub(crate) fn admit(&self, account: &Account) -> Admit {
        let Some(entry) = account.cost else {
            return Admit::Now(0);
        };
        match entry.cost.predict() {
            Prediction::Known(bytes) if bytes < self.floor => Admit::Now(0),
            Prediction::Known(bytes) => self.reserve(account, entry, bytes),
            Prediction::Probe => {
                account.set_probe();
                self.reserve(account, entry, self.unseen_cost)
            }
            Prediction::Wait => Admit::Wait(Waiting {
                kind: WaitKind::Probe {
                    deadline: Box::pin(tokio::time::sleep(self.probe_timeout)),
                },
                since: Instant::now(),
            }),
        }
    }

    #[cold]
    fn reserve(&self, account: &Account, entry: &Entry, bytes: u64) -> Admit {
        // A route that costs more than everything can still run, alone.
        let bytes = bytes.min(self.budget.capacity().max(1));
        account.set_seq(
            self.next_seq
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        if self.budget.try_admit(bytes) {
            entry
                .cost
                .counters
                .admitted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.count(account, "admitted");
            return Admit::Now(bytes);
        }
        let admission = self.budget.admit(bytes, self.queue_timeout);
        if admission.is_granted() {
            entry
                .cost
                .counters
                .admitted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.count(account, "admitted");
            return Admit::Now(admission.take());
        }
        Admit::Wait(Waiting {
            kind: WaitKind::Queue(admission),
            since: Instant::now(),
        })
    }

    /// Drives a waiting request: `Ready(Ok(bytes))` once admitted with `bytes` reserved,
    /// `Ready(Err(_))` when refused.
    pub(crate) fn poll_admission(
        &self,
        account: &Account,
        waiting: &mut Waiting,
        cx: &mut Context<'_>,
    ) -> Poll<Result<u64, BudgetError>> {
        loop {
            match &mut waiting.kind {
                WaitKind::Probe { deadline } => {
                    let Some(entry) = account.cost else {
                        return Poll::Ready(Ok(0));
                    };
                    if entry.cost.wait_for_probe(cx.waker()) {
                        if deadline.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        // The probe is taking long: go on with what it showed so far.
                        entry.cost.settle(None, self.unseen_cost, &self.learning);
                    }
                    match self.admit(account) {
                        Admit::Now(bytes) => return Poll::Ready(Ok(bytes)),
                        Admit::Wait(next) => waiting.kind = next.kind,
                    }
                }
                WaitKind::Queue(admission) => {
                    let result = std::task::ready!(Pin::new(&mut *admission).poll(cx));
                    let waited = waiting.since.elapsed();
                    let WaitKind::Queue(admission) = std::mem::replace(
                        &mut waiting.kind,
                        WaitKind::Refused(BudgetError::QueueFull {
                            requested: 0,
                            max: 0,
                        }),
                    ) else {
                        unreachable!("matched above")
                    };
                    let counters = account.cost.as_ref().map(|e| &e.cost.counters);
                    return Poll::Ready(match result {
                        Ok(()) => {
                            if let Some(c) = counters {
                                c.queued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            self.count(account, "queued");
                            self.record_wait(account, waited);
                            Ok(admission.take())
                        }
                        Err(e) => {
                            self.rejected(account, waited, &e);
                            Err(e)
                        }
                    });
                }
                WaitKind::Refused(e) => {
                    let e = e.clone();
                    self.rejected(account, waiting.since.elapsed(), &e);
                    return Poll::Ready(Err(e));
                }
            }
        }
    }

    fn rejected(&self, account: &Account, waited: Duration, error: &BudgetError) {
        if let Some(e) = &account.cost {
            e.cost
                .counters
                .rejected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.count(account, "rejected");
        self.record_wait(account, waited);
        tracing::warn!(
            target: "memory_interceptor",
            method = %account.method,
            route = %account.route(),
            path = account.shared.config.logged_path(&account.path),
            waited_ms = waited.as_secs_f64() * 1e3,
            error = %error,
            "request refused: the memory budget has no room for its predicted cost"
        );
    }

    fn count(&self, account: &Account, decision: &'static str) {
        if account.shared.config.metrics {
            metrics::counter!(GOVERNOR_METRIC, "route" => account.route().to_string(), "decision" => decision)
                .increment(1);
        }
    }

    fn record_wait(&self, account: &Account, waited: Duration) {
        if account.shared.config.metrics {
            metrics::histogram!(ADMISSION_WAIT_METRIC, "route" => account.route().to_string())
                .record(waited.as_secs_f64());
        }
    }

    /// After a poll that grew the request to `held`: charges what it holds beyond its
    /// reservation; returns whether that took the budget over capacity.
    #[inline]
    pub(crate) fn after_growth(&self, account: &Account, held: i64) -> bool {
        let own = held - account.prepaid() as i64;
        let (peak, charged) = account.governed();
        if own > peak {
            account.set_peak_own(own);
            if account.is_probe()
                && let Some(e) = &account.cost
            {
                e.cost.probe_held(own.max(0) as u64);
            }
        }
        let need = (own - self.floor as i64).max(account.reserved() as i64);
        if need <= charged as i64 {
            return false;
        }
        self.charge(account, need as u64 - charged)
    }

    #[cold]
    fn charge(&self, account: &Account, bytes: u64) -> bool {
        account.set_charged(account.charged() + bytes);
        self.budget.charge(bytes)
    }

    /// The response is ready: the reservation gives way to what the request holds now.
    #[inline]
    pub(crate) fn response_ready(&self, account: &Account, held: i64) {
        if account.reserved() != 0 || account.is_probe() {
            self.response_ready_slow(account, held);
        }
    }

    #[cold]
    fn response_ready_slow(&self, account: &Account, held: i64) {
        if account.is_probe()
            && let Some(e) = &account.cost
        {
            e.cost.settle(
                Some(account.peak_own().max(0) as u64),
                self.unseen_cost,
                &self.learning,
            );
        }
        let reserved = account.reserved();
        if reserved == 0 {
            return;
        }
        account.set_reserved(0);
        self.budget.note_reserved(-(reserved as i64));
        let own = held - account.prepaid() as i64;
        let need = (own - self.floor as i64).max(0) as u64;
        let charged = account.charged();
        if charged > need {
            account.set_charged(need);
            self.budget.release(charged - need);
        }
    }

    /// The request ended: everything it charged goes back, its route learns its peak.
    #[inline]
    pub(crate) fn finish(&self, account: &Account, parking: Option<Box<Parking>>, ran: bool) {
        if parking.is_none()
            && account.charged() == 0
            && account.reserved() == 0
            && !account.is_probe()
        {
            // A request under the floor: nothing to give back.
            if ran && let Some(e) = account.cost {
                e.cost
                    .learn(account.peak_own().max(0) as u64, &self.learning);
            }
            return;
        }
        self.finish_slow(account, parking, ran);
    }

    #[cold]
    fn finish_slow(&self, account: &Account, parking: Option<Box<Parking>>, ran: bool) {
        // Leaves the park (and gives up its right of way) before the release below wakes others.
        drop(parking);
        let reserved = account.reserved();
        if reserved > 0 {
            account.set_reserved(0);
            self.budget.note_reserved(-(reserved as i64));
        }
        let charged = account.charged();
        account.set_charged(0);
        self.budget.release(charged);
        if let Some(e) = &account.cost {
            let peak = account.peak_own().max(0) as u64;
            if account.is_probe() {
                e.cost
                    .settle(ran.then_some(peak), self.unseen_cost, &self.learning);
            }
            if ran {
                e.cost.learn(peak, &self.learning);
            }
        }
    }

    /// The request's last poll took the budget over capacity: park it (again).
    #[cold]
    pub(crate) fn park(
        &self,
        account: &Account,
        parking: &mut Option<Box<Parking>>,
        cx: &mut Context<'_>,
    ) -> Room {
        if let Some(e) = &account.cost {
            e.cost
                .counters
                .parked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Requests of the route admitted from now on reserve at least this much.
            e.cost.raise(account.peak_own().max(0) as u64);
        }
        self.count(account, "parked");
        let p = parking.get_or_insert_with(|| {
            Box::new(Parking {
                park: Park::new(),
                timer: Box::pin(tokio::time::sleep(self.park_timeout)),
                rounds: 0,
                progress: self.budget.progress(),
            })
        });
        p.timer.as_mut().reset(Instant::now() + self.park_timeout);
        p.progress = self.budget.progress();
        self.poll_parked(account, p, cx)
    }

    /// Whether a parked request may go on. After each `park_timeout` without any memory given
    /// back meanwhile (a deadlock: everyone who could free memory waits too), the request
    /// furthest over its reservation is aborted.
    #[cold]
    pub(crate) fn poll_parked(
        &self,
        account: &Account,
        p: &mut Parking,
        cx: &mut Context<'_>,
    ) -> Room {
        loop {
            let room = self.budget.poll_room(&mut p.park, account.charged(), cx);
            account.set_park_state(if p.park.is_queued() {
                ParkState::Queued
            } else {
                ParkState::Running
            });
            if room.is_ready() {
                return Room::Go;
            }
            if p.timer.as_mut().poll(cx).is_pending() {
                return Room::Parked;
            }
            p.rounds += 1;
            if p.rounds >= MAX_PARK_ROUNDS {
                return Room::Abort;
            }
            let progress = self.budget.progress();
            if progress == p.progress {
                match self.victim() {
                    Some(victim) if std::ptr::eq(Arc::as_ptr(&victim), account) => {
                        return Room::Abort;
                    }
                    Some(victim) if victim.request_abort(State::AbortOvercommit) => {
                        tracing::debug!(
                            target: "memory_interceptor",
                            route = %victim.route(),
                            path = victim.shared.config.logged_path(&victim.path),
                            "memory budget deadlocked over capacity: aborting the request furthest over its reservation"
                        );
                    }
                    Some(_) | None => {}
                }
            }
            p.progress = progress;
            p.timer.as_mut().reset(Instant::now() + self.park_timeout);
        }
    }

    /// The live request furthest over its reservation (bytes charged beyond it, by the MiB),
    /// the youngest first among equals, and requests woken from the park (which have the right
    /// of way) last; when none is over, the one charged the most.
    ///
    /// `None` while an earlier victim is still being aborted: its memory is about to come back,
    /// and a second abort now would only double the loss.
    fn victim(&self) -> Option<Arc<Account>> {
        if self.registry.any(|a| a.state() == State::AbortOvercommit) {
            return None;
        }
        let over = self.registry.ranked(|a| {
            let over = a.charged() as i64 - a.reserved() as i64;
            let preferred = i64::from(a.park_state() != ParkState::Running);
            (over > 0).then(|| {
                (preferred << 56)
                    | ((over >> 20).min((1 << 24) - 1) << 32)
                    | (a.seq() as i64 & 0xffff_ffff)
            })
        });
        if let Some((_, a)) = over.into_iter().next() {
            return Some(a);
        }
        self.registry
            .ranked(|a| (a.charged() > 0).then_some(a.charged() as i64))
            .into_iter()
            .next()
            .map(|(_, a)| a)
    }

    /// Counts an abort of a request for being over its reservation.
    pub(crate) fn count_abort(&self, account: &Account) {
        if let Some(e) = &account.cost {
            e.cost
                .counters
                .aborted
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.count(account, "aborted");
    }
}
