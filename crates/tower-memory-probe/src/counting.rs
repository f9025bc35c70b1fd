//! `CountingAlloc`: per-thread allocation counters for allocators that keep none of their own.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

use crate::AllocCounters;

// `const` thread-locals without a destructor compile to a plain TLS slot: no lazy-init check and
// no registration, and they stay usable while the thread is being torn down, which matters because
// the allocator runs during thread-local destructors of other values.
thread_local! {
    static ALLOCATED: Cell<u64> = const { Cell::new(0) };
    static DEALLOCATED: Cell<u64> = const { Cell::new(0) };
}

/// A global-allocator wrapper that counts, per thread, the bytes allocated and freed through it.
///
/// Use it over any allocator without per-thread counters of its own (`System`, mimalloc). A
/// `realloc` counts as a free of the old size and an allocation of the new one, so a growing
/// `Vec` is charged for every buffer it held. The cost is two thread-local additions per call.
///
/// ```
/// use tower_memory_probe::CountingAlloc;
/// use std::alloc::System;
///
/// #[global_allocator]
/// static ALLOC: CountingAlloc<System> = CountingAlloc::new(System);
/// # fn main() {}
/// ```
#[derive(Debug, Default)]
pub struct CountingAlloc<A> {
    inner: A,
}

impl<A> CountingAlloc<A> {
    /// Wraps `inner`. `const`, so it can initialise a `static`.
    pub const fn new(inner: A) -> Self {
        Self { inner }
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &A {
        &self.inner
    }

    /// The calling thread's counters as kept by `CountingAlloc` (zeros when none is installed).
    /// [`crate::thread_counters`] reads these when the wrapper is the live backend.
    #[inline]
    pub fn thread_counters() -> AllocCounters {
        read()
    }
}

#[inline(always)]
fn sub(cell: &'static std::thread::LocalKey<Cell<u64>>, bytes: usize) {
    cell.set(cell.get().wrapping_sub(bytes as u64));
}

#[inline(always)]
fn add(cell: &'static std::thread::LocalKey<Cell<u64>>, bytes: usize) {
    cell.set(cell.get().wrapping_add(bytes as u64));
}

// SAFETY: every method forwards to the wrapped allocator with the caller's arguments unchanged and
// returns its result; the counters are side effects that never touch the memory handed out.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAlloc<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Counted before the call so the addition overlaps with the allocator's work; undone
        // in the rare failure.
        add(&ALLOCATED, layout.size());
        // SAFETY: forwarded contract of `GlobalAlloc::alloc`.
        let ptr = unsafe { self.inner.alloc(layout) };
        if ptr.is_null() {
            sub(&ALLOCATED, layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // Counted before the call so the addition overlaps with the allocator's work; undone
        // in the rare failure.
        add(&ALLOCATED, layout.size());
        // SAFETY: forwarded contract of `GlobalAlloc::alloc_zeroed`.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        if ptr.is_null() {
            sub(&ALLOCATED, layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Counted before the call: the addition then overlaps with the allocator's own work
        // instead of trailing it (measured in benches/probe.rs).
        add(&DEALLOCATED, layout.size());
        // SAFETY: forwarded contract of `GlobalAlloc::dealloc`.
        unsafe { self.inner.dealloc(ptr, layout) };
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract of `GlobalAlloc::realloc`.
        let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            add(&DEALLOCATED, layout.size());
            add(&ALLOCATED, new_size);
        }
        new
    }
}

/// This thread's counters as kept by `CountingAlloc`.
#[inline(always)]
pub(crate) fn read() -> AllocCounters {
    AllocCounters {
        allocated: ALLOCATED.get(),
        deallocated: DEALLOCATED.get(),
    }
}
