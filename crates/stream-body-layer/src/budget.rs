//! The process-wide memory budget for buffered request bodies.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::metrics::BUFFERED_BYTES;

/// Default size of [`MemoryBudget::global`]: 256 MiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 256 * 1024 * 1024;

/// A byte budget for request bodies held in memory, shared by every layer that holds a clone.
///
/// Underneath is a byte-weighted [`tokio::sync::Semaphore`]: buffering `n` bytes first takes `n`
/// permits, and the [`Reservation`] gives them back when it is dropped, whatever path the request
/// took (normal end, body error, client disconnect, handler panic, future dropped). Waiters are
/// served first come, first served, so a large body is not starved by a stream of small ones.
///
/// ```
/// use stream_body_layer::MemoryBudget;
///
/// let budget = MemoryBudget::new(1024);
/// let held = budget.try_reserve(600).unwrap();
/// assert_eq!(budget.available(), 424);
/// assert!(budget.try_reserve(600).is_err());
/// drop(held);
/// assert_eq!(budget.available(), 1024);
/// ```
#[derive(Clone)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    semaphore: Arc<Semaphore>,
    total: u64,
}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("total", &self.total())
            .field("available", &self.available())
            .finish()
    }
}

/// Why bytes could not be reserved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// The request can never be served: it is larger than the whole budget.
    #[error("{requested} bytes exceed the whole memory budget of {total} bytes")]
    LargerThanBudget {
        /// Bytes asked for (including what the caller already holds).
        requested: u64,
        /// The budget's total.
        total: u64,
    },
    /// The budget stayed exhausted for the whole wait.
    #[error("memory budget exhausted: {requested} bytes not available within {waited:?}")]
    Exhausted {
        /// Bytes asked for.
        requested: u64,
        /// How long the caller waited.
        waited: Duration,
    },
}

impl MemoryBudget {
    /// A new, independent budget of `bytes` (capped at tokio's semaphore maximum, about 2^61).
    pub fn new(bytes: u64) -> Self {
        let total = bytes.min(Semaphore::MAX_PERMITS as u64);
        Self {
            inner: Arc::new(Inner {
                semaphore: Arc::new(Semaphore::new(total as usize)),
                total,
            }),
        }
    }

    /// The process-wide default budget of [`DEFAULT_MEMORY_BUDGET`] bytes, used by every
    /// [`StreamBodyLayer`](crate::StreamBodyLayer) that is not given another one.
    pub fn global() -> MemoryBudget {
        static GLOBAL: OnceLock<MemoryBudget> = OnceLock::new();
        GLOBAL
            .get_or_init(|| MemoryBudget::new(DEFAULT_MEMORY_BUDGET))
            .clone()
    }

    /// The budget's size in bytes.
    pub fn total(&self) -> u64 {
        self.inner.total
    }

    /// Bytes not reserved right now.
    pub fn available(&self) -> u64 {
        self.inner.semaphore.available_permits() as u64
    }

    /// Bytes reserved right now.
    pub fn in_use(&self) -> u64 {
        self.total() - self.available()
    }

    /// Whether `self` and `other` are handles to the same budget.
    pub fn same_as(&self, other: &MemoryBudget) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Reserves `bytes` now, or fails without waiting.
    pub fn try_reserve(&self, bytes: u64) -> Result<Reservation, BudgetError> {
        self.check_size(bytes)?;
        let mut reservation = Reservation::empty();
        for piece in pieces(bytes) {
            match self.inner.semaphore.clone().try_acquire_many_owned(piece) {
                Ok(permit) => reservation.add(permit),
                Err(TryAcquireError::NoPermits) | Err(TryAcquireError::Closed) => {
                    return Err(BudgetError::Exhausted {
                        requested: bytes,
                        waited: Duration::ZERO,
                    });
                }
            }
        }
        Ok(reservation)
    }

    /// Reserves `bytes`, waiting up to `wait` for other requests to give bytes back.
    ///
    /// Fails at once with [`BudgetError::LargerThanBudget`] when `bytes` exceeds the whole budget.
    pub async fn reserve(&self, bytes: u64, wait: Duration) -> Result<Reservation, BudgetError> {
        match self.try_reserve(bytes) {
            Ok(r) => return Ok(r),
            Err(e @ BudgetError::LargerThanBudget { .. }) => return Err(e),
            Err(BudgetError::Exhausted { .. }) => {}
        }
        let acquire = async {
            let mut reservation = Reservation::empty();
            for piece in pieces(bytes) {
                // The semaphore is never closed, so acquiring only fails by timing out below.
                if let Ok(permit) = self.inner.semaphore.clone().acquire_many_owned(piece).await {
                    reservation.add(permit);
                }
            }
            reservation
        };
        tokio::time::timeout(wait, acquire)
            .await
            .map_err(|_| BudgetError::Exhausted {
                requested: bytes,
                waited: wait,
            })
    }

    fn check_size(&self, bytes: u64) -> Result<(), BudgetError> {
        if bytes > self.total() {
            return Err(BudgetError::LargerThanBudget {
                requested: bytes,
                total: self.total(),
            });
        }
        Ok(())
    }
}

/// tokio takes at most `u32::MAX` permits per call; larger reservations are taken in pieces.
fn pieces(bytes: u64) -> impl Iterator<Item = u32> {
    let full = bytes / u32::MAX as u64;
    let rest = (bytes % u32::MAX as u64) as u32;
    std::iter::repeat_n(u32::MAX, full as usize).chain((rest > 0).then_some(rest))
}

/// Bytes taken from a [`MemoryBudget`]; they go back when this is dropped.
///
/// Reported in the `http_body_buffered_bytes` gauge while held.
#[must_use = "the bytes go back to the budget as soon as the reservation is dropped"]
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
    bytes: u64,
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Reservation {
    fn empty() -> Self {
        Self {
            permit: None,
            bytes: 0,
        }
    }

    fn add(&mut self, permit: OwnedSemaphorePermit) {
        let n = permit.num_permits() as u64;
        metrics::gauge!(BUFFERED_BYTES).increment(n as f64);
        self.bytes += n;
        match &mut self.permit {
            Some(held) => held.merge(permit),
            None => self.permit = Some(permit),
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Adds `other`'s bytes to this reservation (both must come from the same budget).
    pub fn merge(&mut self, mut other: Reservation) {
        if let Some(permit) = other.permit.take() {
            let n = other.bytes;
            other.bytes = 0;
            self.bytes += n;
            match &mut self.permit {
                Some(held) => held.merge(permit),
                None => self.permit = Some(permit),
            }
        }
    }

    /// Gives `bytes` back early (at most what is held).
    pub fn release(&mut self, bytes: u64) {
        let n = bytes.min(self.bytes);
        if n == 0 {
            return;
        }
        if n == self.bytes {
            self.permit = None;
        } else if let Some(held) = &mut self.permit {
            // `split` hands the bytes to a new permit, which gives them back as it drops.
            drop(held.split(n as usize));
        }
        self.bytes -= n;
        metrics::gauge!(BUFFERED_BYTES).decrement(n as f64);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            metrics::gauge!(BUFFERED_BYTES).decrement(self.bytes as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_large_reservations() {
        assert_eq!(pieces(0).count(), 0);
        assert_eq!(pieces(10).collect::<Vec<_>>(), vec![10]);
        let big = 2 * u32::MAX as u64 + 5;
        assert_eq!(pieces(big).collect::<Vec<_>>(), vec![u32::MAX, u32::MAX, 5]);
        assert_eq!(pieces(big).map(u64::from).sum::<u64>(), big);
    }

    #[test]
    fn reservations_split_merge_and_return() {
        let budget = MemoryBudget::new(100);
        let mut a = budget.try_reserve(40).unwrap();
        let b = budget.try_reserve(30).unwrap();
        assert_eq!(budget.in_use(), 70);
        a.merge(b);
        assert_eq!(a.bytes(), 70);
        a.release(25);
        assert_eq!(budget.available(), 55);
        a.release(1000);
        assert_eq!(a.bytes(), 0);
        assert_eq!(budget.available(), 100);
        assert_eq!(
            budget.try_reserve(101).unwrap_err(),
            BudgetError::LargerThanBudget {
                requested: 101,
                total: 100
            }
        );
        let zero = budget.try_reserve(0).unwrap();
        assert_eq!(zero.bytes(), 0);
    }

    #[tokio::test]
    async fn waiting_reservations_time_out_or_succeed() {
        let budget = MemoryBudget::new(100);
        let held = budget.try_reserve(80).unwrap();
        let err = budget
            .reserve(50, Duration::from_millis(20))
            .await
            .unwrap_err();
        assert!(matches!(err, BudgetError::Exhausted { requested: 50, .. }));
        // The timed-out waiter gave back what it had been assigned.
        assert_eq!(budget.available(), 20);
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(50, Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        let got = waiter.await.unwrap().unwrap();
        assert_eq!(got.bytes(), 50);
        drop(got);
        assert_eq!(budget.available(), 100);
        assert!(MemoryBudget::global().same_as(&MemoryBudget::global()));
        assert_eq!(MemoryBudget::global().total(), DEFAULT_MEMORY_BUDGET);
    }
}
