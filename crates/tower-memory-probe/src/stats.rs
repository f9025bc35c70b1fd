//! Allocator statistics.

use crate::{AllocatorKind, ProbeError, self_check};

/// What the allocator reports about its own memory. Fields it does not know are `None`.
///
/// For jemalloc the figures are its `stats.*` values (see jemalloc's manual). For glibc they come
/// from `mallinfo2`: `allocated_bytes` is in-use bytes including mmapped chunks, `mapped_bytes` the
/// arena plus mmapped space.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorStats {
    /// Bytes in live allocations.
    pub allocated_bytes: Option<u64>,
    /// Bytes in active pages (allocated plus page-level fragmentation).
    pub active_bytes: Option<u64>,
    /// Bytes in physically resident pages the allocator maps (data and metadata).
    pub resident_bytes: Option<u64>,
    /// Bytes in active extents mapped by the allocator.
    pub mapped_bytes: Option<u64>,
    /// Bytes in virtual memory the allocator retains (unmapped from use, not returned).
    pub retained_bytes: Option<u64>,
    /// Bytes the allocator spends on its own metadata.
    pub metadata_bytes: Option<u64>,
}

impl AllocatorStats {
    /// `active / allocated - 1`: the share of active pages not holding live data. `None` when
    /// either figure is unknown or nothing is allocated.
    pub fn fragmentation_ratio(&self) -> Option<f64> {
        let (allocated, active) = (self.allocated_bytes?, self.active_bytes?);
        (allocated > 0).then(|| active as f64 / allocated as f64 - 1.0)
    }
}

/// Reads the statistics of the allocator that serves the heap. Not for the request path: on
/// jemalloc it advances the statistics epoch, on glibc `mallinfo2` walks every arena under locks.
pub fn allocator_stats() -> Result<AllocatorStats, ProbeError> {
    match self_check().allocator {
        #[cfg(feature = "jemalloc")]
        AllocatorKind::Jemalloc => crate::jemalloc::stats(),
        AllocatorKind::Glibc => Ok(glibc_stats()),
        _ => Ok(AllocatorStats::default()),
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn glibc_stats() -> AllocatorStats {
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct.
    let info = unsafe { libc::mallinfo2() };
    AllocatorStats {
        allocated_bytes: Some((info.uordblks + info.hblkhd) as u64),
        mapped_bytes: Some((info.arena + info.hblkhd) as u64),
        ..AllocatorStats::default()
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn glibc_stats() -> AllocatorStats {
    AllocatorStats::default()
}
