//! Reservations that give their bytes back when dropped, and the per-request handle whose
//! reservations are prepaid.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::{BudgetError, MemoryBudget};

/// Bytes held in a [`MemoryBudget`]; they go back when this is dropped, whatever path the holder
/// took (normal end, error, disconnect, panic, future dropped).
#[must_use = "the bytes go back to the budget as soon as the reservation is dropped"]
pub struct Reservation {
    budget: MemoryBudget,
    bytes: u64,
    /// A request's prepaid counter that mirrors this reservation (see [`RequestBudget`]).
    prepaid: Option<Arc<AtomicU64>>,
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reservation")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Reservation {
    pub(super) fn new(budget: MemoryBudget, bytes: u64, prepaid: Option<Arc<AtomicU64>>) -> Self {
        if let Some(p) = &prepaid {
            p.fetch_add(bytes, Relaxed);
        }
        Reservation {
            budget,
            bytes,
            prepaid,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The budget the bytes belong to.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Adds `other`'s bytes to this reservation (both must come from the same budget).
    pub fn merge(&mut self, mut other: Reservation) {
        debug_assert!(self.budget.same_as(&other.budget));
        let n = std::mem::take(&mut other.bytes);
        if let Some(p) = &other.prepaid {
            p.fetch_sub(n, Relaxed);
        }
        if let Some(p) = &self.prepaid {
            p.fetch_add(n, Relaxed);
        }
        self.bytes += n;
    }

    /// Gives `bytes` back early (at most what is held).
    pub fn release(&mut self, bytes: u64) {
        let n = bytes.min(self.bytes);
        if n == 0 {
            return;
        }
        self.bytes -= n;
        if let Some(p) = &self.prepaid {
            p.fetch_sub(n, Relaxed);
        }
        self.budget.note_reserved(-(n as i64));
        self.budget.release(n);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let n = self.bytes;
        self.release(n);
    }
}

/// One request's handle on the budget, placed in the request extensions by the layer that
/// accounts for the request's memory (the interceptor), and used by layers that reserve memory on
/// the request's behalf (the body layer buffering a body).
///
/// Reservations taken through it are *prepaid*: the accounting layer, which measures every byte
/// the request allocates, subtracts them from what it charges, so buffered bytes are counted
/// once, not twice.
#[derive(Clone)]
pub struct RequestBudget {
    budget: MemoryBudget,
    prepaid: Arc<AtomicU64>,
}

impl fmt::Debug for RequestBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBudget")
            .field("prepaid", &self.prepaid())
            .finish()
    }
}

impl RequestBudget {
    /// A handle for one request on `budget`.
    pub fn new(budget: MemoryBudget) -> Self {
        RequestBudget {
            budget,
            prepaid: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The shared budget.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Bytes reserved through this handle and still held.
    #[inline]
    pub fn prepaid(&self) -> u64 {
        self.prepaid.load(Relaxed)
    }

    /// Like [`MemoryBudget::try_reserve`], prepaid for this request.
    pub fn try_reserve(&self, bytes: u64) -> Result<Reservation, BudgetError> {
        let r = self.budget.try_reserve(bytes)?;
        Ok(self.prepay(r))
    }

    /// Like [`MemoryBudget::reserve`], prepaid for this request.
    pub async fn reserve(&self, bytes: u64, wait: Duration) -> Result<Reservation, BudgetError> {
        let r = self.budget.reserve(bytes, wait).await?;
        Ok(self.prepay(r))
    }

    fn prepay(&self, mut r: Reservation) -> Reservation {
        let bytes = std::mem::take(&mut r.bytes);
        drop(r);
        Reservation::new(self.budget.clone(), bytes, Some(Arc::clone(&self.prepaid)))
    }
}
