//! jemalloc heap profiles in pprof format (feature `heap-profile`).
//!
//! The dump (`prof.dump` to a temporary file), the parse of jemalloc's text format, the
//! process's mappings and the pprof protobuf encoding come from `jemalloc_pprof`, which
//! Polar Signals maintains for exactly this; its tree adds a handful of small crates
//! (anyhow, num, paste, mappings) to prost, flate2 and tempfile, which the workspace has anyway.

use std::path::Path;

use memory_probe::{AllocatorKind, self_check};
use tikv_jemalloc_ctl::raw;

/// Why no heap profile could be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeapProfileError {
    /// jemalloc is not the global allocator, so its profiler sees nothing.
    #[error("heap profiles need jemalloc as the global allocator; the heap is served by {0}")]
    NotJemalloc(AllocatorKind),
    /// jemalloc runs without `prof:true`.
    #[error(
        "jemalloc heap profiling is off: start the process with _RJEM_MALLOC_CONF=prof:true (or export _rjem_malloc_conf)"
    )]
    NotEnabled,
    /// Profiling is compiled in and enabled but not active (`prof.active` is false).
    #[error("jemalloc heap profiling is enabled but not active (prof.active=false)")]
    NotActive,
    /// The dump or its conversion failed.
    #[error("heap profile dump failed: {0}")]
    Dump(String),
    /// The profile could not be written.
    #[error("cannot write the heap profile: {0}")]
    Io(#[from] std::io::Error),
}

impl HeapProfileError {
    /// Whether the error means profiling is unavailable (HTTP 501) rather than failed (500).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            HeapProfileError::NotJemalloc(_)
                | HeapProfileError::NotEnabled
                | HeapProfileError::NotActive
        )
    }
}

/// Whether a heap profile can be taken now: jemalloc is the global allocator, started with
/// `prof:true`, and `prof.active` is set.
pub fn heap_profiling_status() -> Result<(), HeapProfileError> {
    let allocator = self_check().allocator;
    if allocator != AllocatorKind::Jemalloc {
        return Err(HeapProfileError::NotJemalloc(allocator));
    }
    // SAFETY: both controls are documented booleans; they exist because the feature builds
    // jemalloc with profiling.
    let enabled = unsafe { raw::read::<bool>(b"opt.prof\0") }.unwrap_or(false);
    if !enabled {
        return Err(HeapProfileError::NotEnabled);
    }
    // SAFETY: as above.
    let active = unsafe { raw::read::<bool>(b"prof.active\0") }.unwrap_or(false);
    if !active {
        return Err(HeapProfileError::NotActive);
    }
    Ok(())
}

/// Dumps the heap profile and returns it as a gzipped pprof protobuf (`go tool pprof` reads it).
///
/// Blocking (a file dump and a parse): call it from a blocking thread, never on an async task.
pub fn heap_profile() -> Result<Vec<u8>, HeapProfileError> {
    heap_profiling_status()?;
    let ctl = jemalloc_pprof::PROF_CTL
        .as_ref()
        .ok_or(HeapProfileError::NotEnabled)?;
    // One dump at a time: jemalloc_pprof keeps its profiler state behind this lock.
    let mut ctl = ctl.blocking_lock();
    ctl.dump_pprof()
        .map_err(|e| HeapProfileError::Dump(format!("{e:#}")))
}

/// Writes the heap profile (gzipped pprof) to `path`; returns its size. Blocking, like
/// [`heap_profile`].
pub fn write_heap_profile(path: impl AsRef<Path>) -> Result<u64, HeapProfileError> {
    let profile = heap_profile()?;
    std::fs::write(path, &profile)?;
    Ok(profile.len() as u64)
}

/// A bearer token kept only as its SHA-256 digest, compared in constant time.
///
/// Hashing first makes the comparison independent of the presented token's length too.
#[derive(Clone)]
pub(crate) struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub(crate) fn new(token: &str) -> Self {
        Self(digest(token.as_bytes()))
    }

    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(digest(presented).ct_eq(&self.0))
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).into()
}
