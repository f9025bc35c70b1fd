//! What the allocator and the kernel say about memory.
//!
//! Where this crate sits in the workspace, its code map and the invariants it keeps:
//! `ARCHITECTURE.md` at the repository root.
//!
//! `tower-memory-probe` is the leaf crate of the workspace. Every layer reads memory through it:
//!
//! - [`thread_counters`]: cumulative bytes allocated and freed by the calling thread, read in a
//!   couple of nanoseconds from jemalloc's per-thread counters or from [`CountingAlloc`], a wrapper
//!   around any other global allocator. [`self_check`] tells which backend is live.
//! - [`allocator_stats`]: allocated, active, resident, mapped, retained and metadata bytes as the
//!   allocator sees them (off the request path: it refreshes jemalloc's statistics epoch).
//! - [`process_memory`] and [`cgroup_memory`]: resident and peak resident set from `/proc`, and the
//!   container's usage, limit, working set and OOM kills from cgroup v2, v1 or a hybrid host. Every
//!   reader has an `_at(root)` form that reads a fixture tree instead of `/`.
//! - [`MemoryEvents`]: the kernel's own memory notifications for the process's cgroup (v1 usage
//!   thresholds and OOM through `cgroup.event_control`, v2 `memory.events` changes and PSI
//!   triggers on `memory.pressure`), so a monitor can re-sample at once instead of on its timer.
//! - [`Reclaimer`]: hands freed memory back to the operating system (jemalloc purge, glibc
//!   `malloc_trim`, mimalloc `mi_collect`) on a blocking thread, single-flight and rate-limited.
//! - [`MemoryBudget`]: the one process-wide budget of bytes requests may hold, shared by the
//!   layers (admission reservations, growth charged at poll boundaries, buffered bodies), with a
//!   bounded FIFO queue and a park for requests that grew past it.
//! - [`Pressure`] and [`PressureSignal`]: the memory pressure level, published by a monitor and
//!   read by layers without taking a lock.
//! - [`overload_body`], [`retry_after_seconds`], [`DEFAULT_RETRY_AFTER`]: the one format of the
//!   layers' memory 503s.
//! - [`set_metric_prefix`] and [`MetricName`]: one prefix for every metric name the workspace
//!   emits (default none), resolved once per name so that emitting costs what it did.
//!
//! # Example
//!
//! ```
//! use tower_memory_probe::{thread_counters, CountingAlloc};
//! use std::alloc::System;
//!
//! // Any allocator can be counted; with the `jemalloc` feature, jemalloc's own counters are used.
//! #[global_allocator]
//! static ALLOC: CountingAlloc<System> = CountingAlloc::new(System);
//!
//! let before = thread_counters();
//! let buffer = vec![0u8; 1 << 20];
//! drop(buffer);
//! let delta = thread_counters().since(before);
//! assert!(delta.allocated >= 1 << 20);
//! assert!(delta.deallocated >= 1 << 20);
//!
//! // /proc on Linux; elsewhere the operating system through memory-stats.
//! let rss = tower_memory_probe::process_memory().expect("a supported system");
//! assert!(rss.rss_bytes > 0 && rss.peak_rss_bytes >= rss.rss_bytes);
//! ```
//!
//! # Platforms
//!
//! Linux is where this crate reads the kernel and where it is tested. On macOS and Windows the
//! thread counters work the same (they come from the allocator: jemalloc or [`CountingAlloc`]),
//! [`process_memory`] answers from the `memory-stats` crate (resident and virtual size; the peak
//! is the largest resident size read), and what only Linux has is absent without an error:
//! [`cgroup_memory`] is `Ok(None)`, [`MemoryEvents`] fails to subscribe with a typed error,
//! [`physical_memory`] fails (configure a limit instead), `malloc_trim` is not called. The same
//! fallback answers on Linux when `/proc` cannot be read. Off Linux the crate is checked with
//! `cargo clippy` for x86_64-apple-darwin and x86_64-pc-windows-msvc, but it is not run there.
//! The table is `docs/platforms.md` at the repository root.
//!
//! # Features
//!
//! None is on by default; without them the crate needs no C toolchain, and counts through
//! [`CountingAlloc`].
//!
//! - `jemalloc` (builds jemalloc: a C toolchain): jemalloc counters, statistics and purge (through
//!   `tikv-jemalloc-ctl`). The program still has to install `tikv_jemallocator::Jemalloc` as its
//!   global allocator; [`self_check`] warns when it is linked but not installed.
//!   With it, [`heap_profiling`] and [`dump_heap_profile`] reach jemalloc's heap profiler (the
//!   program starts jemalloc with `prof:true`).
//! - `heap-profile` (implies `jemalloc`): jemalloc built with heap profiling (`tikv-jemalloc-ctl`'s
//!   `profiling`), so that `prof.*` controls work; tower-memory-health's `heap-profile` turns it on.
//! - `mimalloc` (builds mimalloc: a C toolchain): `mi_collect(true)` in the [`Reclaimer`] when
//!   mimalloc is the global allocator.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod budget;
mod cgroup;
mod counters;
mod counting;
pub mod env;
mod error;
mod events;
#[cfg(feature = "jemalloc")]
mod jemalloc;
#[cfg(feature = "jemalloc")]
pub mod jemalloc_ctl;
mod metric_name;
mod overload;
mod pressure;
mod process;
#[cfg(feature = "jemalloc")]
mod profiling;
mod reclaim;
mod statfs;
mod stats;

pub use budget::{
    Admission, BudgetError, BudgetStats, DEFAULT_BUDGET_CAPACITY, DEFAULT_FLOOR, DEFAULT_MAX_QUEUE,
    DEFAULT_PARK_TIMEOUT, DEFAULT_QUEUE_TIMEOUT, MemoryBudget, Park, RequestBudget, Reservation,
};
pub use cgroup::{CgroupMemory, CgroupVersion, cgroup_memory, cgroup_memory_at};
pub use counters::{AllocCounters, AllocatorKind, Backend, SelfCheck, self_check, thread_counters};
pub use counting::CountingAlloc;
pub use error::ProbeError;
pub use events::{EventSource, MemoryEvent, MemoryEvents, PSI_TRIGGER, SkipReason, Skipped};
pub use metric_name::{
    MetricName, MetricPrefixError, check_metric_prefix, metric_prefix, set_metric_prefix,
};
pub use overload::{
    DEFAULT_RETRY_AFTER, OVERLOAD_CONTENT_TYPE, overload_body, retry_after_seconds,
};
pub use pressure::{Pressure, PressureSignal};
pub use process::{
    ProcessMemory, own_process_memory_at, physical_memory, physical_memory_at, process_memory,
    process_memory_at, process_memory_of,
};
pub use reclaim::{
    RECLAIM_DURATION_METRIC, ReclaimError, ReclaimReport, ReclaimStats, ReclaimTrigger, Reclaimer,
    ReclaimerBuilder, TriggerStats, decay_allocator, purge_allocator,
};
pub use statfs::{FilesystemSpace, filesystem_space};
pub use stats::{AllocatorStats, allocator_stats};

/// The error type the layers' bodies and services box: `Box<dyn Error + Send + Sync>`, defined
/// once for the workspace (the same as tower's and tower-http's `BoxError`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[cfg(feature = "jemalloc")]
pub use profiling::{HeapProfiling, dump_heap_profile, heap_profiling};
