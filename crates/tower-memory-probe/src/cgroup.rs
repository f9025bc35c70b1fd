//! Container memory from cgroup v2, cgroup v1 and hybrid hosts.
//!
//! The cgroup is found the way the kernel describes it: the process's line in
//! `/proc/self/cgroup` gives its path inside a hierarchy, `/proc/self/mountinfo` gives where that
//! hierarchy is mounted and which part of it the mount shows. Every path is read under a `root`
//! directory so that tests can point the reader at a fixture tree.

use std::path::{Path, PathBuf};

use crate::ProbeError;
use crate::error::read_to_string;

/// Which cgroup interface the memory figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// The legacy per-controller hierarchy (`memory.usage_in_bytes`, `memory.limit_in_bytes`).
    V1,
    /// The unified hierarchy (`memory.current`, `memory.max`).
    V2,
}

/// The memory of the cgroup the process runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMemory {
    /// The interface read.
    pub version: CgroupVersion,
    /// The cgroup's directory (under the reader's root).
    pub path: PathBuf,
    /// Memory charged to the cgroup (`memory.current`, v1 `memory.usage_in_bytes`); includes page
    /// cache.
    pub usage_bytes: u64,
    /// The effective hard limit: the smallest `memory.max` from this cgroup up to the root of the
    /// mount (v2), or the smaller of `memory.limit_in_bytes` and the hierarchical limit (v1).
    /// `None` when unlimited.
    pub limit_bytes: Option<u64>,
    /// The effective `memory.high` throttling limit (v2 only), the smallest up the chain.
    pub high_bytes: Option<u64>,
    /// Inactive file-backed pages, which the kernel reclaims before it OOM-kills.
    pub inactive_file_bytes: Option<u64>,
    /// `usage - inactive_file`: what the kubelet calls the working set and evicts on.
    pub working_set_bytes: u64,
    /// OOM kills in this cgroup (`oom_kill` in v2 `memory.events` or v1 `memory.oom_control`).
    pub oom_kills: Option<u64>,
}

impl CgroupMemory {
    /// The limit that bounds the process first: `memory.high` when set (the kernel throttles and
    /// reclaims there), else the hard limit.
    pub fn effective_limit_bytes(&self) -> Option<u64> {
        match (self.high_bytes, self.limit_bytes) {
            (Some(h), Some(l)) => Some(h.min(l)),
            (h, l) => h.or(l),
        }
    }
}

/// v1 writes "unlimited" as the largest page-aligned `i64` (9223372036854771712); anything from
/// 2^60 bytes (an exbibyte) up is treated as no limit.
const V1_UNLIMITED: u64 = 1 << 60;

/// The process's cgroup memory read under `/`. `Ok(None)` when the process is in no memory cgroup
/// that can be read (no cgroup mounts, or a hierarchy without the memory controller).
pub fn cgroup_memory() -> Result<Option<CgroupMemory>, ProbeError> {
    cgroup_memory_at(Path::new("/"))
}

/// The process's cgroup memory, reading `<root>/proc/self/cgroup`, `<root>/proc/self/mountinfo`
/// and the cgroup files under `<root>`.
pub fn cgroup_memory_at(root: &Path) -> Result<Option<CgroupMemory>, ProbeError> {
    match locate_memory_cgroup(root) {
        Some(found) => match found.version {
            CgroupVersion::V2 => read_v2(found.mount_dir, found.dir).map(Some),
            CgroupVersion::V1 => read_v1(found.dir).map(Some),
        },
        None => Ok(None),
    }
}

/// Where the process's memory cgroup lives under a reader's root.
pub(crate) struct MemoryCgroupDir {
    /// The interface its files speak.
    pub(crate) version: CgroupVersion,
    /// The hierarchy's mount point under the root (v2 limits are walked up to it).
    pub(crate) mount_dir: PathBuf,
    /// The cgroup's own directory.
    pub(crate) dir: PathBuf,
}

/// Finds the memory cgroup from `<root>/proc/self/cgroup` and `<root>/proc/self/mountinfo`;
/// `None` when the process is in no memory cgroup that can be found there. The memory readers and
/// the event subscriptions share it so that both always look at the same directory.
pub(crate) fn locate_memory_cgroup(root: &Path) -> Option<MemoryCgroupDir> {
    let cgroups = std::fs::read_to_string(root.join("proc/self/cgroup")).ok()?;
    let mountinfo = std::fs::read_to_string(root.join("proc/self/mountinfo")).ok()?;
    let memberships = parse_proc_cgroup(&cgroups);
    let mounts = parse_mountinfo(&mountinfo);

    // A hybrid host mounts the unified hierarchy too, but without the memory controller; the
    // presence of `memory.current` decides, never the mere existence of a cgroup2 mount.
    if let Some(v2_path) = memberships.iter().find(|m| m.hierarchy_id == "0") {
        for mount in mounts.iter().filter(|m| m.fstype == "cgroup2") {
            if let Some(dir) = locate(root, mount, &v2_path.path)
                && dir.join("memory.current").is_file()
            {
                return Some(MemoryCgroupDir {
                    version: CgroupVersion::V2,
                    mount_dir: root.join(strip_root(&mount.mount_point)),
                    dir,
                });
            }
        }
    }
    if let Some(v1_path) = memberships
        .iter()
        .find(|m| m.controllers.split(',').any(|c| c == "memory"))
    {
        for mount in mounts
            .iter()
            .filter(|m| m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == "memory"))
        {
            if let Some(dir) = locate(root, mount, &v1_path.path)
                && dir.join("memory.usage_in_bytes").is_file()
            {
                return Some(MemoryCgroupDir {
                    version: CgroupVersion::V1,
                    mount_dir: root.join(strip_root(&mount.mount_point)),
                    dir,
                });
            }
        }
    }
    None
}

struct Membership {
    hierarchy_id: String,
    controllers: String,
    path: String,
}

fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            Some(Membership {
                hierarchy_id: parts.next()?.to_string(),
                controllers: parts.next()?.to_string(),
                path: parts.next()?.to_string(),
            })
        })
        .collect()
}

struct Mount {
    root: String,
    mount_point: String,
    fstype: String,
    super_options: String,
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            // "<id> <parent> <maj:min> <root> <mount point> <options> [optional...] - <fstype> <source> <super options>"
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split_whitespace().collect();
            let mut post = post.split_whitespace();
            Some(Mount {
                root: unescape(pre.get(3)?),
                mount_point: unescape(pre.get(4)?),
                fstype: post.next()?.to_string(),
                super_options: post.nth(1).unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let code =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn strip_root(path: &str) -> &str {
    path.trim_start_matches('/')
}

/// The directory of `cgroup_path` under `mount`, or `None` when it does not exist. When the mount
/// shows only a sub-tree (a container's own cgroup mounted at its root), the part of the path the
/// mount root already covers is dropped; when the path lies outside the mount (a cgroup namespace
/// that the mount does not reflect), the mount point itself is the best guess.
fn locate(root: &Path, mount: &Mount, cgroup_path: &str) -> Option<PathBuf> {
    let mount_dir = root.join(strip_root(&mount.mount_point));
    let relative = if mount.root == "/" {
        Some(cgroup_path)
    } else {
        cgroup_path
            .strip_prefix(mount.root.as_str())
            .filter(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    let candidate = match relative {
        Some(rel) => mount_dir.join(strip_root(rel)),
        None => mount_dir.clone(),
    };
    if candidate.is_dir() {
        Some(candidate)
    } else if mount_dir.is_dir() {
        Some(mount_dir)
    } else {
        None
    }
}

fn read_u64(path: &Path, what: &'static str) -> Result<u64, ProbeError> {
    let text = read_to_string(path)?;
    parse_u64(text.trim(), path, what)
}

fn parse_u64(value: &str, path: &Path, what: &'static str) -> Result<u64, ProbeError> {
    value.parse().map_err(|_| ProbeError::Parse {
        path: path.to_path_buf(),
        what,
        value: value.to_string(),
    })
}

/// A v2 limit file: a number, or the literal `max`. `Ok(None)` for `max` and for a missing file.
fn read_v2_limit(path: &Path, what: &'static str) -> Result<Option<u64>, ProbeError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = read_to_string(path)?;
    match text.trim() {
        "max" => Ok(None),
        value => parse_u64(value, path, what).map(Some),
    }
}

/// A `key value` line of a flat-keyed file (`memory.stat`, `memory.events`, `memory.oom_control`).
fn keyed(path: &Path, key: &'static str) -> Result<Option<u64>, ProbeError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = read_to_string(path)?;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() == Some(key) {
            let value = parts.next().unwrap_or("");
            return parse_u64(value, path, key).map(Some);
        }
    }
    Ok(None)
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn read_v2(mount_dir: PathBuf, dir: PathBuf) -> Result<CgroupMemory, ProbeError> {
    let usage = read_u64(&dir.join("memory.current"), "memory.current")?;
    // A parent's limit binds its children: walk up to the mount's root and keep the smallest.
    let (mut limit, mut high) = (None, None);
    let mut cursor = Some(dir.as_path());
    while let Some(current) = cursor {
        limit = min_opt(
            limit,
            read_v2_limit(&current.join("memory.max"), "memory.max")?,
        );
        high = min_opt(
            high,
            read_v2_limit(&current.join("memory.high"), "memory.high")?,
        );
        if current == mount_dir {
            break;
        }
        cursor = current.parent().filter(|p| p.starts_with(&mount_dir));
    }
    let inactive_file = keyed(&dir.join("memory.stat"), "inactive_file")?;
    let oom_kills = keyed(&dir.join("memory.events"), "oom_kill")?;
    Ok(CgroupMemory {
        version: CgroupVersion::V2,
        usage_bytes: usage,
        limit_bytes: limit,
        high_bytes: high,
        working_set_bytes: usage.saturating_sub(inactive_file.unwrap_or(0)),
        inactive_file_bytes: inactive_file,
        oom_kills,
        path: dir,
    })
}

fn read_v1(dir: PathBuf) -> Result<CgroupMemory, ProbeError> {
    let usage = read_u64(&dir.join("memory.usage_in_bytes"), "memory.usage_in_bytes")?;
    let limited = |v: u64| (v < V1_UNLIMITED).then_some(v);
    let own = match dir.join("memory.limit_in_bytes") {
        p if p.is_file() => limited(read_u64(&p, "memory.limit_in_bytes")?),
        _ => None,
    };
    let stat = dir.join("memory.stat");
    let hierarchical = keyed(&stat, "hierarchical_memory_limit")?.and_then(limited);
    let inactive_file = match keyed(&stat, "total_inactive_file")? {
        Some(v) => Some(v),
        None => keyed(&stat, "inactive_file")?,
    };
    let oom_kills = keyed(&dir.join("memory.oom_control"), "oom_kill")?;
    Ok(CgroupMemory {
        version: CgroupVersion::V1,
        usage_bytes: usage,
        limit_bytes: min_opt(own, hierarchical),
        high_bytes: None,
        working_set_bytes: usage.saturating_sub(inactive_file.unwrap_or(0)),
        inactive_file_bytes: inactive_file,
        oom_kills,
        path: dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/trailing\04"), r"/trailing\04");
    }

    #[test]
    fn mountinfo_with_optional_fields() {
        let mounts = parse_mountinfo(
            "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 master:2 - cgroup cgroup rw,memory\n",
        );
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].mount_point, "/sys/fs/cgroup/memory");
        assert_eq!(mounts[0].fstype, "cgroup");
        assert_eq!(mounts[0].super_options, "rw,memory");
    }
}
