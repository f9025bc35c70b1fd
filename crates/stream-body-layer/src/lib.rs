//! Tower layer that bounds request-body memory: size limits, a process-wide memory budget, spill to disk, and a slow-body guard.
//!
//! Not built yet: this crate is filled by its own issue (see `../shared/DESIGN.md`).
