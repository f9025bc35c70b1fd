//! Process memory from `/proc/<pid>/status` and physical memory from `/proc/meminfo`.

use std::path::{Path, PathBuf};

use crate::ProbeError;
use crate::error::read_to_string;

/// The process's memory as the kernel accounts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessMemory {
    /// Resident set size now (`VmRSS`).
    pub rss_bytes: u64,
    /// Peak resident set size since start (`VmHWM`).
    pub peak_rss_bytes: u64,
    /// Virtual memory size (`VmSize`).
    pub virtual_bytes: u64,
}

/// The calling process's memory, from `/proc/self/status`.
pub fn process_memory() -> Result<ProcessMemory, ProbeError> {
    process_memory_at(Path::new("/proc/self"))
}

/// Another process's memory, from `/proc/<pid>/status` (benchmarks and tests read their servers).
pub fn process_memory_of(pid: u32) -> Result<ProcessMemory, ProbeError> {
    process_memory_at(&PathBuf::from(format!("/proc/{pid}")))
}

/// The memory of the process whose `/proc` directory is `proc_pid_dir` (reads `<dir>/status`).
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
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as u64 } else { 4096 }
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
