//! Kernel memory events: registration on fixture trees (the exact lines written, v2 inotify and
//! PSI), and on this machine's real cgroups (a usage threshold crossed, an OOM kill).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use test_support::cgroup::{MemoryCgroup, Version, skip};
use test_support::fixtures::write;
use tower_memory_probe::{CgroupVersion, EventSource, MemoryEvents, PSI_TRIGGER, ProbeError};

const MIB: u64 = 1 << 20;

const V1_MOUNTS: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
const V1_DIR: &str = "sys/fs/cgroup/memory/process_api/abc";

/// A hybrid host like this one: the memory controller on v1, an empty unified hierarchy.
fn v1_tree(root: &Path) {
    write(
        root,
        "proc/self/cgroup",
        "9:name=systemd:/\n4:memory:/process_api/abc\n0::/\n",
    );
    write(root, "proc/self/mountinfo", V1_MOUNTS);
    write(root, "sys/fs/cgroup/unified/memory.pressure", "");
    write(root, &format!("{V1_DIR}/memory.usage_in_bytes"), "4096\n");
    write(
        root,
        &format!("{V1_DIR}/memory.oom_control"),
        "oom_kill 0\n",
    );
    write(root, &format!("{V1_DIR}/cgroup.event_control"), "");
}

const V2_MOUNT: &str =
    "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw\n";
const V2_DIR: &str = "sys/fs/cgroup/kubepods.slice/pod1/ctr";

fn v2_tree(root: &Path) {
    write(root, "proc/self/cgroup", "0::/kubepods.slice/pod1/ctr\n");
    write(root, "proc/self/mountinfo", V2_MOUNT);
    write(root, &format!("{V2_DIR}/memory.current"), "4096\n");
    write(
        root,
        &format!("{V2_DIR}/memory.events"),
        "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
    );
    write(root, &format!("{V2_DIR}/memory.pressure"), "");
}

fn fd_target(fd: &str) -> PathBuf {
    fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_else(|e| panic!("fd {fd}: {e}"))
}

#[test]
fn v1_writes_one_registration_line_per_threshold_and_one_for_oom() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    v1_tree(root);
    let events = MemoryEvents::subscribe_at(root, &[2 * MIB, MIB, 2 * MIB]).unwrap();
    assert_eq!(events.version(), CgroupVersion::V1);
    assert_eq!(events.cgroup(), root.join(V1_DIR));
    assert_eq!(
        events.thresholds(),
        [MIB, 2 * MIB],
        "sorted, duplicates once"
    );
    assert_eq!(
        events.sources(),
        [
            EventSource::V1UsageThreshold(MIB),
            EventSource::V1UsageThreshold(2 * MIB),
            EventSource::V1Oom
        ]
    );
    assert!(events.skipped().is_empty(), "{:?}", events.skipped());

    let text = fs::read_to_string(root.join(V1_DIR).join("cgroup.event_control")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text:?}");
    let usage = fs::canonicalize(root.join(V1_DIR).join("memory.usage_in_bytes")).unwrap();
    let oom = fs::canonicalize(root.join(V1_DIR).join("memory.oom_control")).unwrap();
    let expected = [(&usage, Some(MIB)), (&usage, Some(2 * MIB)), (&oom, None)];
    let mut registration = String::new();
    for (line, (target, threshold)) in lines.iter().zip(expected) {
        let fields: Vec<&str> = line.split(' ').collect();
        // "<event_fd> <target_fd> <threshold>", the target an open descriptor of the watched
        // file and the event an eventfd, both held by the subscription.
        assert_eq!(fd_target(fields[0]), Path::new("anon_inode:[eventfd]"));
        assert_eq!(&fd_target(fields[1]), target, "{line}");
        match threshold {
            Some(t) => registration.push_str(&format!("{} {} {t}\n", fields[0], fields[1])),
            None => registration.push_str(&format!("{} {}\n", fields[0], fields[1])),
        }
    }
    assert_eq!(text, registration, "the exact text written");
}

#[test]
fn v1_source_that_cannot_register_is_skipped_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    v1_tree(root);
    fs::remove_file(root.join(V1_DIR).join("memory.oom_control")).unwrap();
    let events = MemoryEvents::subscribe_at(root, &[MIB]).unwrap();
    assert_eq!(events.sources(), [EventSource::V1UsageThreshold(MIB)]);
    assert_eq!(events.skipped().len(), 1);
    let skipped = events.skipped()[0].to_string();
    assert_eq!(events.skipped()[0].source, EventSource::V1Oom);
    assert!(skipped.contains("memory.oom_control"), "{skipped}");
    drop(events);

    // Nothing at all: the error names every source and why.
    let err = MemoryEvents::subscribe_at(root, &[]).unwrap_err();
    assert!(
        matches!(&err, ProbeError::NoMemoryEvents { skipped, .. } if skipped.len() == 1),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("memory.oom_control") && message.contains("No such file"),
        "{message}"
    );
}

#[test]
fn no_memory_cgroup_is_its_own_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = MemoryEvents::subscribe_at(dir.path(), &[MIB]).unwrap_err();
    assert!(matches!(err, ProbeError::NoMemoryCgroup { .. }), "{err:?}");
    // A v2 mount without a memory controller (memory.current) is no memory cgroup either.
    write(dir.path(), "proc/self/cgroup", "0::/\n");
    write(dir.path(), "proc/self/mountinfo", V2_MOUNT);
    write(dir.path(), "sys/fs/cgroup/memory.pressure", "");
    let err = MemoryEvents::subscribe_at(dir.path(), &[MIB]).unwrap_err();
    assert!(matches!(err, ProbeError::NoMemoryCgroup { .. }), "{err:?}");
}

#[test]
fn v1_registers_against_the_mount_root_of_a_container() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Docker without a cgroup namespace: the mount shows /docker/abc at /sys/fs/cgroup/memory.
    write(root, "proc/self/cgroup", "4:memory:/docker/abc\n");
    write(
        root,
        "proc/self/mountinfo",
        "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n",
    );
    write(root, "sys/fs/cgroup/memory/memory.usage_in_bytes", "4096\n");
    write(root, "sys/fs/cgroup/memory/cgroup.event_control", "");
    let events = MemoryEvents::subscribe_at(root, &[MIB]).unwrap();
    assert_eq!(events.cgroup(), root.join("sys/fs/cgroup/memory"));
    let text = fs::read_to_string(root.join("sys/fs/cgroup/memory/cgroup.event_control")).unwrap();
    assert!(text.ends_with(&format!(" {MIB}\n")), "{text:?}");
}

#[tokio::test]
async fn v2_watches_memory_events_and_writes_the_psi_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    v2_tree(root);
    let events = MemoryEvents::subscribe_at(root, &[MIB]).unwrap();
    assert_eq!(events.version(), CgroupVersion::V2);
    assert_eq!(events.cgroup(), root.join(V2_DIR));
    assert_eq!(
        events.sources(),
        [EventSource::V2Events, EventSource::V2Psi]
    );
    assert_eq!(
        fs::read_to_string(root.join(V2_DIR).join("memory.pressure")).unwrap(),
        PSI_TRIGGER
    );
    assert!(events.try_next().is_none(), "nothing happened yet");

    // A real inotify event: the file the kernel would rewrite is modified.
    fs::OpenOptions::new()
        .append(true)
        .open(root.join(V2_DIR).join("memory.events"))
        .unwrap()
        .write_all(b"oom_kill 1\n")
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event within 5 s")
        .expect("sources still open");
    assert_eq!(event.source, EventSource::V2Events);
    assert!(event.count >= 1);
}

#[tokio::test]
async fn v2_subscription_ends_when_its_last_source_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    v2_tree(root);
    fs::remove_file(root.join(V2_DIR).join("memory.pressure")).unwrap();
    let events = MemoryEvents::subscribe_at(root, &[]).unwrap();
    assert_eq!(events.sources(), [EventSource::V2Events]);
    assert_eq!(events.skipped()[0].source, EventSource::V2Psi);
    // What a removed cgroup does to its files: the watch is dropped by the kernel (IN_IGNORED).
    fs::remove_file(root.join(V2_DIR).join("memory.events")).unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(event) = events.next().await {
            assert_eq!(event.source, EventSource::V2Events);
        }
    })
    .await;
    assert!(end.is_ok(), "next() did not end after the watch went away");
}

#[test]
fn with_thresholds_registers_anew_on_the_same_cgroup() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    v1_tree(root);
    let old = MemoryEvents::subscribe_at(root, &[MIB]).unwrap();
    // Resolution is not repeated: the process "moving" does not move the subscription.
    write(root, "proc/self/cgroup", "4:memory:/elsewhere\n");
    let new = old.with_thresholds(&[3 * MIB]).unwrap();
    drop(old);
    assert_eq!(new.cgroup(), root.join(V1_DIR));
    assert_eq!(
        new.sources(),
        [EventSource::V1UsageThreshold(3 * MIB), EventSource::V1Oom]
    );
    let text = fs::read_to_string(root.join(V1_DIR).join("cgroup.event_control")).unwrap();
    assert_eq!(text.lines().count(), 4, "two registrations each: {text:?}");
    assert!(
        text.lines()
            .nth(2)
            .unwrap()
            .ends_with(&format!(" {}", 3 * MIB))
    );
}

// ---- the real kernel ----

/// python3 inside `cgroup`, allocating (and writing) `bytes`, then waiting for its stdin to close.
fn allocate_in(cgroup: &MemoryCgroup, bytes: u64) -> Child {
    cgroup
        .command("python3")
        .arg("-c")
        .arg(format!(
            "import sys\nb = b'\\x01' * {bytes}\nprint('allocated', flush=True)\nsys.stdin.read()\n"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 runs")
}

/// Waits up to `within` for an event from `wanted`; returns every source seen.
async fn wait_for(
    events: &MemoryEvents,
    wanted: &[EventSource],
    within: Duration,
) -> (bool, Vec<EventSource>) {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(within, async {
        while let Some(event) = events.next().await {
            seen.push(event.source);
            if wanted.contains(&event.source) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    (found, seen)
}

fn reap(mut child: Child) -> std::process::ExitStatus {
    let _ = child.kill();
    child.wait().unwrap()
}

#[test]
fn subscribe_registers_on_the_process_own_cgroup() {
    let Some(own) = tower_memory_probe::cgroup_memory().unwrap() else {
        skip(
            "subscribe_registers_on_the_process_own_cgroup",
            "no memory cgroup",
        );
        return;
    };
    // Thresholds far above anything this test reaches: registered, never crossed.
    match MemoryEvents::subscribe(&[1 << 50]) {
        Ok(events) => {
            assert_eq!(events.cgroup(), own.path);
            let expected: &[EventSource] = match own.version {
                CgroupVersion::V1 => &[EventSource::V1UsageThreshold(1 << 50), EventSource::V1Oom],
                CgroupVersion::V2 => &[EventSource::V2Events, EventSource::V2Psi],
            };
            assert_eq!(
                events.sources(),
                expected,
                "skipped: {:?}",
                events.skipped()
            );
        }
        Err(e) => skip(
            "subscribe_registers_on_the_process_own_cgroup",
            &e.to_string(),
        ),
    }
}

#[tokio::test]
async fn crossing_a_usage_threshold_is_signalled() {
    const TEST: &str = "crossing_a_usage_threshold_is_signalled";
    let cgroup = match MemoryCgroup::create("tower-memory-probe-threshold", 256 * MIB) {
        Ok(c) => c,
        Err(why) => return skip(TEST, &why.to_string()),
    };
    // v1: a usage threshold at 24 MiB (and one at 200 MiB that must stay silent); v2 has no
    // thresholds, so memory.high at 24 MiB makes memory.events count `high`.
    let (low, high) = (24 * MIB, 200 * MIB);
    if cgroup.version() == Version::V2 {
        cgroup.write("memory.high", &low.to_string()).unwrap();
    }
    let root = cgroup.reader_root();
    let events = MemoryEvents::subscribe_at(root.path(), &[low, high]).unwrap();
    assert_eq!(events.cgroup().canonicalize().unwrap(), cgroup.path());
    assert!(
        events.try_next().is_none(),
        "an empty cgroup signalled: {events:?}"
    );

    let child = allocate_in(&cgroup, 32 * MIB);
    let wanted = match cgroup.version() {
        Version::V1 => EventSource::V1UsageThreshold(low),
        Version::V2 => EventSource::V2Events,
    };
    let (found, seen) = wait_for(&events, &[wanted], Duration::from_secs(10)).await;
    let status = reap(child);
    assert!(
        found,
        "no {wanted} within 10 s; saw {seen:?}; child {status}"
    );
    assert!(
        !seen.contains(&EventSource::V1UsageThreshold(high)),
        "the 200 MiB threshold fired for a 32 MiB process: {seen:?}"
    );
    eprintln!("{TEST}: {wanted} arrived in {}", cgroup.path().display());
    drop(events);
    drop(cgroup);
}

#[tokio::test]
async fn an_oom_kill_is_signalled() {
    const TEST: &str = "an_oom_kill_is_signalled";
    let cgroup = match MemoryCgroup::create("tower-memory-probe-oom", 64 * MIB) {
        Ok(c) => c,
        Err(why) => return skip(TEST, &why.to_string()),
    };
    let dir = cgroup.path().to_path_buf();
    let root = cgroup.reader_root();
    let events = MemoryEvents::subscribe_at(root.path(), &[]).unwrap();
    let wanted = match cgroup.version() {
        Version::V1 => EventSource::V1Oom,
        Version::V2 => EventSource::V2Events,
    };
    assert_eq!(events.sources().first(), Some(&wanted));

    let mut child = allocate_in(&cgroup, 128 * MIB);
    let (found, seen) = wait_for(&events, &[wanted], Duration::from_secs(10)).await;
    // The kernel kills it: it must end by itself, by SIGKILL, without getting its 128 MiB.
    let exited = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let status = match exited {
        Ok(status) => status,
        Err(_) => panic!("not OOM-killed within 10 s (killed now: {})", reap(child)),
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "child {status}");
    assert!(found, "no {wanted} within 10 s; saw {seen:?}");
    drop(events);
    drop(cgroup);
    assert!(!dir.exists(), "{} was not removed", dir.display());
}
