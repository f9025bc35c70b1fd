//! Memory monitor, pressure, reclaim schedule, health/readiness/metrics/heap-profile endpoints and load shedding for Tower services.
//!
//! Not built yet: this crate is filled by its own issue (see `../shared/DESIGN.md`).
