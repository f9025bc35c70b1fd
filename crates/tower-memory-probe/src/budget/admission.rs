//! Admission: reservations granted while they fit, first come, first served, with a bounded FIFO
//! queue and a bounded wait.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::{BudgetError, MemoryBudget, Reservation, lock};

pub(super) struct Waiter {
    pub(super) bytes: u64,
    /// Set, with the bytes charged, when the waiter is granted (under the queue lock).
    pub(super) granted: AtomicBool,
    pub(super) waker: Mutex<Option<Waker>>,
}

impl MemoryBudget {
    /// Charges `bytes` if they fit now and nobody is queued or parked ahead; returns whether it
    /// did. `bytes` is counted as reserved (see [`note_reserved`](Self::note_reserved)).
    #[inline]
    pub fn try_admit(&self, bytes: u64) -> bool {
        let i = &self.inner;
        if i.waiting.load(Relaxed) != 0 {
            return false;
        }
        let used = i.used.0.fetch_add(bytes, Relaxed).wrapping_add(bytes);
        if used > self.capacity() {
            // Undo; a waiter that queued meanwhile is woken by the release.
            self.release(bytes);
            return false;
        }
        self.check_marks(used);
        i.reserved.fetch_add(bytes, Relaxed);
        i.admitted.fetch_add(1, Relaxed);
        true
    }

    /// Charges `bytes` as a reservation, waiting in the FIFO queue up to `wait` for room. The
    /// future fails with [`BudgetError::QueueFull`] at once when the queue is full and with
    /// [`BudgetError::Exhausted`] when the wait runs out. Dropping it gives back whatever it was
    /// granted. Needs a Tokio runtime with the time driver when it has to wait.
    ///
    /// A reservation larger than the capacity waits until the budget is empty enough, like any
    /// other; use [`reserve`](Self::reserve) to refuse those at once.
    pub fn admit(&self, bytes: u64, wait: Duration) -> Admission {
        if self.try_admit(bytes) {
            return Admission {
                budget: self.clone(),
                state: AdmissionState::Done,
                bytes,
                wait,
            };
        }
        let mut queues = lock(&self.inner.queues);
        // Re-check under the lock: room may have freed before the queue was ours.
        if queues.admission.is_empty()
            && queues.parked.is_empty()
            && queues.running == 0
            && self.fits_locked(bytes)
        {
            drop(queues);
            self.inner.admitted.fetch_add(1, Relaxed);
            return Admission {
                budget: self.clone(),
                state: AdmissionState::Done,
                bytes,
                wait,
            };
        }
        if queues.admission.len() >= self.inner.max_queue {
            drop(queues);
            self.inner.rejected.fetch_add(1, Relaxed);
            return Admission {
                budget: self.clone(),
                state: AdmissionState::Refused(BudgetError::QueueFull {
                    requested: bytes,
                    max: self.inner.max_queue,
                }),
                bytes,
                wait,
            };
        }
        let waiter = Arc::new(Waiter {
            bytes,
            granted: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        queues.admission.push_back(Arc::clone(&waiter));
        self.inner.waiting.fetch_add(1, Relaxed);
        drop(queues);
        Admission {
            budget: self.clone(),
            state: AdmissionState::Waiting {
                waiter,
                deadline: None,
            },
            bytes,
            wait,
        }
    }

    /// Charges `bytes` as reserved when they fit (under the queue lock, FIFO already checked).
    pub(super) fn fits_locked(&self, bytes: u64) -> bool {
        let i = &self.inner;
        let used = i.used.0.fetch_add(bytes, Relaxed).wrapping_add(bytes);
        if used > self.capacity() && used != bytes {
            i.used.0.fetch_sub(bytes, Relaxed);
            return false;
        }
        // Alone in an empty budget a reservation is granted whatever its size: it can only run
        // alone, and it would otherwise wait forever.
        self.check_marks(used);
        i.reserved.fetch_add(bytes, Relaxed);
        true
    }

    /// Reserves `bytes` now as a [`Reservation`], or fails without waiting (also while others
    /// wait: first come, first served).
    pub fn try_reserve(&self, bytes: u64) -> Result<Reservation, BudgetError> {
        self.check_size(bytes)?;
        if self.try_admit(bytes) {
            Ok(Reservation::new(self.clone(), bytes, None))
        } else {
            Err(BudgetError::Exhausted {
                requested: bytes,
                waited: Duration::ZERO,
            })
        }
    }

    /// Reserves `bytes` as a [`Reservation`], waiting up to `wait` in the queue. Fails at once
    /// with [`BudgetError::LargerThanBudget`] when `bytes` exceeds the whole capacity.
    pub async fn reserve(&self, bytes: u64, wait: Duration) -> Result<Reservation, BudgetError> {
        self.check_size(bytes)?;
        let mut admission = self.admit(bytes, wait);
        (&mut admission).await?;
        Ok(admission.into_reservation())
    }

    fn check_size(&self, bytes: u64) -> Result<(), BudgetError> {
        let total = self.capacity();
        if bytes > total {
            return Err(BudgetError::LargerThanBudget {
                requested: bytes,
                total,
            });
        }
        Ok(())
    }
}

/// A reservation waiting in (or refused by, or granted from) a [`MemoryBudget`]'s queue; see
/// [`MemoryBudget::admit`]. Resolves to `Ok(())` once the bytes are charged.
pub struct Admission {
    budget: MemoryBudget,
    state: AdmissionState,
    bytes: u64,
    wait: Duration,
}

enum AdmissionState {
    Waiting {
        waiter: Arc<Waiter>,
        deadline: Option<Pin<Box<Sleep>>>,
    },
    /// Granted and handed over (or about to be).
    Done,
    Refused(BudgetError),
    /// The error was returned.
    Finished,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            AdmissionState::Waiting { .. } => "waiting",
            AdmissionState::Done => "granted",
            AdmissionState::Refused(_) | AdmissionState::Finished => "refused",
        };
        f.debug_struct("Admission")
            .field("bytes", &self.bytes)
            .field("state", &state)
            .finish()
    }
}

impl Admission {
    /// Whether it was granted without waiting.
    pub fn is_granted(&self) -> bool {
        matches!(self.state, AdmissionState::Done)
    }

    /// The bytes asked for.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Hands the granted bytes to the caller, who now owes their [`MemoryBudget::release`].
    /// Returns 0 (and gives nothing) if the admission was not granted.
    pub fn take(mut self) -> u64 {
        if matches!(self.state, AdmissionState::Done) {
            self.state = AdmissionState::Finished;
            self.bytes
        } else {
            0
        }
    }

    fn into_reservation(self) -> Reservation {
        let budget = self.budget.clone();
        let bytes = self.take();
        Reservation::new(budget, bytes, None)
    }

    /// Leaves the queue; returns whether the waiter had been granted meanwhile (and so holds
    /// bytes).
    fn leave(&self, waiter: &Arc<Waiter>) -> bool {
        let inner = &self.budget.inner;
        let mut queues = lock(&inner.queues);
        if waiter.granted.load(Relaxed) {
            return true;
        }
        if let Some(at) = queues.admission.iter().position(|w| Arc::ptr_eq(w, waiter)) {
            queues.admission.remove(at);
            inner.waiting.fetch_sub(1, Relaxed);
        }
        false
    }
}

impl Future for Admission {
    type Output = Result<(), BudgetError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.state {
            AdmissionState::Done => Poll::Ready(Ok(())),
            AdmissionState::Finished => panic!("Admission polled after it failed"),
            AdmissionState::Refused(_) => {
                let AdmissionState::Refused(e) =
                    std::mem::replace(&mut this.state, AdmissionState::Finished)
                else {
                    unreachable!("matched above")
                };
                Poll::Ready(Err(e))
            }
            AdmissionState::Waiting { waiter, deadline } => {
                if waiter.granted.load(Relaxed) {
                    this.state = AdmissionState::Done;
                    return Poll::Ready(Ok(()));
                }
                *lock(&waiter.waker) = Some(cx.waker().clone());
                // Granted between the check and the waker: the grant's wake may have missed us.
                if waiter.granted.load(Relaxed) {
                    this.state = AdmissionState::Done;
                    return Poll::Ready(Ok(()));
                }
                let wait = this.wait;
                let sleep = deadline.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep_until(Instant::now() + wait))
                });
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let waiter = Arc::clone(waiter);
                if this.leave(&waiter) {
                    this.state = AdmissionState::Done;
                    return Poll::Ready(Ok(()));
                }
                this.budget.inner.rejected.fetch_add(1, Relaxed);
                this.state = AdmissionState::Finished;
                Poll::Ready(Err(BudgetError::Exhausted {
                    requested: this.bytes,
                    waited: wait,
                }))
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let granted = match &self.state {
            AdmissionState::Done => true,
            AdmissionState::Waiting { waiter, .. } => {
                let waiter = Arc::clone(waiter);
                self.leave(&waiter)
            }
            AdmissionState::Refused(_) | AdmissionState::Finished => false,
        };
        if granted {
            self.budget.note_reserved(-(self.bytes as i64));
            self.budget.release(self.bytes);
        }
    }
}
