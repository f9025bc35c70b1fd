//! The memory-cgroup test helper against the real kernel: a program over the limit is OOM-killed
//! and counted, one under it is not, processes can be moved in, and the cgroup is removed after
//! it has emptied.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use test_support::MemoryCgroup;

const MIB: u64 = 1 << 20;

/// python3 in `cgroup` allocating `bytes` and writing every one of them.
fn allocate(cgroup: &MemoryCgroup, bytes: u64) -> std::process::ExitStatus {
    cgroup
        .command("python3")
        .arg("-c")
        .arg(format!("b = b'\\x01' * {bytes}"))
        .stdout(Stdio::null())
        .status()
        .expect("python3 runs")
}

#[test]
fn over_the_limit_is_oom_killed_and_counted_once() {
    const TEST: &str = "over_the_limit_is_oom_killed_and_counted_once";
    let Some(cgroup) = MemoryCgroup::create_or_skip(TEST, "cgroup-helper-oom", 64 * MIB) else {
        return;
    };
    assert_eq!(cgroup.limit_bytes(), Some(64 * MIB));
    assert_eq!(cgroup.oom_kills(), 0);
    let status = allocate(&cgroup, 128 * MIB);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "python3 {status}");
    assert_eq!(cgroup.oom_kills(), 1);
    if let Some(peak) = cgroup.peak_bytes() {
        // It was charged here, right up to the limit, and never past it.
        assert!(peak > 48 * MIB && peak <= 64 * MIB, "peak {peak}");
    }
    let dir = cgroup.path().to_path_buf();
    drop(cgroup);
    assert!(!dir.exists(), "{} is still there", dir.display());
}

#[test]
fn under_the_limit_runs_to_completion() {
    const TEST: &str = "under_the_limit_runs_to_completion";
    let Some(cgroup) = MemoryCgroup::create_or_skip(TEST, "cgroup-helper-fits", 64 * MIB) else {
        return;
    };
    let status = allocate(&cgroup, 16 * MIB);
    assert!(status.success(), "python3 {status}");
    assert_eq!(cgroup.oom_kills(), 0);
    if let Some(peak) = cgroup.peak_bytes() {
        // The 16 MiB were charged to this cgroup: the program never ran outside it.
        assert!((16 * MIB..=64 * MIB).contains(&peak), "peak {peak}");
    }
    assert!(cgroup.pids().is_empty(), "{:?}", cgroup.pids());
    assert!(
        cgroup.usage_bytes() < 16 * MIB,
        "the exited program's memory was uncharged"
    );
    let dir = cgroup.path().to_path_buf();
    drop(cgroup);
    assert!(!dir.exists(), "{} is still there", dir.display());
}

#[test]
fn a_running_process_moves_in_and_drop_waits_for_it_to_leave() {
    const TEST: &str = "a_running_process_moves_in_and_drop_waits_for_it_to_leave";
    let Some(cgroup) = MemoryCgroup::create_or_skip(TEST, "cgroup-helper-move", 64 * MIB) else {
        return;
    };
    let mut sleeper = Command::new("sleep")
        .arg("0.5")
        .spawn()
        .expect("sleep runs");
    let pid = sleeper.id();
    let started = Instant::now();
    cgroup.add_pid(pid).expect("move into the cgroup");
    assert_eq!(cgroup.pids(), [pid]);
    let membership = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        membership
            .lines()
            .any(|l| l.ends_with(&format!(":{}", cgroup.path_in_hierarchy()))),
        "{membership}"
    );
    let dir = cgroup.path().to_path_buf();
    // The sleeper is still inside: drop must wait for it to exit rather than fail or kill it.
    drop(cgroup);
    let waited = started.elapsed();
    let status = sleeper.wait().unwrap();
    assert!(status.success(), "sleep was not killed: {status}");
    assert!(
        waited >= Duration::from_millis(400),
        "drop returned after {waited:?}"
    );
    assert!(!dir.exists(), "{} is still there", dir.display());
}
