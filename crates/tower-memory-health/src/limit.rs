//! Which limit usage is measured against, and what counts as usage.

use std::fmt;

use tower_memory_probe::{CgroupMemory, ProcessMemory};

/// Where the memory limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitSource {
    /// Set explicitly ([`MemoryMonitorBuilder::limit_bytes`](crate::MemoryMonitorBuilder::limit_bytes)).
    Configured,
    /// The cgroup's hard limit (`memory.max`, v1 `memory.limit_in_bytes`), smallest up the chain.
    CgroupMax,
    /// The cgroup's `memory.high`, where the kernel starts throttling and reclaiming.
    CgroupHigh,
    /// Physical memory: no smaller limit applies.
    PhysicalMemory,
}

impl LimitSource {
    /// `"configured"`, `"cgroup_max"`, `"cgroup_high"` or `"physical"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitSource::Configured => "configured",
            LimitSource::CgroupMax => "cgroup_max",
            LimitSource::CgroupHigh => "cgroup_high",
            LimitSource::PhysicalMemory => "physical",
        }
    }
}

impl fmt::Display for LimitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The limit usage is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimit {
    /// The limit in bytes.
    pub bytes: u64,
    /// Where it came from.
    pub source: LimitSource,
}

/// Resolves the limit: `configured` when given, unless the cgroup's effective limit is lower (the
/// kernel acts at the cgroup's limit whatever the configuration says: the configured one is
/// clamped to it); else the cgroup's effective limit (`memory.high` when set and lower, else
/// `memory.max`), unless physical memory is smaller (a container limit above the machine's memory
/// binds nothing); else physical memory.
pub(crate) fn resolve_limit(
    configured: Option<u64>,
    cgroup: Option<&CgroupMemory>,
    physical: Option<u64>,
) -> Option<MemoryLimit> {
    let from_cgroup = cgroup_limit(cgroup);
    if let Some(bytes) = configured {
        return match from_cgroup {
            Some(c) if c.bytes < bytes => Some(c),
            _ => Some(MemoryLimit {
                bytes,
                source: LimitSource::Configured,
            }),
        };
    }
    let from_physical = physical.map(|bytes| MemoryLimit {
        bytes,
        source: LimitSource::PhysicalMemory,
    });
    match (from_cgroup, from_physical) {
        (Some(c), Some(p)) if p.bytes < c.bytes => Some(p),
        (c, p) => c.or(p),
    }
}

fn cgroup_limit(cgroup: Option<&CgroupMemory>) -> Option<MemoryLimit> {
    cgroup.and_then(|c| {
        let bytes = c.effective_limit_bytes()?;
        let source = match (c.high_bytes, c.limit_bytes) {
            (Some(high), Some(max)) if high < max => LimitSource::CgroupHigh,
            (Some(_), None) => LimitSource::CgroupHigh,
            _ => LimitSource::CgroupMax,
        };
        Some(MemoryLimit { bytes, source })
    })
}

/// The usage measure: the larger of the process's resident set and the cgroup's working set
/// (`usage - inactive_file`, what the kubelet evicts on and the OOM killer sees). The resident set
/// alone misses page cache and other processes in the container; the working set alone is unknown
/// outside a cgroup.
pub fn usage_bytes(process: Option<&ProcessMemory>, cgroup: Option<&CgroupMemory>) -> Option<u64> {
    match (
        process.map(|p| p.rss_bytes),
        cgroup.map(|c| c.working_set_bytes),
    ) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_memory_probe::CgroupVersion;

    fn cgroup(limit: Option<u64>, high: Option<u64>, working_set: u64) -> CgroupMemory {
        CgroupMemory {
            version: CgroupVersion::V2,
            path: "/sys/fs/cgroup".into(),
            usage_bytes: working_set + 10,
            limit_bytes: limit,
            high_bytes: high,
            inactive_file_bytes: Some(10),
            working_set_bytes: working_set,
            oom_kills: None,
        }
    }

    #[test]
    fn precedence_and_sources() {
        let c = cgroup(Some(1000), None, 5);
        assert_eq!(
            resolve_limit(Some(7), Some(&c), Some(9)),
            Some(MemoryLimit {
                bytes: 7,
                source: LimitSource::Configured
            })
        );
        // A configured limit above the cgroup's is clamped to it: the kernel acts there.
        assert_eq!(
            resolve_limit(Some(4000), Some(&c), Some(9000)),
            Some(MemoryLimit {
                bytes: 1000,
                source: LimitSource::CgroupMax
            })
        );
        assert_eq!(
            resolve_limit(Some(4000), Some(&cgroup(None, None, 5)), Some(9000))
                .unwrap()
                .source,
            LimitSource::Configured,
            "no cgroup limit: nothing to clamp to"
        );
        assert_eq!(
            resolve_limit(None, Some(&c), Some(5000)).unwrap().source,
            LimitSource::CgroupMax
        );
        let high = cgroup(Some(1000), Some(800), 5);
        assert_eq!(
            resolve_limit(None, Some(&high), Some(5000)),
            Some(MemoryLimit {
                bytes: 800,
                source: LimitSource::CgroupHigh
            })
        );
        let high_only = cgroup(None, Some(800), 5);
        assert_eq!(
            resolve_limit(None, Some(&high_only), None).unwrap().source,
            LimitSource::CgroupHigh
        );
        // A container limit larger than the machine binds nothing.
        assert_eq!(
            resolve_limit(None, Some(&c), Some(600)).unwrap().source,
            LimitSource::PhysicalMemory
        );
        let unlimited = cgroup(None, None, 5);
        assert_eq!(
            resolve_limit(None, Some(&unlimited), Some(600))
                .unwrap()
                .bytes,
            600
        );
        assert_eq!(resolve_limit(None, Some(&unlimited), None), None);
    }

    #[test]
    fn usage_is_the_larger_measure() {
        let p = ProcessMemory {
            rss_bytes: 100,
            peak_rss_bytes: 200,
            virtual_bytes: 300,
        };
        let c = cgroup(None, None, 150);
        assert_eq!(usage_bytes(Some(&p), Some(&c)), Some(150));
        assert_eq!(usage_bytes(Some(&p), None), Some(100));
        assert_eq!(usage_bytes(None, Some(&c)), Some(150));
        assert_eq!(usage_bytes(None, None), None);
    }
}
