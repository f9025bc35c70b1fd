//! Tower layer that measures, per request, the bytes each request allocates, with reports, a ledger of memory-intensive routes and an optional per-request memory quota.
//!
//! Not built yet: this crate is filled by its own issue (see `../shared/DESIGN.md`).
