//! A real memory cgroup, child of the test process's own, for the tests that need the kernel.
//!
//! Resolution is done here from `/proc/self/cgroup` and `/proc/self/mountinfo`, strictly and
//! independently of the crate under test: the directory must exist and list this process in its
//! `cgroup.procs`, so the tests never create anything outside their own subtree.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use memory_probe::CgroupVersion;

/// Whether a test that cannot get a cgroup must fail instead of skipping: in CI (`CI` set) and as
/// root, where cgroups can be created, a skip would hide a broken environment. A host that truly
/// cannot (root in an unprivileged container, say) opts out with `TOWER_MEMORY_CGROUP_SKIP_OK=1`.
pub(crate) fn must_not_skip() -> bool {
    if std::env::var_os("TOWER_MEMORY_CGROUP_SKIP_OK").is_some_and(|v| v == "1") {
        return false;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    root || std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Prints why the test does not run, or panics with it where skipping is not allowed.
pub(crate) fn skip(test: &str, why: &str) {
    if must_not_skip() {
        panic!("{test}: cannot run and may not skip (root or CI): {why}");
    }
    eprintln!("SKIPPED {test}: {why} (runs as root, and must run in CI)");
}

/// A child memory cgroup, removed on drop.
pub(crate) struct ChildCgroup {
    /// The interface its files speak.
    pub version: CgroupVersion,
    /// Its directory.
    pub dir: PathBuf,
    /// Its path inside the hierarchy, as `/proc/<pid>/cgroup` writes it.
    pub path_in_hierarchy: String,
}

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

impl ChildCgroup {
    /// Creates `<own cgroup>/<hint>-<pid>-<n>` with a hard limit of `limit_bytes` (and no swap
    /// beyond it, so a host with swap OOM-kills instead of swapping).
    pub(crate) fn create(hint: &str, limit_bytes: u64) -> Result<ChildCgroup, String> {
        let (version, own_dir, own_path) = own_memory_cgroup()?;
        let name = format!(
            "{hint}-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let dir = own_dir.join(&name);
        fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let child = ChildCgroup {
            version,
            path_in_hierarchy: format!("{}/{name}", own_path.trim_end_matches('/')),
            dir,
        };
        match version {
            CgroupVersion::V1 => {
                child.write("memory.limit_in_bytes", &limit_bytes.to_string())?;
                if child.dir.join("memory.memsw.limit_in_bytes").is_file() {
                    child.write("memory.memsw.limit_in_bytes", &limit_bytes.to_string())?;
                }
            }
            CgroupVersion::V2 => {
                if !child.dir.join("memory.max").is_file() {
                    return Err(format!(
                        "{} has no memory.max: the memory controller is not enabled for children",
                        child.dir.display()
                    ));
                }
                child.write("memory.max", &limit_bytes.to_string())?;
                if child.dir.join("memory.swap.max").is_file() {
                    child.write("memory.swap.max", "0")?;
                }
            }
        }
        Ok(child)
    }

    /// Writes `value` to one of the cgroup's files.
    pub(crate) fn write(&self, file: &str, value: &str) -> Result<(), String> {
        let path = self.dir.join(file);
        fs::write(&path, value).map_err(|e| format!("write {value:?} to {}: {e}", path.display()))
    }

    /// `program`, started through `sh`, which first moves itself into the cgroup and then execs
    /// the program: nothing the program does is charged outside the cgroup, and if the move fails
    /// the program never runs.
    pub(crate) fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"echo 0 > "$0" && exec "$@""#)
            .arg(self.dir.join("cgroup.procs"))
            .arg(program);
        cmd
    }

    /// The process ids in the cgroup.
    pub(crate) fn pids(&self) -> Vec<u32> {
        fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// A reader root whose `proc/self/cgroup` places the process in this cgroup, with the real
    /// cgroup mounts reached through symlinks: `subscribe_at(root)` then resolves and registers on
    /// this real cgroup while the test process itself stays where it is.
    pub(crate) fn reader_root(&self) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("temp dir");
        let cgroup = fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let rewritten: String = cgroup
            .lines()
            .map(|line| {
                let mut parts = line.splitn(3, ':');
                let (id, controllers) = (parts.next().unwrap(), parts.next().unwrap_or(""));
                let ours = match self.version {
                    CgroupVersion::V1 => controllers.split(',').any(|c| c == "memory"),
                    CgroupVersion::V2 => id == "0",
                };
                if ours {
                    format!("{id}:{controllers}:{}\n", self.path_in_hierarchy)
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        fs::create_dir_all(root.path().join("proc/self")).unwrap();
        fs::write(root.path().join("proc/self/cgroup"), rewritten).unwrap();
        fs::write(root.path().join("proc/self/mountinfo"), &mountinfo).unwrap();
        for mount in cgroup_mounts(&mountinfo) {
            let top = mount
                .mount_point
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or("")
                .to_string();
            let link = root.path().join(&top);
            if !top.is_empty() && top != "proc" && !link.exists() {
                std::os::unix::fs::symlink(Path::new("/").join(&top), &link).unwrap();
            }
        }
        root
    }
}

impl Drop for ChildCgroup {
    /// Kills nothing: the tests end their own children first. Waits (at most 10 s) for the
    /// cgroup to empty, then removes it.
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        loop {
            match fs::remove_dir(&self.dir) {
                Ok(()) => return,
                // A process that just exited can keep the cgroup busy for a moment.
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => {
                    eprintln!(
                        "could not remove {} (processes {:?}): {e}",
                        self.dir.display(),
                        self.pids()
                    );
                    return;
                }
            }
        }
    }
}

struct Mount {
    root: String,
    mount_point: String,
    fstype: String,
    super_options: String,
}

fn cgroup_mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split_whitespace().collect();
            let mut post = post.split_whitespace();
            let fstype = post.next()?.to_string();
            Some(Mount {
                root: pre.get(3)?.to_string(),
                mount_point: pre.get(4)?.to_string(),
                super_options: post.nth(1).unwrap_or("").to_string(),
                fstype,
            })
        })
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .collect()
}

/// `(version, directory, path in hierarchy)` of this process's memory cgroup, strictly: the
/// directory must exist and list this process.
fn own_memory_cgroup() -> Result<(CgroupVersion, PathBuf, String), String> {
    let cgroup =
        fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let mounts = cgroup_mounts(&mountinfo);
    let mut candidates = Vec::new();
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            for m in mounts.iter().filter(|m| {
                m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == "memory")
            }) {
                candidates.push((CgroupVersion::V1, m, path));
            }
        } else if id == "0" {
            for m in mounts.iter().filter(|m| m.fstype == "cgroup2") {
                candidates.push((CgroupVersion::V2, m, path));
            }
        }
    }
    // The v1 memory controller, when mounted, is where memory is accounted (hybrid hosts).
    candidates.sort_by_key(|(v, _, _)| *v != CgroupVersion::V1);
    let mut reasons = Vec::new();
    for (version, mount, path) in candidates {
        let rest = if mount.root == "/" {
            Some(path)
        } else {
            path.strip_prefix(mount.root.as_str())
                .filter(|r| r.is_empty() || r.starts_with('/'))
        };
        let Some(rest) = rest else {
            reasons.push(format!(
                "{path} is outside the mount of {}",
                mount.mount_point
            ));
            continue;
        };
        let dir = Path::new(&mount.mount_point).join(rest.trim_start_matches('/'));
        let marker = match version {
            CgroupVersion::V1 => "memory.limit_in_bytes",
            _ => "cgroup.subtree_control",
        };
        if !dir.join(marker).is_file() {
            reasons.push(format!("{} has no {marker}", dir.display()));
            continue;
        }
        if version == CgroupVersion::V2 {
            let enabled =
                fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == "memory") {
                reasons.push(format!(
                    "{}: memory is not in cgroup.subtree_control (a cgroup v2 with processes \
                     cannot enable it for children)",
                    dir.display()
                ));
                continue;
            }
        }
        let me = std::process::id().to_string();
        let listed = fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.trim() == me);
        if !listed {
            reasons.push(format!("{} does not list this process", dir.display()));
            continue;
        }
        return Ok((version, dir, path.to_string()));
    }
    if reasons.is_empty() {
        reasons.push("no memory cgroup hierarchy is mounted".to_string());
    }
    Err(reasons.join("; "))
}
