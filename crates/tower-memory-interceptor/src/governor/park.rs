//! A budget over capacity: the request that grew past it is parked, and after each park timeout
//! without progress the request furthest over its reservation is aborted.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;

use tokio::time::{Instant, Sleep};
use tower_memory_probe::Park;

use super::Governor;
use crate::account::{Account, ParkState, State};

/// Park timeouts a request sits through before it is aborted itself, whoever else was: nothing
/// stays parked for ever, even while memory keeps moving.
const MAX_PARK_ROUNDS: u32 = 10;

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

impl Governor {
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
                let _one_at_a_time = self.victims.lock().unwrap_or_else(|e| e.into_inner());
                match self.victim() {
                    Some(victim) if std::ptr::eq(Arc::as_ptr(&victim), account) => {
                        // Marked before the lock is released, so that the others see an abort
                        // under way and wait for its memory instead of picking a second victim.
                        account.request_abort(State::AbortOvercommit);
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
