//! Per-thread allocation counters and the start-up self-check that picks their backend.

use std::fmt;
use std::hint::black_box;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::counting;

/// Cumulative bytes allocated and freed by one thread since it started.
///
/// Both counters only grow (they wrap at `u64::MAX`, which no process reaches); take two readings
/// on the same thread and subtract with [`AllocCounters::since`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AllocCounters {
    /// Bytes allocated by this thread.
    pub allocated: u64,
    /// Bytes freed by this thread.
    pub deallocated: u64,
}

impl AllocCounters {
    /// What happened between `earlier` and `self` (both read on the same thread).
    #[inline]
    pub fn since(self, earlier: AllocCounters) -> AllocCounters {
        AllocCounters {
            allocated: self.allocated.wrapping_sub(earlier.allocated),
            deallocated: self.deallocated.wrapping_sub(earlier.deallocated),
        }
    }

    /// `allocated - deallocated`, signed: memory freed here that was allocated elsewhere makes it
    /// negative.
    #[inline]
    pub fn net(self) -> i64 {
        self.allocated.wrapping_sub(self.deallocated) as i64
    }
}

/// Where [`thread_counters`] reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// jemalloc's `thread.allocatedp` / `thread.deallocatedp` counters.
    Jemalloc,
    /// The thread-locals kept by [`crate::CountingAlloc`].
    Counting,
    /// No counting backend is live: [`thread_counters`] returns zeros.
    None,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Jemalloc => "jemalloc",
            Backend::Counting => "counting",
            Backend::None => "none",
        })
    }
}

/// Which allocator serves the process's heap (the one the [`crate::Reclaimer`] has to talk to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocatorKind {
    /// jemalloc (through `tikv-jemallocator`), possibly wrapped in a `CountingAlloc`.
    Jemalloc,
    /// mimalloc, possibly wrapped in a `CountingAlloc` (detected with the `mimalloc` feature).
    Mimalloc,
    /// The system allocator of a glibc target.
    Glibc,
    /// Something else: nothing can be released or asked.
    Unknown,
}

impl fmt::Display for AllocatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AllocatorKind::Jemalloc => "jemalloc",
            AllocatorKind::Mimalloc => "mimalloc",
            AllocatorKind::Glibc => "glibc",
            AllocatorKind::Unknown => "unknown",
        })
    }
}

/// The result of [`self_check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfCheck {
    /// The backend [`thread_counters`] uses.
    pub backend: Backend,
    /// The allocator that serves the heap.
    pub allocator: AllocatorKind,
    /// Problems found, in words (also logged as `tracing` warnings the first time).
    pub warnings: Vec<String>,
}

const UNKNOWN: u8 = 0;
const JEMALLOC: u8 = 1;
const COUNTING: u8 = 2;
const NONE: u8 = 3;

static BACKEND: AtomicU8 = AtomicU8::new(UNKNOWN);
static CHECK: OnceLock<SelfCheck> = OnceLock::new();

/// The calling thread's cumulative allocation counters.
///
/// One relaxed atomic load to know the backend, then one or two thread-local loads. The first call
/// in the process runs [`self_check`].
#[inline]
pub fn thread_counters() -> AllocCounters {
    match BACKEND.load(Ordering::Relaxed) {
        COUNTING => counting::read(),
        #[cfg(feature = "jemalloc")]
        JEMALLOC => crate::jemalloc::read(),
        NONE => AllocCounters::default(),
        _ => slow_first_read(),
    }
}

#[cold]
#[inline(never)]
fn slow_first_read() -> AllocCounters {
    self_check();
    thread_counters()
}

/// Finds out, once per process, which counter backend is live and which allocator serves the heap,
/// and logs a warning when the result means the counters would stay at zero (for example jemalloc
/// linked in but not installed as the global allocator). Later calls return the cached result.
pub fn self_check() -> &'static SelfCheck {
    CHECK.get_or_init(|| {
        let check = detect();
        BACKEND.store(
            match check.backend {
                Backend::Jemalloc => JEMALLOC,
                Backend::Counting => COUNTING,
                Backend::None => NONE,
            },
            Ordering::Relaxed,
        );
        for w in &check.warnings {
            tracing::warn!(target: "tower_memory_probe", "{w}");
        }
        tracing::debug!(
            target: "tower_memory_probe",
            backend = %check.backend,
            allocator = %check.allocator,
            "allocation counter self-check"
        );
        check
    })
}

/// Allocates and frees a block big enough to bypass any thread cache and sees which counters move.
fn probe_allocation() -> (bool, bool) {
    const PROBE: usize = 64 * 1024;
    let counting_before = counting::read();
    #[cfg(feature = "jemalloc")]
    let jemalloc_before = crate::jemalloc::read();
    let block: Vec<u8> = Vec::with_capacity(PROBE);
    black_box(&block);
    drop(block);
    let counting_moved = counting::read().since(counting_before).allocated >= PROBE as u64;
    #[cfg(feature = "jemalloc")]
    let jemalloc_moved = crate::jemalloc::read().since(jemalloc_before).allocated >= PROBE as u64;
    #[cfg(not(feature = "jemalloc"))]
    let jemalloc_moved = false;
    (counting_moved, jemalloc_moved)
}

fn detect() -> SelfCheck {
    // Counters can only move during the probe if the allocator that served it is the one that
    // keeps them: no flag on the allocation path is needed to know what is installed.
    let (counting_live, jemalloc_live) = probe_allocation();
    let mut warnings = Vec::new();

    let allocator = if jemalloc_live {
        AllocatorKind::Jemalloc
    } else if mimalloc_live() {
        AllocatorKind::Mimalloc
    } else if cfg!(all(target_os = "linux", target_env = "gnu")) {
        AllocatorKind::Glibc
    } else {
        AllocatorKind::Unknown
    };

    // jemalloc's own counters are exact and cost nothing extra; prefer them when live.
    let backend = if jemalloc_live {
        Backend::Jemalloc
    } else if counting_live {
        Backend::Counting
    } else {
        Backend::None
    };

    if cfg!(feature = "jemalloc") && !jemalloc_live {
        warnings.push(
            "jemalloc is linked (tower-memory-probe feature `jemalloc`) but is not the global allocator: \
             its counters and statistics stay at zero; install tikv_jemallocator::Jemalloc as \
             #[global_allocator] or wrap the allocator in tower_memory_probe::CountingAlloc"
                .to_string(),
        );
    }
    if backend == Backend::None {
        warnings.push(
            "no allocation counter backend is live: per-request memory accounting reads zero; \
             use jemalloc with the `jemalloc` feature or tower_memory_probe::CountingAlloc"
                .to_string(),
        );
    }
    SelfCheck {
        backend,
        allocator,
        warnings,
    }
}

#[cfg(feature = "mimalloc")]
fn mimalloc_live() -> bool {
    let probe = Box::new(0u64);
    let ptr = black_box(&*probe) as *const u64 as *const std::ffi::c_void;
    // SAFETY: `mi_is_in_heap_region` only inspects the address.
    unsafe { libmimalloc_sys::mi_is_in_heap_region(ptr) }
}

#[cfg(not(feature = "mimalloc"))]
fn mimalloc_live() -> bool {
    false
}
