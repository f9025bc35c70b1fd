//! jemalloc backend: per-thread counters through cached pointers, statistics, purge.

use std::cell::Cell;
use std::ptr;

use crate::{AllocCounters, AllocatorStats, ProbeError};

// jemalloc hands out a pointer to each thread's own counter; reading through it is one load.
// Caching the pair per thread turns the lookup (a mallctl call) into a one-time cost per thread.
thread_local! {
    static POINTERS: Cell<(*const u64, *const u64)> = const { Cell::new((ptr::null(), ptr::null())) };
}

#[inline(always)]
pub(crate) fn read() -> AllocCounters {
    let (a, d) = POINTERS.get();
    if a.is_null() {
        return read_slow();
    }
    // SAFETY: the pointers come from `thread.allocatedp`/`thread.deallocatedp` for this very
    // thread and stay valid for the thread's life; jemalloc only writes them from this thread.
    unsafe {
        AllocCounters {
            allocated: ptr::read_volatile(a),
            deallocated: ptr::read_volatile(d),
        }
    }
}

#[cold]
#[inline(never)]
fn read_slow() -> AllocCounters {
    // SAFETY: both ctls are documented to yield a `uint64_t *` for the calling thread.
    let pair = unsafe {
        (
            tikv_jemalloc_ctl::raw::read::<*const u64>(b"thread.allocatedp\0"),
            tikv_jemalloc_ctl::raw::read::<*const u64>(b"thread.deallocatedp\0"),
        )
    };
    match pair {
        (Ok(a), Ok(d)) if !a.is_null() && !d.is_null() => {
            POINTERS.set((a, d));
            read()
        }
        _ => AllocCounters::default(),
    }
}

/// Statistics after advancing the epoch (jemalloc caches them until then).
pub(crate) fn stats() -> Result<AllocatorStats, ProbeError> {
    use tikv_jemalloc_ctl::{epoch, stats};
    let err = |e: tikv_jemalloc_ctl::Error| ProbeError::Allocator(e.to_string());
    epoch::advance().map_err(err)?;
    Ok(AllocatorStats {
        allocated_bytes: Some(stats::allocated::read().map_err(err)? as u64),
        active_bytes: Some(stats::active::read().map_err(err)? as u64),
        resident_bytes: Some(stats::resident::read().map_err(err)? as u64),
        mapped_bytes: Some(stats::mapped::read().map_err(err)? as u64),
        retained_bytes: Some(stats::retained::read().map_err(err)? as u64),
        metadata_bytes: Some(stats::metadata::read().map_err(err)? as u64),
    })
}

/// `arena.<MALLCTL_ARENAS_ALL>.purge`: returns every arena's dirty and muzzy pages to the OS.
pub(crate) fn purge_all_arenas() -> Result<(), ProbeError> {
    // MALLCTL_ARENAS_ALL is 4096 in jemalloc 5.
    valueless(c"arena.4096.purge")
}

/// `arena.<MALLCTL_ARENAS_ALL>.decay`: every arena purges the unused pages whose decay time has
/// passed. Cheap when there is nothing to do. jemalloc ignores it while its own background
/// threads are on (they purge instead).
pub(crate) fn decay_all_arenas() -> Result<(), ProbeError> {
    valueless(c"arena.4096.decay")
}

/// Calls a control that takes no value: with null old and new pointers, as jemalloc requires
/// (tikv-jemalloc-ctl has no wrapper for these).
fn valueless(name: &std::ffi::CStr) -> Result<(), ProbeError> {
    // SAFETY: a NUL-terminated name and null in/out pointers, as value-less ctls require.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(ProbeError::Allocator(format!(
            "mallctl({}) failed with error {rc}",
            name.to_string_lossy()
        )))
    }
}
