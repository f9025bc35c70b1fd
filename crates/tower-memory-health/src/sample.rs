//! One reading of the process's memory, and where readings come from.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use tower_memory_probe::{
    AllocatorKind, AllocatorStats, CgroupMemory, ProbeError, ProcessMemory, allocator_stats,
    cgroup_memory_at, own_process_memory_at, physical_memory_at, self_check,
};

/// What a [`SampleSource`] read at one moment. Fields the source could not know are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// When the reading was taken. The trend and the reclaim schedule run on these instants, so
    /// a synthetic source can compress hours into a test.
    pub taken_at: Instant,
    /// The wall-clock time of the reading.
    pub wall_time: SystemTime,
    /// Resident, peak resident and virtual size of the process.
    pub process: Option<ProcessMemory>,
    /// The container's memory, when the process runs in a memory cgroup.
    pub cgroup: Option<CgroupMemory>,
    /// What the allocator says about its own memory.
    pub allocator: AllocatorStats,
    /// The allocator serving the heap.
    pub allocator_kind: AllocatorKind,
    /// Physical memory of the machine (the limit of last resort).
    pub physical_bytes: Option<u64>,
}

impl Sample {
    /// A reading taken at `taken_at` that knows nothing yet: fill in the fields you have.
    pub fn at(taken_at: Instant) -> Self {
        Self {
            taken_at,
            wall_time: SystemTime::now(),
            process: None,
            cgroup: None,
            allocator: AllocatorStats::default(),
            allocator_kind: AllocatorKind::Unknown,
            physical_bytes: None,
        }
    }
}

/// Why a reading failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SampleError {
    /// `/proc` or the cgroup tree could not be read or parsed.
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// A custom source failed.
    #[error("sample source failed: {0}")]
    Source(String),
    /// The blocking task that reads the source panicked or was cancelled.
    #[error("sampling task failed: {0}")]
    Task(String),
}

/// Where the [`MemoryMonitor`](crate::MemoryMonitor) gets its readings.
///
/// [`ProbeSource`] reads the real process through `tower-memory-probe`; tests and simulations supply
/// their own (any `Fn() -> Result<Sample, SampleError>` closure is a source). `sample` runs on
/// Tokio's blocking pool, so a source may block; one that never returns stalls the monitor, which
/// `/health/live` then reports.
pub trait SampleSource: Send + Sync + 'static {
    /// Takes one reading.
    fn sample(&self) -> Result<Sample, SampleError>;
}

impl<F> SampleSource for F
where
    F: Fn() -> Result<Sample, SampleError> + Send + Sync + 'static,
{
    fn sample(&self) -> Result<Sample, SampleError> {
        self()
    }
}

/// The real source: `/proc/self/status`, the process's cgroup, `/proc/meminfo` and the
/// allocator's statistics.
#[derive(Debug, Clone)]
pub struct ProbeSource {
    root: PathBuf,
}

impl ProbeSource {
    /// Reads the running process under `/`.
    pub fn new() -> Self {
        Self::at("/")
    }

    /// Reads `<root>/proc/self/status`, `<root>/proc/meminfo` and the cgroup files under `root`
    /// (a fixture tree in tests). The allocator statistics are always this process's own.
    pub fn at(root: impl AsRef<Path>) -> Self {
        Self {
            root: root.as_ref().to_path_buf(),
        }
    }
}

impl Default for ProbeSource {
    fn default() -> Self {
        Self::new()
    }
}

impl SampleSource for ProbeSource {
    fn sample(&self) -> Result<Sample, SampleError> {
        let taken_at = Instant::now();
        // The own process's reader: where `/proc` cannot be read (macOS, Windows), the resident
        // set comes from the operating system instead of failing every sample.
        let process = own_process_memory_at(&self.root.join("proc/self"))?;
        // A cgroup that exists but cannot be parsed is an error, not "no cgroup": falling back to
        // physical memory would silently raise the limit.
        let cgroup = cgroup_memory_at(&self.root)?;
        let allocator = match allocator_stats() {
            Ok(stats) => stats,
            Err(e) => {
                tracing::debug!(target: "tower_memory_health", error = %e, "allocator statistics unavailable");
                AllocatorStats::default()
            }
        };
        Ok(Sample {
            taken_at,
            wall_time: SystemTime::now(),
            process: Some(process),
            cgroup,
            allocator,
            allocator_kind: self_check().allocator,
            physical_bytes: physical_memory_at(&self.root).ok(),
        })
    }
}
