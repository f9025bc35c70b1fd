//! jemalloc's heap profiler: whether it runs, and a dump of its profile to a file.

use std::ffi::CString;
use std::path::Path;

use crate::jemalloc_ctl::{opt_prof, prof_active, prof_dump};
use crate::{AllocatorKind, ProbeError, self_check};

/// Whether jemalloc's heap profiler can produce a profile now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeapProfiling {
    /// jemalloc is not the global allocator, so its profiler sees nothing.
    NotJemalloc(AllocatorKind),
    /// jemalloc runs without `prof:true` (or was built without profiling).
    NotEnabled,
    /// Profiling is enabled but `prof.active` is false.
    NotActive,
    /// Profiling is on: a dump reflects the live heap (sampled).
    Active,
}

/// What jemalloc's profiler says now: on, paused, off, or not jemalloc at all.
pub fn heap_profiling() -> HeapProfiling {
    let allocator = self_check().allocator;
    if allocator != AllocatorKind::Jemalloc {
        return HeapProfiling::NotJemalloc(allocator);
    }
    // On a jemalloc built without profiling the read fails and counts as off.
    let enabled = opt_prof().unwrap_or(false);
    if !enabled {
        return HeapProfiling::NotEnabled;
    }
    let active = prof_active().unwrap_or(false);
    if active {
        HeapProfiling::Active
    } else {
        HeapProfiling::NotActive
    }
}

/// Has jemalloc write its heap profile (its own text format) to `path`.
///
/// jemalloc opens the file itself (`O_CREAT|O_TRUNC`, mode 0644 when it creates it): create the
/// file first with the mode you want, and the mode is kept. Blocking.
pub fn dump_heap_profile(path: &Path) -> Result<(), ProbeError> {
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| ProbeError::Allocator(format!("{} contains a NUL byte", path.display())))?;
    prof_dump(&c_path)
        .map_err(|e| ProbeError::Allocator(format!("prof.dump to {}: {e}", path.display())))
}
