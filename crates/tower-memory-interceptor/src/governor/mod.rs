//! The memory governor: admission by predicted cost, growth charged at poll boundaries, parking
//! over capacity, and aborts of the requests furthest over their reservations.
//!
//! The budget itself ([`MemoryBudget`]) lives in tower-memory-probe so that the body layer draws on it
//! too; this module decides, per request, what to reserve and what to do when the budget is full.
//!
//! Here: the governor and what a running request's poll boundaries and end do to the budget;
//! `admission.rs` decides before the call, `park.rs` handles a budget over capacity,
//! `entries.rs` finds a route's cost model without a lock.

mod admission;
mod entries;
mod park;

use std::sync::Arc;
use std::time::Duration;

use tower_memory_probe::MemoryBudget;

use crate::account::Account;
use crate::config::GovernorConfig;
use crate::cost::Learning;
use crate::ledger::Ledger;
use crate::metrics::{ADMISSION_WAIT, GOVERNOR};
use crate::registry::Registry;

pub(crate) use admission::{Admit, Waiting};
pub(crate) use park::{Parking, Room};

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
    /// Held while a parked request picks and marks a victim (only on a deadlock, never on the
    /// request path): two requests whose park timers fire together must not pick each other.
    pub(crate) victims: std::sync::Mutex<()>,
}

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
            victims: std::sync::Mutex::new(()),
        }
    }

    fn count(&self, account: &Account, decision: &'static str) {
        if account.shared.config.metrics {
            metrics::counter!(GOVERNOR.get(), "route" => account.route().to_string(), "decision" => decision)
                .increment(1);
        }
    }

    fn record_wait(&self, account: &Account, waited: Duration) {
        if account.shared.config.metrics {
            metrics::histogram!(ADMISSION_WAIT.get(), "route" => account.route().to_string())
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
}
