//! The monitor: limit resolution on fixture trees, thresholds and hysteresis, growth trend and
//! leak warning, reclaim schedule, liveness. Driven by real readers on fixture trees or by a
//! source the test steers; the reclaimer is the real one.
//!
//! (Over 400 lines: the monitor's cases against one fixture-tree harness, each short; split, they
//! would repeat the fixtures' setup.)

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Steered, proc_files};
use test_support::eventually;
use test_support::fixtures::write;
use tower_memory_health::{
    BuildError, LeakThreshold, LimitSource, Liveness, MemoryMonitor, ProbeSource, ReclaimTrigger,
    Sample, SampleError, StartError,
};
use tower_memory_probe::{Pressure, ProcessMemory, Reclaimer};

const MIB: u64 = 1 << 20;
const V2_MOUNT: &str = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";

async fn sample_of(
    root: &Path,
    configured: Option<u64>,
) -> Arc<tower_memory_health::MemorySnapshot> {
    let mut builder = MemoryMonitor::builder()
        .source(ProbeSource::at(root))
        .reclaim_enabled(false);
    if let Some(limit) = configured {
        builder = builder.limit_bytes(limit);
    }
    builder.build().unwrap().sample_now().await.unwrap()
}

#[tokio::test]
async fn limit_from_a_nested_v2_tree_is_the_smallest_up_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    proc_files(root, 100 * 1024, 16 * 1024 * 1024);
    write(root, "proc/self/cgroup", "0::/kubepods.slice/pod1/ctr\n");
    write(root, "proc/self/mountinfo", V2_MOUNT);
    let base = "sys/fs/cgroup/kubepods.slice";
    write(root, &format!("{base}/memory.max"), "max\n");
    write(root, &format!("{base}/pod1/memory.max"), "536870912\n");
    write(root, &format!("{base}/pod1/ctr/memory.max"), "1073741824\n");
    write(
        root,
        &format!("{base}/pod1/ctr/memory.current"),
        "314572800\n",
    );
    write(
        root,
        &format!("{base}/pod1/ctr/memory.stat"),
        "anon 1\ninactive_file 104857600\n",
    );
    let s = sample_of(root, None).await;
    let limit = s.limit.unwrap();
    assert_eq!(limit.bytes, 512 * MIB);
    assert_eq!(limit.source, LimitSource::CgroupMax);
    // Working set 200 MiB beats the 100 MiB RSS.
    assert_eq!(s.usage_bytes, Some(200 * MIB));
    assert!((s.usage_ratio.unwrap() - 200.0 / 512.0).abs() < 1e-9);

    // memory.high below memory.max is where the kernel starts reclaiming: it becomes the limit.
    write(root, &format!("{base}/pod1/ctr/memory.high"), "268435456\n");
    let s = sample_of(root, None).await;
    assert_eq!(s.limit.unwrap().bytes, 256 * MIB);
    assert_eq!(s.limit.unwrap().source, LimitSource::CgroupHigh);

    // An explicit limit below the cgroup's wins; one above it is clamped to it (the kernel acts
    // at the cgroup's limit whatever the configuration says).
    let s = sample_of(root, Some(200 * MIB)).await;
    assert_eq!(s.limit.unwrap().source, LimitSource::Configured);
    assert_eq!(s.limit.unwrap().bytes, 200 * MIB);
    let s = sample_of(root, Some(300 * MIB)).await;
    assert_eq!(s.limit.unwrap().source, LimitSource::CgroupHigh);
    assert_eq!(s.limit.unwrap().bytes, 256 * MIB);
}

#[tokio::test]
async fn limit_from_a_v1_hybrid_tree() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    proc_files(root, 300 * 1024, 16 * 1024 * 1024);
    write(
        root,
        "proc/self/cgroup",
        "9:name=systemd:/\n4:memory:/app/abc\n0::/\n",
    );
    write(
        root,
        "proc/self/mountinfo",
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
         35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
         41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
    );
    write(root, "sys/fs/cgroup/unified/cgroup.procs", "1\n");
    let base = "sys/fs/cgroup/memory/app/abc";
    write(
        root,
        &format!("{base}/memory.usage_in_bytes"),
        "209715200\n",
    );
    write(
        root,
        &format!("{base}/memory.limit_in_bytes"),
        "1073741824\n",
    );
    write(
        root,
        &format!("{base}/memory.stat"),
        "hierarchical_memory_limit 9223372036854771712\ntotal_inactive_file 0\n",
    );
    let s = sample_of(root, None).await;
    assert_eq!(
        s.cgroup.as_ref().unwrap().version,
        tower_memory_probe::CgroupVersion::V1
    );
    assert_eq!(s.limit.unwrap().bytes, 1024 * MIB);
    assert_eq!(s.limit.unwrap().source, LimitSource::CgroupMax);
    // RSS 300 MiB beats the 200 MiB working set.
    assert_eq!(s.usage_bytes, Some(300 * MIB));
}

#[tokio::test]
async fn unlimited_cgroup_and_no_cgroup_fall_back_to_physical_memory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    proc_files(root, 64 * 1024, 2 * 1024 * 1024);
    write(root, "proc/self/cgroup", "0::/user.slice\n");
    write(root, "proc/self/mountinfo", V2_MOUNT);
    write(root, "sys/fs/cgroup/user.slice/memory.current", "1000\n");
    write(root, "sys/fs/cgroup/user.slice/memory.max", "max\n");
    let s = sample_of(root, None).await;
    assert!(s.cgroup.is_some());
    assert_eq!(s.limit.unwrap().source, LimitSource::PhysicalMemory);
    assert_eq!(s.limit.unwrap().bytes, 2048 * MIB);

    // A container limit above the machine's memory binds nothing either.
    write(root, "sys/fs/cgroup/user.slice/memory.max", "8589934592\n");
    let s = sample_of(root, None).await;
    assert_eq!(s.limit.unwrap().source, LimitSource::PhysicalMemory);

    let bare = tempfile::tempdir().unwrap();
    proc_files(bare.path(), 64 * 1024, 4 * 1024 * 1024);
    let s = sample_of(bare.path(), None).await;
    assert!(s.cgroup.is_none());
    assert_eq!(s.limit.unwrap().bytes, 4096 * MIB);
    assert_eq!(s.usage_bytes, Some(64 * MIB));
}

#[tokio::test]
async fn a_garbled_cgroup_file_is_an_error_not_a_silent_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    proc_files(root, 64 * 1024, 2 * 1024 * 1024);
    write(root, "proc/self/cgroup", "0::/app\n");
    write(root, "proc/self/mountinfo", V2_MOUNT);
    write(root, "sys/fs/cgroup/app/memory.current", "lots\n");
    let monitor = MemoryMonitor::builder()
        .source(ProbeSource::at(root))
        .build()
        .unwrap();
    let err = monitor.sample_now().await.unwrap_err();
    assert!(matches!(err, SampleError::Probe(_)), "{err}");
    assert!(err.to_string().contains("memory.current"), "{err}");
    assert_eq!(monitor.sample_counts(), (0, 1));
    assert!(monitor.snapshot().is_none());
}

#[tokio::test]
async fn the_real_process_has_a_limit_and_usage() {
    let monitor = MemoryMonitor::builder().build().unwrap();
    let s = monitor.sample_now().await.unwrap();
    let rss = s.process.unwrap().rss_bytes;
    assert!(rss > 0);
    assert!(s.usage_bytes.unwrap() >= rss);
    assert!(s.limit.unwrap().bytes >= s.usage_bytes.unwrap() / 2);
    assert_eq!(monitor.pressure(), s.pressure);
}

fn steered(source: &Steered) -> tower_memory_health::MemoryMonitorBuilder {
    MemoryMonitor::builder()
        .source(source.clone())
        .limit_bytes(1000)
        .reclaim_enabled(false)
}

#[tokio::test]
async fn thresholds_rise_at_once_and_fall_only_past_the_margin() {
    let source = Steered::new(500);
    let monitor = steered(&source).hysteresis(0.05).build().unwrap();
    let mut changes = monitor.signal().subscribe();
    let steps: &[(u64, Pressure)] = &[
        (500, Pressure::Normal),
        (749, Pressure::Normal),
        (750, Pressure::Warning),
        (720, Pressure::Warning), // below 0.75, above 0.70: holds
        (701, Pressure::Warning),
        (699, Pressure::Normal),
        (760, Pressure::Warning),
        (850, Pressure::Critical),
        (810, Pressure::Critical), // above 0.80: holds
        (849, Pressure::Critical),
        (799, Pressure::Warning),
        (740, Pressure::Warning),
        (980, Pressure::Critical), // Normal -> Critical skips nothing when jumping
        (600, Pressure::Normal),   // a fall past both margins goes straight to Normal
        (1200, Pressure::Critical), // over the limit
    ];
    for &(rss, expected) in steps {
        source.set(rss);
        let s = monitor.sample_now().await.unwrap();
        assert_eq!(s.pressure, expected, "at usage {rss}/1000");
        assert_eq!(monitor.pressure(), expected);
        assert_eq!(monitor.usage_ratio(), Some(rss as f64 / 1000.0));
    }
    assert!(changes.has_changed().unwrap());
    assert_eq!(*changes.borrow_and_update(), Pressure::Critical);
}

#[tokio::test]
async fn no_flapping_at_the_boundary() {
    let source = Steered::new(0);
    let monitor = steered(&source).build().unwrap();
    let mut rx = monitor.signal().subscribe();
    let mut transitions = 0;
    for i in 0..40 {
        // Usage jitters around the critical threshold: 0.84 / 0.86.
        source.set(if i % 2 == 0 { 860 } else { 840 });
        monitor.sample_now().await.unwrap();
        if rx.has_changed().unwrap() {
            rx.borrow_and_update();
            transitions += 1;
        }
    }
    assert_eq!(transitions, 1, "one rise to Critical, then it holds");
    assert_eq!(monitor.pressure(), Pressure::Critical);

    // Without a margin the same jitter flaps on every sample.
    let source = Steered::new(0);
    let monitor = steered(&source).hysteresis(0.0).build().unwrap();
    let mut rx = monitor.signal().subscribe();
    let mut transitions = 0;
    for i in 0..40 {
        source.set(if i % 2 == 0 { 860 } else { 840 });
        monitor.sample_now().await.unwrap();
        if rx.has_changed().unwrap() {
            rx.borrow_and_update();
            transitions += 1;
        }
    }
    assert_eq!(transitions, 40);
}

#[tokio::test]
async fn a_failed_sample_keeps_the_last_level_and_is_counted() {
    let source = Steered::new(900);
    let monitor = steered(&source).build().unwrap();
    monitor.sample_now().await.unwrap();
    source.fail.store(true, Ordering::SeqCst);
    assert!(monitor.sample_now().await.is_err());
    assert_eq!(monitor.pressure(), Pressure::Critical);
    assert_eq!(monitor.sample_counts(), (1, 1));
    source.fail.store(false, Ordering::SeqCst);
    source.set(100);
    monitor.sample_now().await.unwrap();
    assert_eq!(monitor.pressure(), Pressure::Normal);
}

/// A leak of 45 MB/h under allocation churn: a sawtooth of +-8 MB every 4 samples on top.
fn leaking(minutes: f64) -> u64 {
    let saw = [0.0, 8e6, -8e6, 4e6][(minutes * 2.0) as usize % 4];
    (300e6 + 45e6 * minutes / 60.0 + saw) as u64
}

#[tokio::test]
async fn a_steady_45_mb_per_hour_leak_is_reported_within_ten_percent() {
    let source = Steered::new(0);
    let monitor = MemoryMonitor::builder()
        .source(source.clone())
        .limit_bytes(4 << 30)
        .reclaim_enabled(false)
        .trend_window(Duration::from_secs(30 * 60))
        .leak_threshold(LeakThreshold::BytesPerHour(30_000_000))
        .leak_after(Duration::from_secs(10 * 60))
        .build()
        .unwrap();
    let mut leak_seen_at = None;
    // 90 minutes of samples every 30 s.
    for k in 0..180u64 {
        let minutes = k as f64 / 2.0;
        source.at(Duration::from_secs(30 * k));
        source.set(leaking(minutes));
        let s = monitor.sample_now().await.unwrap();
        if s.leak_suspected && leak_seen_at.is_none() {
            leak_seen_at = Some(minutes);
        }
    }
    let s = monitor.snapshot().unwrap();
    let rate = s.trend.bytes_per_hour.unwrap();
    assert!(
        (rate - 45e6).abs() <= 4.5e6,
        "reported {rate:.0} B/h for a 45 MB/h leak"
    );
    assert_eq!(s.trend.span, Duration::from_secs(30 * 60));
    assert!(s.leak_suspected);
    // Needs half a window of data (15 min) and then 10 min above the bound.
    let at = leak_seen_at.unwrap();
    eprintln!("a 45 MB/h leak is reported as {rate:.0} B/h; flagged after {at} min");
    assert!((24.0..=30.0).contains(&at), "leak flagged after {at} min");
}

#[tokio::test]
async fn churn_without_growth_is_no_leak() {
    let source = Steered::new(0);
    let monitor = MemoryMonitor::builder()
        .source(source.clone())
        .limit_bytes(4 << 30)
        .reclaim_enabled(false)
        .leak_threshold(LeakThreshold::BytesPerHour(30_000_000))
        .leak_after(Duration::from_secs(60))
        .build()
        .unwrap();
    for k in 0..120u64 {
        source.at(Duration::from_secs(30 * k));
        // The same sawtooth, plus one 200 MB burst that is released again.
        let burst = if (40..44).contains(&k) { 200e6 } else { 0.0 };
        source.set((leaking(0.0) as f64 + burst + [0.0, 8e6, -8e6, 4e6][k as usize % 4]) as u64);
        let s = monitor.sample_now().await.unwrap();
        assert!(!s.leak_suspected, "flagged a leak at sample {k}");
    }
    let rate = monitor.snapshot().unwrap().trend.bytes_per_hour.unwrap();
    assert!(rate.abs() < 5e6, "flat usage reported as {rate:.0} B/h");
}

#[tokio::test]
async fn reclaim_on_entering_critical_and_on_schedule() {
    let source = Steered::new(100);
    let reclaimer = Reclaimer::builder().min_interval(Duration::ZERO).build();
    let monitor = MemoryMonitor::builder()
        .source(source.clone())
        .limit_bytes(1000)
        .reclaimer(reclaimer.clone())
        .reclaim_interval(Duration::from_secs(300))
        .build()
        .unwrap();
    // One sample a minute; usage per minute; Critical from minute 6 to 7.
    let usage = [
        100, 100, 100, 100, 100, 100, 900, 900, 300, 300, 300, 300, 300, 300,
    ];
    let mut runs_after = Vec::new();
    for (minute, &rss) in usage.iter().enumerate() {
        source.at(Duration::from_secs(60 * minute as u64));
        source.set(rss);
        monitor.sample_now().await.unwrap();
        runs_after.push(monitor.reclaim_summary().runs);
    }
    let reasons: Vec<ReclaimTrigger> = monitor
        .reclaim_history()
        .iter()
        .map(|r| r.trigger)
        .collect();
    // Minute 5: five minutes since the first sample. Minute 6: entering Critical (staying
    // Critical at 7 triggers nothing). Minute 11: five minutes after the last run.
    assert_eq!(
        reasons,
        [
            ReclaimTrigger::Scheduled,
            ReclaimTrigger::Critical,
            ReclaimTrigger::Scheduled
        ]
    );
    assert_eq!(runs_after, [0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 3, 3, 3]);
    let summary = monitor.reclaim_summary();
    assert_eq!(summary.failures, 0);
    assert_eq!(reclaimer.runs(), 3, "the real reclaimer ran each time");
    for record in monitor.reclaim_history() {
        assert_eq!(
            record.released_bytes(),
            record.resident_before.saturating_sub(record.resident_after)
        );
        assert!(record.resident_before > 0);
        assert!(record.duration > Duration::ZERO);
    }
    assert_eq!(
        summary.released_bytes,
        monitor
            .reclaim_history()
            .iter()
            .map(|r| r.released_bytes())
            .sum::<u64>()
    );
    assert_eq!(summary.last.unwrap().trigger, ReclaimTrigger::Scheduled);
}

#[tokio::test]
async fn reclaim_disabled_never_runs() {
    let source = Steered::new(100);
    let reclaimer = Reclaimer::builder().min_interval(Duration::ZERO).build();
    let monitor = MemoryMonitor::builder()
        .source(source.clone())
        .limit_bytes(1000)
        .reclaimer(reclaimer.clone())
        .reclaim_enabled(false)
        .reclaim_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    for minute in 0..10u64 {
        source.at(Duration::from_secs(60 * minute));
        source.set(if minute % 3 == 0 { 950 } else { 100 });
        monitor.sample_now().await.unwrap();
    }
    assert_eq!(monitor.reclaim_summary().runs, 0);
    assert_eq!(reclaimer.runs(), 0);
}

#[tokio::test]
async fn a_rate_limited_reclaimer_skips_without_counting_a_failure() {
    let source = Steered::new(100);
    // The reclaimer allows one run an hour (real time); the schedule asks every synthetic minute.
    let reclaimer = Reclaimer::builder()
        .min_interval(Duration::from_secs(3600))
        .build();
    let monitor = MemoryMonitor::builder()
        .source(source.clone())
        .limit_bytes(1000)
        .reclaimer(reclaimer)
        .reclaim_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    for minute in 0..5u64 {
        source.at(Duration::from_secs(60 * minute));
        monitor.sample_now().await.unwrap();
    }
    let summary = monitor.reclaim_summary();
    assert_eq!(summary.runs, 1);
    assert_eq!(summary.failures, 0);
}

#[tokio::test]
async fn liveness_follows_the_task() {
    let source = Steered::new(100);
    let monitor = MemoryMonitor::builder()
        .source(source.clone())
        .limit_bytes(1000)
        .reclaim_enabled(false)
        .check_interval(Duration::from_millis(20))
        .stall_after(Duration::from_millis(300))
        .build()
        .unwrap();
    assert_eq!(monitor.liveness(), Liveness::NotRunning);
    monitor.start().unwrap();
    monitor.start().unwrap(); // idempotent
    assert!(eventually(Duration::from_secs(5), || monitor.sample_counts().0 >= 3).await);
    assert!(matches!(monitor.liveness(), Liveness::Alive { .. }));

    // A source that hangs wedges the sampling task; liveness notices.
    source.block.store(true, Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(5), || matches!(
            monitor.liveness(),
            Liveness::Stalled { .. }
        ))
        .await
    );
    let Liveness::Stalled { since_last_sample } = monitor.liveness() else {
        unreachable!()
    };
    assert!(since_last_sample > Duration::from_millis(300));
    source.block.store(false, Ordering::SeqCst);
    assert!(eventually(Duration::from_secs(5), || monitor.liveness().is_live()).await);

    // A failing source still answers on schedule: alive, with the errors counted.
    source.fail.store(true, Ordering::SeqCst);
    let errors = monitor.sample_counts().1;
    assert!(
        eventually(Duration::from_secs(5), || monitor.sample_counts().1
            >= errors + 3)
        .await
    );
    assert!(monitor.liveness().is_live());

    monitor.stop();
    assert_eq!(monitor.liveness(), Liveness::NotRunning);
    let counted = monitor.sample_counts();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let later = monitor.sample_counts();
    assert!(
        later.0 + later.1 <= counted.0 + counted.1 + 1,
        "stopped task kept sampling"
    );

    // And it can start again.
    source.fail.store(false, Ordering::SeqCst);
    monitor.start().unwrap();
    let before = monitor.sample_counts().0;
    assert!(
        eventually(Duration::from_secs(5), || monitor.sample_counts().0
            > before)
        .await
    );
    monitor.stop();
}

#[tokio::test]
async fn dropping_the_last_handle_ends_the_task() {
    let calls = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&calls);
    let source = move || -> Result<Sample, SampleError> {
        counted.fetch_add(1, Ordering::SeqCst);
        let mut s = Sample::at(Instant::now());
        s.process = Some(ProcessMemory {
            rss_bytes: 1,
            peak_rss_bytes: 1,
            virtual_bytes: 1,
        });
        Ok(s)
    };
    let monitor = MemoryMonitor::builder()
        .source(source)
        .limit_bytes(1000)
        .check_interval(Duration::from_millis(10))
        .build()
        .unwrap();
    monitor.start().unwrap();
    assert!(eventually(Duration::from_secs(5), || calls.load(Ordering::SeqCst) >= 2).await);
    drop(monitor);
    // A sample already running on the blocking pool may still finish.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_drop = calls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(calls.load(Ordering::SeqCst), after_drop);
}

#[test]
fn start_needs_a_runtime() {
    let monitor = MemoryMonitor::builder().build().unwrap();
    assert_eq!(monitor.start(), Err(StartError::NoRuntime));
    assert_eq!(monitor.liveness(), Liveness::NotRunning);
}

#[test]
fn builder_rejects_settings_that_cannot_work() {
    let err = |b: tower_memory_health::MemoryMonitorBuilder| b.build().unwrap_err();
    assert!(matches!(
        err(MemoryMonitor::builder()
            .warning_threshold(0.9)
            .critical_threshold(0.8)),
        BuildError::ThresholdOrder { .. }
    ));
    assert!(matches!(
        err(MemoryMonitor::builder().warning_threshold(0.85)),
        BuildError::ThresholdOrder { .. }
    ));
    for (b, setting) in [
        (MemoryMonitor::builder().warning_threshold(0.0), "warning"),
        (MemoryMonitor::builder().critical_threshold(1.5), "critical"),
        (
            MemoryMonitor::builder().critical_threshold(f64::NAN),
            "critical",
        ),
        (
            MemoryMonitor::builder().hysteresis(0.8),
            "hysteresis margin",
        ),
        (
            MemoryMonitor::builder().hysteresis(-0.1),
            "hysteresis margin",
        ),
        (
            MemoryMonitor::builder().check_interval(Duration::ZERO),
            "interval",
        ),
        (
            MemoryMonitor::builder().reclaim_interval(Duration::ZERO),
            "reclaim interval",
        ),
        (
            MemoryMonitor::builder().trend_window(Duration::ZERO),
            "trend window",
        ),
        (
            MemoryMonitor::builder().stall_after(Duration::ZERO),
            "stall timeout",
        ),
        (MemoryMonitor::builder().limit_bytes(0), "limit"),
        (
            MemoryMonitor::builder().leak_threshold(LeakThreshold::FractionOfLimitPerHour(-1.0)),
            "leak threshold",
        ),
    ] {
        match err(b) {
            BuildError::Invalid { setting: s, .. } => assert_eq!(s, setting),
            other => panic!("{setting}: {other:?}"),
        }
    }
    let ok = MemoryMonitor::builder()
        .check_interval(Duration::from_secs(5))
        .build()
        .unwrap();
    assert_eq!(ok.stall_after(), Duration::from_secs(15));
    assert_eq!(ok.thresholds().margin(), 0.05);
}

#[tokio::test]
async fn the_monitor_sizes_the_budget_and_samples_again_when_it_moves() {
    // Limit 1000 MiB, warning 0.75: with 100 MiB held outside requests the budget is 650 MiB.
    let source = Steered::new(100 * MIB);
    let budget = tower_memory_probe::MemoryBudget::new(1);
    let monitor = MemoryMonitor::builder()
        .source(source.clone())
        .limit_bytes(1000 * MIB)
        .check_interval(Duration::from_secs(3600))
        .resample_gap(Duration::from_millis(20))
        .kernel_events(false)
        .reclaim_enabled(false)
        .budget(budget.clone(), tower_memory_health::BudgetCapacity::Auto)
        .build()
        .unwrap();
    monitor.start().unwrap();
    assert!(
        eventually(Duration::from_secs(5), || monitor.sample_counts().0 == 1).await,
        "the first sample"
    );
    assert_eq!(budget.capacity(), 650 * MIB);

    // Requests take 100 MiB (10% of the limit, more than the 5% step): with the hour-long
    // interval only the movement can bring the next sample.
    source.set(200 * MIB);
    assert!(!budget.charge(100 * MIB));
    assert!(
        eventually(Duration::from_secs(5), || monitor.sample_counts().0 >= 2).await,
        "a sample on the budget's movement"
    );
    // What requests hold is not "outside": the capacity stays.
    assert_eq!(budget.capacity(), 650 * MIB);
    // Memory outside requests grows (a cache, say): the next movement shrinks the budget.
    source.set(500 * MIB);
    budget.release(100 * MIB);
    assert!(
        eventually(Duration::from_secs(5), || monitor.sample_counts().0 >= 3).await,
        "a sample on the release"
    );
    assert_eq!(budget.capacity(), 250 * MIB);
    // A small movement (under 5% of the limit) brings no sample.
    let samples = monitor.sample_counts().0;
    budget.charge(10 * MIB);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(monitor.sample_counts().0, samples);
    budget.release(10 * MIB);
    monitor.stop();
}

#[tokio::test]
async fn a_fixed_budget_stays_fixed_and_a_ratio_follows_the_limit() {
    for (capacity, expected) in [
        (
            tower_memory_health::BudgetCapacity::Bytes(123 * MIB),
            123 * MIB,
        ),
        (
            tower_memory_health::BudgetCapacity::RatioOfLimit(0.5),
            500 * MIB,
        ),
    ] {
        let budget = tower_memory_probe::MemoryBudget::new(1);
        let monitor = MemoryMonitor::builder()
            .source(Steered::new(900 * MIB))
            .limit_bytes(1000 * MIB)
            .reclaim_enabled(false)
            .budget(budget.clone(), capacity)
            .build()
            .unwrap();
        monitor.sample_now().await.unwrap();
        assert_eq!(budget.capacity(), expected, "{capacity:?}");
        assert_eq!(monitor.budget_capacity(), Some(capacity));
    }
}

/// Off Linux (or in a container without `/proc`) there is neither `/proc/self/status` nor a
/// cgroup: an empty root stands for that. Samples still succeed: the resident set comes from the
/// operating system (memory-stats), there is no cgroup, and a configured limit gives the ratio.
#[tokio::test]
async fn a_root_without_proc_or_cgroups_samples_cleanly() {
    let empty = tempfile::tempdir().unwrap();
    let monitor = MemoryMonitor::builder()
        .source(ProbeSource::at(empty.path()))
        .limit_bytes(1 << 40)
        .build()
        .unwrap();
    let snapshot = monitor.sample_now().await.expect("no error without /proc");
    let process = snapshot.process.expect("the fallback's resident set");
    assert!(process.rss_bytes > 0, "{process:?}");
    assert!(snapshot.cgroup.is_none());
    assert_eq!(snapshot.usage_bytes, Some(process.rss_bytes));
    assert!(snapshot.usage_ratio.is_some_and(|r| r > 0.0 && r < 1.0));
    assert_eq!(monitor.pressure(), Pressure::Normal);
}
