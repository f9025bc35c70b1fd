//! A real memory cgroup for black-box tests: run a program under a memory limit and read what the
//! kernel did to it (usage, peak, OOM kills).
//!
//! (Over 400 lines: one type for cgroup v1 and v2 with its skip rules; split by version, the type's
//! surface would be written twice.)
//!
//! The cgroup is a child of the test process's own cgroup, found from `/proc/self/cgroup` and
//! `/proc/self/mountinfo` (cgroup v1, v2, or a hybrid host with the memory controller on v1).
//! Resolution is strict: the directory must exist and list this process in `cgroup.procs`, so a
//! test never creates anything outside its own subtree. It is independent of tower-memory-probe on
//! purpose: the tests use it as an oracle for what tower-memory-probe reports.
//!
//! **Skipping.** Creating a cgroup needs root and a memory controller that can be enabled for
//! children. Where it cannot, [`MemoryCgroup::create`] returns a [`Skip`] with the reason. Whether
//! a test may then skip is [`must_not_skip`]'s decision: not in CI and not as root
//! ([`MemoryCgroup::create_or_skip`] and [`skip`] apply it).

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Why no cgroup could be created, for the test to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip(pub String);

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Skip {}

/// Whether a test that gets a [`Skip`] must fail instead: when `CI` is set (CI runs the tests as
/// root on a host that can create cgroups; a skip there would hide a broken environment) or when
/// the process runs as root (the one case where creating the cgroup should work, so failing is
/// the useful answer). A host that truly cannot, root in an unprivileged container say, opts out
/// with `TOWER_MEMORY_CGROUP_SKIP_OK=1`.
pub fn must_not_skip() -> bool {
    if std::env::var_os("TOWER_MEMORY_CGROUP_SKIP_OK").is_some_and(|v| v == "1") {
        return false;
    }
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    ci || effective_uid() == Some(0)
}

/// Prints why the test `test` does not run, or panics with it where [`must_not_skip`].
pub fn skip(test: &str, why: &str) {
    if must_not_skip() {
        panic!("{test}: cannot run and may not skip (root or CI): {why}");
    }
    eprintln!("SKIPPED {test}: {why} (runs as root, and must run in CI)");
}

/// The effective uid, from the second field of `Uid:` in `/proc/self/status` (no FFI needed).
fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The cgroup interface in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// Per-controller hierarchy, memory controller (`memory.limit_in_bytes`, ...).
    V1,
    /// Unified hierarchy (`memory.max`, `memory.current`, ...).
    V2,
}

/// A child memory cgroup with a hard limit; removed on drop.
#[derive(Debug)]
pub struct MemoryCgroup {
    version: Version,
    dir: PathBuf,
    path_in_hierarchy: String,
}

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

impl MemoryCgroup {
    /// Creates `<own cgroup>/<name_hint>-<pid>-<n>` limited to `limit_bytes` (v1
    /// `memory.limit_in_bytes`, v2 `memory.max`). Swap is capped too where the files exist
    /// (`memory.memsw.limit_in_bytes` at the same limit, `memory.swap.max` at 0) so that a host
    /// with swap OOM-kills instead of swapping and the tests see the same thing everywhere.
    pub fn create(name_hint: &str, limit_bytes: u64) -> Result<MemoryCgroup, Skip> {
        let (version, own_dir, own_path) = own_memory_cgroup().map_err(Skip)?;
        let name = format!(
            "{name_hint}-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let dir = own_dir.join(&name);
        fs::create_dir(&dir).map_err(|e| Skip(format!("mkdir {}: {e}", dir.display())))?;
        // From here on, Drop removes the directory whatever fails next.
        let cgroup = MemoryCgroup {
            version,
            path_in_hierarchy: format!("{}/{name}", own_path.trim_end_matches('/')),
            dir,
        };
        let limit = limit_bytes.to_string();
        match version {
            Version::V1 => {
                cgroup.write("memory.limit_in_bytes", &limit)?;
                if cgroup.dir.join("memory.memsw.limit_in_bytes").is_file() {
                    cgroup.write("memory.memsw.limit_in_bytes", &limit)?;
                }
            }
            Version::V2 => {
                if !cgroup.dir.join("memory.max").is_file() {
                    return Err(Skip(format!(
                        "{} has no memory.max: the memory controller is not enabled for children",
                        cgroup.dir.display()
                    )));
                }
                cgroup.write("memory.max", &limit)?;
                if cgroup.dir.join("memory.swap.max").is_file() {
                    cgroup.write("memory.swap.max", "0")?;
                }
            }
        }
        Ok(cgroup)
    }

    /// [`create`](Self::create), or `None` after printing why the test `test` does not run; panics
    /// instead when [`must_not_skip`].
    pub fn create_or_skip(test: &str, name_hint: &str, limit_bytes: u64) -> Option<MemoryCgroup> {
        match MemoryCgroup::create(name_hint, limit_bytes) {
            Ok(cgroup) => Some(cgroup),
            Err(skip) if must_not_skip() => {
                panic!("{test}: no memory cgroup, and this run may not skip (root or CI): {skip}")
            }
            Err(skip) => {
                eprintln!("SKIPPED {test}: no memory cgroup: {skip} (runs as root, and in CI)");
                None
            }
        }
    }

    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Its path inside the hierarchy, as `/proc/<pid>/cgroup` shows it.
    pub fn path_in_hierarchy(&self) -> &str {
        &self.path_in_hierarchy
    }

    /// The interface its files speak.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Moves a running process (all its threads) into the cgroup. What it allocated before stays
    /// charged where it was; prefer [`command`](Self::command) for a process that must allocate
    /// nothing outside.
    pub fn add_pid(&self, pid: u32) -> io::Result<()> {
        fs::write(self.dir.join("cgroup.procs"), pid.to_string())
    }

    /// A `Command` that runs `program` inside the cgroup from its first instruction: `sh` moves
    /// itself in (`echo 0 > cgroup.procs`) and then execs the program, which keeps the pid and the
    /// cgroup. If the move fails the program never runs and `sh` exits non-zero. Add arguments,
    /// environment and stdio as usual.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"echo 0 > "$0" && exec "$@""#)
            .arg(self.dir.join("cgroup.procs"))
            .arg(program);
        cmd
    }

    /// The processes in the cgroup now.
    pub fn pids(&self) -> Vec<u32> {
        fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Processes the kernel OOM-killed in the cgroup (v1 `oom_kill` of `memory.oom_control`, v2
    /// `oom_kill` of `memory.events`).
    pub fn oom_kills(&self) -> u64 {
        let file = match self.version {
            Version::V1 => "memory.oom_control",
            Version::V2 => "memory.events",
        };
        self.keyed(file, "oom_kill")
            .unwrap_or_else(|| panic!("no oom_kill in {}", self.dir.join(file).display()))
    }

    /// Memory charged to the cgroup now (v1 `memory.usage_in_bytes`, v2 `memory.current`).
    pub fn usage_bytes(&self) -> u64 {
        match self.version {
            Version::V1 => self.number("memory.usage_in_bytes"),
            Version::V2 => self.number("memory.current"),
        }
    }

    /// The most ever charged (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`); `None` on a v2
    /// kernel older than 5.19, which has no `memory.peak`.
    pub fn peak_bytes(&self) -> Option<u64> {
        let file = match self.version {
            Version::V1 => "memory.max_usage_in_bytes",
            Version::V2 => "memory.peak",
        };
        self.dir.join(file).is_file().then(|| self.number(file))
    }

    /// The hard limit as the kernel holds it; `None` when unlimited.
    pub fn limit_bytes(&self) -> Option<u64> {
        match self.version {
            // v1 writes "unlimited" as the largest page-aligned i64.
            Version::V1 => Some(self.number("memory.limit_in_bytes")).filter(|&l| l < 1 << 60),
            Version::V2 => match self.read("memory.max").trim() {
                "max" => None,
                value => Some(value.parse().expect("memory.max is a number or max")),
            },
        }
    }

    /// Writes `value` to one of the cgroup's files (`memory.high`, say).
    pub fn write(&self, file: &str, value: &str) -> Result<(), Skip> {
        let path = self.dir.join(file);
        fs::write(&path, value)
            .map_err(|e| Skip(format!("write {value:?} to {}: {e}", path.display())))
    }

    /// A reader root whose `proc/self/cgroup` places the process in this cgroup, with the real
    /// cgroup mounts reached through symlinks: a reader that takes a root path (tower-memory-probe's
    /// `subscribe_at(root)`, say) then resolves this real cgroup while the test process itself
    /// stays where it is.
    pub fn reader_root(&self) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("temp dir");
        let cgroup = fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let rewritten: String = cgroup
            .lines()
            .map(|line| {
                let mut parts = line.splitn(3, ':');
                let (id, controllers) = (parts.next().unwrap(), parts.next().unwrap_or(""));
                let ours = match self.version {
                    Version::V1 => controllers.split(',').any(|c| c == "memory"),
                    Version::V2 => id == "0",
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

    fn read(&self, file: &str) -> String {
        let path = self.dir.join(file);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    fn number(&self, file: &str) -> u64 {
        let text = self.read(file);
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{file} is not a number: {text:?}"))
    }

    fn keyed(&self, file: &str, key: &str) -> Option<u64> {
        self.read(file).lines().find_map(|line| {
            let (k, v) = line.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
    }
}

impl Drop for MemoryCgroup {
    /// Kills nothing (the tests end the processes they start): waits up to 10 s for the cgroup to
    /// empty, then removes it. A cgroup that does not empty is left, with a message saying so.
    fn drop(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        loop {
            match fs::remove_dir(&self.dir) {
                Ok(()) => return,
                // The last process may have left a moment before the cgroup stops being busy.
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => {
                    eprintln!(
                        "cannot remove {} (processes {:?}): {e}",
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

/// The cgroup and cgroup2 mounts of a mountinfo text.
fn cgroup_mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // "<id> <parent> <maj:min> <root> <mount point> <options> [optional...] - <fstype> <source> <super options>"
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

/// `(version, directory, path in hierarchy)` of this process's memory cgroup, or every reason
/// none was found.
fn own_memory_cgroup() -> Result<(Version, PathBuf, String), String> {
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
            let v1 = mounts.iter().filter(|m| {
                m.fstype == "cgroup" && m.super_options.split(',').any(|o| o == "memory")
            });
            candidates.extend(v1.map(|m| (Version::V1, m, path)));
        } else if id == "0" {
            let v2 = mounts.iter().filter(|m| m.fstype == "cgroup2");
            candidates.extend(v2.map(|m| (Version::V2, m, path)));
        }
    }
    // Where the v1 memory controller is mounted (hybrid hosts), memory is accounted there.
    candidates.sort_by_key(|(version, _, _)| *version != Version::V1);
    let me = std::process::id().to_string();
    let mut reasons = Vec::new();
    for (version, mount, path) in candidates {
        // A mount may show only a sub-tree (a container's own cgroup at the mount point).
        let rest = if mount.root == "/" {
            Some(path)
        } else {
            path.strip_prefix(mount.root.as_str())
                .filter(|r| r.is_empty() || r.starts_with('/'))
        };
        let Some(rest) = rest else {
            reasons.push(format!(
                "{path} lies outside the mount at {}",
                mount.mount_point
            ));
            continue;
        };
        let dir = Path::new(&mount.mount_point).join(rest.trim_start_matches('/'));
        if version == Version::V1 && !dir.join("memory.limit_in_bytes").is_file() {
            reasons.push(format!("{} has no memory.limit_in_bytes", dir.display()));
            continue;
        }
        if version == Version::V2 {
            let enabled =
                fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == "memory") {
                reasons.push(format!(
                    "{}: memory is not in cgroup.subtree_control (and a v2 cgroup that holds \
                     processes cannot enable it for its children)",
                    dir.display()
                ));
                continue;
            }
        }
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
