//! `MemorySnapshot`: what one sample showed, after the monitor classified it.

use std::time::{Instant, SystemTime};

use tower_memory_probe::{AllocatorKind, AllocatorStats, CgroupMemory, Pressure, ProcessMemory};

use super::pressure::Reading;
use crate::limit::MemoryLimit;
use crate::sample::Sample;
use crate::trend::TrendEstimate;

/// What one sample showed, after the monitor classified it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemorySnapshot {
    /// When the sample was taken.
    pub taken_at: Instant,
    /// The wall-clock time of the sample.
    pub wall_time: SystemTime,
    /// The pressure level after this sample (with hysteresis).
    pub pressure: Pressure,
    /// The usage measure: the larger of process RSS and cgroup working set.
    pub usage_bytes: Option<u64>,
    /// The limit usage is measured against.
    pub limit: Option<MemoryLimit>,
    /// `usage / limit`.
    pub usage_ratio: Option<f64>,
    /// Process memory.
    pub process: Option<ProcessMemory>,
    /// Container memory.
    pub cgroup: Option<CgroupMemory>,
    /// Allocator statistics.
    pub allocator: AllocatorStats,
    /// The allocator serving the heap.
    pub allocator_kind: AllocatorKind,
    /// The growth trend over the window, this sample included.
    pub trend: TrendEstimate,
    /// Whether the trend has stayed above the leak threshold for `leak_after`.
    pub leak_suspected: bool,
}

impl MemorySnapshot {
    /// Resident memory the allocator does not account for: the process's RSS minus the
    /// allocator's resident bytes (code, thread stacks, kernel-side buffers, memory mapped by C
    /// libraries past the allocator). `None` when either figure is unknown.
    pub fn non_allocator_resident_bytes(&self) -> Option<u64> {
        let rss = self.process?.rss_bytes;
        let allocator = self.allocator.resident_bytes?;
        Some(rss.saturating_sub(allocator))
    }
}

impl MemorySnapshot {
    /// The snapshot of `sample`, classified.
    pub(super) fn new(
        sample: Sample,
        pressure: Pressure,
        reading: &Reading,
        trend: TrendEstimate,
        leak_suspected: bool,
    ) -> Self {
        MemorySnapshot {
            taken_at: sample.taken_at,
            wall_time: sample.wall_time,
            pressure,
            usage_bytes: reading.usage,
            limit: reading.limit,
            usage_ratio: reading.ratio,
            process: sample.process,
            cgroup: sample.cgroup,
            allocator: sample.allocator,
            allocator_kind: sample.allocator_kind,
            trend,
            leak_suspected,
        }
    }
}
