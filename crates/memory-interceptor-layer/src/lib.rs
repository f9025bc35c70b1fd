//! Tower layer that measures, per request, the bytes each request allocates, with reports, a
//! ledger of memory-intensive routes and an optional per-request memory quota.
//!
//! The layer itself is built by its own issue; the [`Ledger`] is here first because
//! `memory-health` shows its figures.
//!
//! ```
//! use memory_interceptor_layer::Ledger;
//!
//! let ledger = Ledger::new(128);
//! ledger.record("/api/hello", 512);
//! assert_eq!(ledger.top(5)[0].requests, 1);
//! ```

mod ledger;

pub use ledger::{Ledger, OTHER_ROUTE, RouteStats};
