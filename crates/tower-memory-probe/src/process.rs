//! Process memory from `/proc/<pid>/status` (elsewhere, the own process's from `memory-stats`)
//! and physical memory from `/proc/meminfo`.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ProbeError;
use crate::error::read_to_string;

/// The process's memory as the kernel accounts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessMemory {
    /// Resident set size now (`VmRSS`).
    pub rss_bytes: u64,
    /// Peak resident set size since start (`VmHWM`). Where `/proc` cannot be read, the largest
    /// resident size the fallback has read so far: a lower bound of the real peak.
    pub peak_rss_bytes: u64,
    /// Virtual memory size (`VmSize`).
    pub virtual_bytes: u64,
}

/// The calling process's memory, from `/proc/self/status`; where that file cannot be read (macOS,
/// Windows, a Linux container without `/proc`), the resident and virtual size the `memory-stats`
/// crate reads from the operating system (see [`own_process_memory_at`]).
pub fn process_memory() -> Result<ProcessMemory, ProbeError> {
    own_process_memory_at(Path::new("/proc/self"))
}

/// The calling process's memory from `<proc_self_dir>/status` (a fixture tree in tests), falling
/// back to `memory-stats` when that file cannot be read. Only a read error falls back: a file
/// that reads but does not parse is still an error. The error is returned when the fallback has
/// no figures either (an operating system `memory-stats` does not know).
///
/// ```
/// # fn main() -> Result<(), tower_memory_probe::ProbeError> {
/// // No `status` file here: the answer comes from the operating system.
/// let empty = std::env::temp_dir().join("no-such-proc-dir");
/// let me = tower_memory_probe::own_process_memory_at(&empty)?;
/// assert!(me.rss_bytes > 0 && me.peak_rss_bytes >= me.rss_bytes);
/// # Ok(())
/// # }
/// ```
pub fn own_process_memory_at(proc_self_dir: &Path) -> Result<ProcessMemory, ProbeError> {
    let error = match process_memory_at(proc_self_dir) {
        Err(error @ ProbeError::Io { .. }) => error,
        other => return other,
    };
    fallback().ok_or(error)
}

/// The largest resident size [`fallback`] has read: its stand-in for `VmHWM`.
static FALLBACK_PEAK: AtomicU64 = AtomicU64::new(0);

fn fallback() -> Option<ProcessMemory> {
    let stats = memory_stats::memory_stats()?;
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        tracing::debug!(
            target: "tower_memory_probe",
            "/proc/self/status cannot be read: process memory comes from memory-stats (peak resident size: the largest read)"
        );
    });
    let rss = stats.physical_mem as u64;
    let peak = FALLBACK_PEAK.fetch_max(rss, Ordering::Relaxed).max(rss);
    Some(ProcessMemory {
        rss_bytes: rss,
        peak_rss_bytes: peak,
        virtual_bytes: stats.virtual_mem as u64,
    })
}

/// Another process's memory, from `/proc/<pid>/status` (benchmarks and tests read their servers).
pub fn process_memory_of(pid: u32) -> Result<ProcessMemory, ProbeError> {
    process_memory_at(&PathBuf::from(format!("/proc/{pid}")))
}

/// The memory of the process whose `/proc` directory is `proc_pid_dir` (reads `<dir>/status`;
/// no fallback: it may be another process).
pub fn process_memory_at(proc_pid_dir: &Path) -> Result<ProcessMemory, ProbeError> {
    let path = proc_pid_dir.join("status");
    let text = read_to_string(&path)?;
    let field = |what: &'static str| -> Result<u64, ProbeError> {
        kib_field(&text, what, &path)?.ok_or_else(|| ProbeError::Missing {
            path: path.clone(),
            what,
        })
    };
    Ok(ProcessMemory {
        rss_bytes: field("VmRSS")?,
        peak_rss_bytes: field("VmHWM")?,
        virtual_bytes: field("VmSize")?,
    })
}

/// Physical memory of the machine (`MemTotal` of `/proc/meminfo`).
pub fn physical_memory() -> Result<u64, ProbeError> {
    physical_memory_at(Path::new("/"))
}

/// Physical memory read from `<root>/proc/meminfo`.
pub fn physical_memory_at(root: &Path) -> Result<u64, ProbeError> {
    let path = root.join("proc/meminfo");
    let text = read_to_string(&path)?;
    kib_field(&text, "MemTotal", &path)?.ok_or(ProbeError::Missing {
        path,
        what: "MemTotal",
    })
}

/// Resident bytes from `/proc/self/statm`: one short read, for before/after figures.
pub(crate) fn resident_now() -> Option<u64> {
    let Ok(text) = std::fs::read_to_string("/proc/self/statm") else {
        return fallback().map(|m| m.rss_bytes);
    };
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

#[cfg(unix)]
fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u64 } else { 4096 }
}

// Only reached after reading `/proc/self/statm`, which exists on no such system.
#[cfg(not(unix))]
fn page_size() -> u64 {
    4096
}

/// A `Name:   1234 kB` line of a `/proc` file, in bytes.
fn kib_field(text: &str, name: &'static str, path: &Path) -> Result<Option<u64>, ProbeError> {
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix(':') else {
            continue;
        };
        let value = rest.trim();
        let number = value.strip_suffix("kB").unwrap_or(value).trim();
        return number
            .parse::<u64>()
            .map(|kib| Some(kib * 1024))
            .map_err(|_| ProbeError::Parse {
                path: path.to_path_buf(),
                what: name,
                value: value.to_string(),
            });
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_fixture() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("status"),
            "Name:\tserver\nVmPeak:\t  300 kB\nVmSize:\t  200 kB\nVmHWM:\t   120 kB\nVmRSS:\t   100 kB\n",
        )
        .unwrap();
        let m = process_memory_at(dir.path()).unwrap();
        assert_eq!(
            m,
            ProcessMemory {
                rss_bytes: 100 * 1024,
                peak_rss_bytes: 120 * 1024,
                virtual_bytes: 200 * 1024
            }
        );
    }

    #[test]
    fn missing_and_garbled_fields_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("status"), "VmRSS:\t100 kB\n").unwrap();
        assert!(matches!(
            process_memory_at(dir.path()),
            Err(ProbeError::Missing { what: "VmHWM", .. })
        ));
        std::fs::write(dir.path().join("status"), "VmRSS:\tlots kB\n").unwrap();
        assert!(matches!(
            process_memory_at(dir.path()),
            Err(ProbeError::Parse { what: "VmRSS", .. })
        ));
        assert!(matches!(
            process_memory_at(&dir.path().join("nope")),
            Err(ProbeError::Io { .. })
        ));
        // The own-process form falls back only when the file cannot be read.
        assert!(matches!(
            own_process_memory_at(dir.path()),
            Err(ProbeError::Parse { what: "VmRSS", .. })
        ));
    }

    #[test]
    fn an_unreadable_proc_falls_back_to_the_operating_systems_figures() {
        let empty = tempfile::tempdir().unwrap();
        let real = process_memory_at(Path::new("/proc/self")).unwrap();
        // Hold 64 MiB, touched, so that the fallback must see it in the resident set.
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let fallen = own_process_memory_at(empty.path()).unwrap();
        let real_after = process_memory_at(Path::new("/proc/self")).unwrap();
        assert!(
            fallen.rss_bytes >= real.rss_bytes + (60 << 20),
            "{fallen:?} vs {real:?}"
        );
        assert!(
            fallen.rss_bytes <= real_after.peak_rss_bytes,
            "{fallen:?} vs {real_after:?}"
        );
        assert!(fallen.peak_rss_bytes >= fallen.rss_bytes);
        assert!(fallen.virtual_bytes >= fallen.rss_bytes);
        drop(block);
        // The fallback's peak never goes down.
        let later = own_process_memory_at(empty.path()).unwrap();
        assert!(
            later.peak_rss_bytes >= fallen.rss_bytes,
            "{later:?} vs {fallen:?}"
        );
    }

    #[test]
    fn reads_meminfo_fixture_and_the_real_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::write(
            dir.path().join("proc/meminfo"),
            "MemTotal:       24684084 kB\nMemFree:  1 kB\n",
        )
        .unwrap();
        assert_eq!(physical_memory_at(dir.path()).unwrap(), 24684084 * 1024);
        assert!(physical_memory().unwrap() > 0);
        let me = process_memory().unwrap();
        assert!(me.rss_bytes > 0 && me.peak_rss_bytes >= me.rss_bytes);
        assert!(resident_now().unwrap() > 0);
    }
}
