//! The allocators' release calls: purge everything now (a reclaim run), or let time-based decay
//! run.

use crate::{AllocatorKind, ProbeError};

/// The allocator's release call: what one reclaim run does.
pub(super) fn release(allocator: AllocatorKind) -> Result<(), ProbeError> {
    match allocator {
        #[cfg(feature = "jemalloc")]
        AllocatorKind::Jemalloc => crate::jemalloc::purge_all_arenas(),
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        AllocatorKind::Glibc => {
            // SAFETY: malloc_trim is safe to call at any time from any thread.
            unsafe { libc::malloc_trim(0) };
            Ok(())
        }
        #[cfg(feature = "mimalloc")]
        AllocatorKind::Mimalloc => {
            // SAFETY: mi_collect may be called from any thread at any time.
            unsafe { libmimalloc_sys::mi_collect(true) };
            Ok(())
        }
        other => Err(ProbeError::Allocator(format!(
            "no release call for the {other} allocator"
        ))),
    }
}

/// Runs the allocator's time-based decay now: with jemalloc (feature `jemalloc`, installed as
/// the global allocator) every arena returns the freed pages whose decay time has passed
/// (`arena.<all>.decay`); cheap when there is nothing to return. `Ok(false)` for an allocator
/// without such a control. Unlike [`Reclaimer::reclaim`](crate::Reclaimer::reclaim) it keeps recently freed pages for reuse;
/// a program calls it periodically so that an idle process still decays.
pub fn decay_allocator() -> Result<bool, crate::ProbeError> {
    match crate::self_check().allocator {
        #[cfg(feature = "jemalloc")]
        crate::AllocatorKind::Jemalloc => crate::jemalloc::decay_all_arenas().map(|()| true),
        _ => Ok(false),
    }
}

/// Returns every freed page the allocator keeps to the operating system now (jemalloc: all
/// arenas' dirty and muzzy pages, as [`Reclaimer::reclaim`](crate::Reclaimer::reclaim) does, but synchronously and without
/// a report, rate limit or count). For an allocator profile's own upkeep; programs ask a
/// [`Reclaimer`](crate::Reclaimer). `Ok(false)` for an allocator without such a control.
pub fn purge_allocator() -> Result<bool, crate::ProbeError> {
    match crate::self_check().allocator {
        #[cfg(feature = "jemalloc")]
        crate::AllocatorKind::Jemalloc => crate::jemalloc::purge_all_arenas().map(|()| true),
        _ => Ok(false),
    }
}
