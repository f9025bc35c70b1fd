//! Memory-aware Tower middleware for axum, hyper and tonic services.
//!
//! This umbrella crate re-exports the workspace's crates, each behind a feature of the same
//! purpose (all on by default):
//!
//! - [`probe`] ([`memory_probe`], always): allocation counters, allocator, process and cgroup
//!   memory, memory release and the pressure signal.
//!
//! # Example
//!
//! ```
//! use tower_memory::prelude::*;
//!
//! let signal = PressureSignal::new();
//! assert_eq!(signal.current(), Pressure::Normal);
//! let _ = thread_counters();
//! ```

pub use memory_probe as probe;

/// The types most programs need, in one import.
pub mod prelude {
    pub use memory_probe::{
        AllocCounters, CountingAlloc, Pressure, PressureSignal, Reclaimer, thread_counters,
    };
}
