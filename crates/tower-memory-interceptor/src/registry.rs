//! The registry of in-flight accounts: where largest-first aborts (pressure) and
//! furthest-over-reservation aborts (governor) find their victims.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use slab::Slab;

use crate::account::{Account, State};

/// The accounts of the requests in flight that could be victims: a request is registered when it
/// first holds (or reserves) at least the smallest amount a victim search looks at (the
/// pressure aborter's `min_bytes`, the governor's floor), so the many small requests never take
/// the shard lock.
///
/// Sharded: each thread registers in a shard of its own choosing (round-robin on first use), so
/// worker threads registering and finishing requests do not contend for one lock. A victim search
/// (rare: a pressure tick, a park timeout) visits every shard.
pub(crate) struct Registry {
    shards: Box<[Mutex<Slab<Weak<Account>>>]>,
}

// A registry key: the shard in the low bits, the slab key above them.
const SHARD_BITS: u32 = 6;
const MAX_SHARDS: usize = 1 << SHARD_BITS;

/// The key of an account that is in no registry.
pub(crate) const UNREGISTERED: usize = usize::MAX;

thread_local! {
    static SHARD_HINT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's shard index (a stable, round-robin assignment).
fn shard_hint() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    SHARD_HINT
        .try_with(|hint| {
            if hint.get() == usize::MAX {
                hint.set(NEXT.fetch_add(1, Ordering::Relaxed));
            }
            hint.get()
        })
        .unwrap_or(0)
}

impl Registry {
    pub(crate) fn new() -> Registry {
        let shards = std::thread::available_parallelism()
            .map_or(4, |n| n.get())
            .next_power_of_two()
            .clamp(1, MAX_SHARDS);
        Registry {
            shards: (0..shards).map(|_| Mutex::new(Slab::new())).collect(),
        }
    }

    fn shard(&self, index: usize) -> MutexGuard<'_, Slab<Weak<Account>>> {
        // Entries are plain `Weak`s: a panic elsewhere cannot leave a slab half-updated.
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers `account`; returns its key.
    pub(crate) fn register(&self, account: &Arc<Account>) -> usize {
        let index = shard_hint() & (self.shards.len() - 1);
        let mut slab = self.shard(index);
        (slab.insert(Arc::downgrade(account)) << SHARD_BITS) | index
    }

    pub(crate) fn deregister(&self, key: usize) {
        let index = key & (MAX_SHARDS - 1);
        if key != UNREGISTERED && index < self.shards.len() {
            self.shard(index).try_remove(key >> SHARD_BITS);
        }
    }

    /// Requests in flight.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        (0..self.shards.len()).map(|i| self.shard(i).len()).sum()
    }

    /// Whether a registered account (finished ones leave) satisfies `f`.
    pub(crate) fn any(&self, f: impl Fn(&Account) -> bool) -> bool {
        (0..self.shards.len()).any(|index| {
            self.shard(index)
                .iter()
                .filter_map(|(_, weak)| weak.upgrade())
                .any(|a| f(&a))
        })
    }

    /// The live accounts (not finished, not already marked for abort) with their `rank`, largest
    /// first; `rank` returns `None` for accounts that are not candidates.
    pub(crate) fn ranked(
        &self,
        rank: impl Fn(&Account) -> Option<i64>,
    ) -> Vec<(i64, Arc<Account>)> {
        let mut candidates: Vec<(i64, Arc<Account>)> = Vec::new();
        for index in 0..self.shards.len() {
            let slab = self.shard(index);
            candidates.extend(
                slab.iter()
                    .filter_map(|(_, weak)| weak.upgrade())
                    .filter(|a| a.state() == State::Live)
                    .filter_map(|a| rank(&a).map(|r| (r, a))),
            );
        }
        candidates.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
        candidates
    }
}
