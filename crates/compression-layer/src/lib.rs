//! Tower layers for fast, memory-bounded response compression and bomb-proof request decompression.
//!
//! Not built yet: this crate is filled by its own issue (see `../shared/DESIGN.md`).
