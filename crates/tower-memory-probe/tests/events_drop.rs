//! Dropping a `MemoryEvents` ends its thread and closes every descriptor it opened.
//!
//! One test in its own binary: it counts the process's threads and open descriptors, which no
//! other test may change meanwhile.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use test_support::fixtures::write;
use tower_memory_probe::{EventSource, MemoryEvents};

/// Open descriptors and what they point at, without the one `read_dir` uses for the listing.
fn open_fds() -> BTreeMap<String, PathBuf> {
    let mut fds = BTreeMap::new();
    for entry in fs::read_dir("/proc/self/fd").unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Ok(target) = fs::read_link(format!("/proc/self/fd/{name}"))
            && !target.ends_with("fd")
        {
            fds.insert(name, target);
        }
    }
    fds
}

fn event_threads() -> usize {
    fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == "memory-events")
        .count()
}

fn wait_until(done: impl FnMut() -> bool) {
    test_support::eventually_blocking(Duration::from_secs(2), done);
}

/// Subscribes, checks the thread runs and `opened` descriptors appeared, drops, checks both are
/// gone again.
fn subscribe_and_drop(what: &str, subscribe: impl FnOnce() -> MemoryEvents, opened: usize) {
    let (fds_before, threads_before) = (open_fds(), event_threads());
    let events = subscribe();
    let during = open_fds();
    let new: Vec<_> = during
        .iter()
        .filter(|(fd, _)| !fds_before.contains_key(*fd))
        .collect();
    // The new thread names itself once it runs.
    wait_until(|| event_threads() == threads_before + 1);
    assert_eq!(
        event_threads(),
        threads_before + 1,
        "{what}: thread started"
    );
    // One per source (two for a v1 eventfd and its target file), plus the shutdown eventfd and
    // the thread's duplicate of it.
    assert_eq!(new.len(), opened, "{what}: {new:?}");
    drop(events);
    // join() returned inside drop, so the thread has ended; the kernel may take a moment to drop
    // the task's /proc entry.
    wait_until(|| event_threads() == threads_before);
    assert_eq!(event_threads(), threads_before, "{what}: thread ended");
    assert_eq!(open_fds(), fds_before, "{what}: every descriptor closed");
}

#[test]
fn drop_ends_the_thread_and_closes_every_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("v1");
    write(&v1, "proc/self/cgroup", "4:memory:/a\n");
    write(
        &v1,
        "proc/self/mountinfo",
        "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
    );
    write(&v1, "sys/fs/cgroup/memory/a/memory.usage_in_bytes", "1\n");
    write(
        &v1,
        "sys/fs/cgroup/memory/a/memory.oom_control",
        "oom_kill 0\n",
    );
    write(&v1, "sys/fs/cgroup/memory/a/cgroup.event_control", "");
    // Two thresholds and OOM: three eventfds, three target files, two shutdown descriptors.
    subscribe_and_drop(
        "v1 fixture",
        || MemoryEvents::subscribe_at(&v1, &[1 << 20, 2 << 20]).unwrap(),
        8,
    );

    let v2 = dir.path().join("v2");
    write(&v2, "proc/self/cgroup", "0::/a\n");
    write(
        &v2,
        "proc/self/mountinfo",
        "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
    );
    write(&v2, "sys/fs/cgroup/a/memory.current", "1\n");
    write(&v2, "sys/fs/cgroup/a/memory.events", "oom_kill 0\n");
    write(&v2, "sys/fs/cgroup/a/memory.pressure", "");
    // inotify, memory.pressure, two shutdown descriptors.
    subscribe_and_drop(
        "v2 fixture",
        || MemoryEvents::subscribe_at(&v2, &[]).unwrap(),
        4,
    );

    // The real kernel registrations, where this process may make them.
    match MemoryEvents::subscribe(&[1 << 50]) {
        Ok(events) => {
            let sources = events.sources().to_vec();
            drop(events);
            let opened = sources
                .iter()
                .map(|s| match s {
                    EventSource::V1UsageThreshold(_) | EventSource::V1Oom => 2,
                    _ => 1,
                })
                .sum::<usize>()
                + 2;
            subscribe_and_drop(
                "this process's cgroup",
                || MemoryEvents::subscribe(&[1 << 50]).unwrap(),
                opened,
            );
        }
        Err(e) => test_support::skip("drop on the real cgroup", &e.to_string()),
    }
}
