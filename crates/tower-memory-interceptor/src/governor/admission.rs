//! Admission by predicted cost: before the inner service is called, a request reserves its
//! route's learned cost, waits for the route's probe, or waits in the budget's queue.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower_memory_probe::{Admission, BudgetError};

use super::Governor;
use crate::account::Account;
use crate::cost::Prediction;
use crate::ledger::Entry;

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

impl Governor {
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
}
