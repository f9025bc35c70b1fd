//! Allocator profiles on jemalloc: the controls each profile sets on every arena and for new
//! ones, switching at run time, applying at monitor start-up, and what `memory-first` does to the
//! resident set after a burst (measured in child processes, one per profile, so that no other
//! test's allocations share the figure).

use std::hint::black_box;
use std::time::{Duration, Instant};

use tower_memory_health::{AllocatorProfile, MEMORY_FIRST_DIRTY_DECAY_MS, MemoryMonitor};
use tower_memory_probe::jemalloc_ctl as ctl;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn initialized_arenas() -> Vec<u32> {
    let n = ctl::arena_count().unwrap();
    (0..n)
        .filter(|&i| ctl::arena_initialized(i).unwrap_or(false))
        .collect()
}

#[test]
fn profiles_set_every_arena_and_restore_the_start_up_values() {
    // Threads get arenas of their own: make several exist.
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| black_box(vec![0u8; 1 << 20]));
        }
    });
    let arenas = initialized_arenas();
    assert!(arenas.len() >= 2, "arenas: {arenas:?}");
    let startup: (bool, isize, isize) = (
        ctl::opt_background_thread().unwrap(),
        ctl::opt_dirty_decay_ms().unwrap(),
        ctl::opt_muzzy_decay_ms().unwrap(),
    );

    let report = AllocatorProfile::MemoryFirst.apply().unwrap();
    assert_eq!(
        AllocatorProfile::current(),
        Some(AllocatorProfile::MemoryFirst)
    );
    // jemalloc's background threads off, this crate's decay thread on.
    assert!(!report.background_thread && report.decay_ticker);
    assert!(report.arenas_updated as usize >= arenas.len());
    assert!(!ctl::background_thread().unwrap());
    assert_eq!(
        ctl::default_dirty_decay_ms().unwrap(),
        MEMORY_FIRST_DIRTY_DECAY_MS
    );
    assert_eq!(ctl::default_muzzy_decay_ms().unwrap(), 0);
    for i in &arenas {
        assert_eq!(
            ctl::arena_dirty_decay_ms(*i).unwrap(),
            MEMORY_FIRST_DIRTY_DECAY_MS,
            "arena {i}"
        );
        assert_eq!(ctl::arena_muzzy_decay_ms(*i).unwrap(), 0);
    }
    // An arena created afterwards starts with the profile's decay.
    let created = ctl::create_arena().unwrap();
    assert_eq!(
        ctl::arena_dirty_decay_ms(created).unwrap(),
        MEMORY_FIRST_DIRTY_DECAY_MS
    );

    // At run time, back to throughput: the values jemalloc started with.
    let report = AllocatorProfile::Throughput.apply().unwrap();
    assert_eq!(
        AllocatorProfile::current(),
        Some(AllocatorProfile::Throughput)
    );
    assert_eq!(
        (
            report.background_thread,
            report.dirty_decay_ms,
            report.muzzy_decay_ms
        ),
        startup
    );
    assert_eq!(ctl::background_thread().unwrap(), startup.0);
    for i in &arenas {
        assert_eq!(ctl::arena_dirty_decay_ms(*i).unwrap(), startup.1);
    }

    // The monitor applies its profile when it starts.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let monitor = MemoryMonitor::builder()
            .allocator_profile(AllocatorProfile::MemoryFirst)
            .build()
            .unwrap();
        monitor.start().unwrap();
        assert_eq!(
            AllocatorProfile::current(),
            Some(AllocatorProfile::MemoryFirst)
        );
        assert!(!ctl::background_thread().unwrap());
        // And switches at run time through the monitor too.
        monitor
            .set_allocator_profile(AllocatorProfile::Throughput)
            .unwrap();
        assert_eq!(ctl::background_thread().unwrap(), startup.0);
        monitor.stop();
    });
}

const CHILD: &str = "MEMORY_HEALTH_DECAY_CHILD";
/// Set in the child: allocate on several threads in 1 MiB blocks.
const THREADS: &str = "MEMORY_HEALTH_DECAY_THREADS";
const MIB: u64 = 1 << 20;

fn rss() -> u64 {
    tower_memory_probe::process_memory().unwrap().rss_bytes
}

/// In the child: apply the profile, allocate and touch 256 MiB in 64 KiB blocks, free it, stay
/// idle and report the resident set over 3 s.
fn child(profile: &str) {
    profile
        .parse::<AllocatorProfile>()
        .unwrap()
        .apply()
        .unwrap();
    let base = rss();
    // With THREADS: 1 MiB blocks on four threads that free them and then stay alive and idle,
    // as a server's worker threads do after heavy requests.
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let mut workers = Vec::new();
    let (peak, freed) = if std::env::var_os(THREADS).is_some() {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(5));
        for t in 0..4u8 {
            let barrier = std::sync::Arc::clone(&barrier);
            workers.push(std::thread::spawn(move || {
                let blocks: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i ^ t; 1 << 20]).collect();
                black_box(&blocks);
                barrier.wait(); // all allocated
                barrier.wait(); // peak measured
                drop(blocks);
                barrier.wait(); // all freed
                while !DONE.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }));
        }
        barrier.wait();
        let peak = rss();
        barrier.wait();
        barrier.wait();
        (peak, rss())
    } else {
        let blocks: Vec<Vec<u8>> = (0..4096).map(|i| vec![i as u8; 64 << 10]).collect();
        black_box(&blocks);
        let peak = rss();
        drop(blocks);
        (peak, rss())
    };
    let start = Instant::now();
    let mut at = Vec::new();
    for second in 1..=3 {
        std::thread::sleep(
            Duration::from_secs(second) - start.elapsed().min(Duration::from_secs(second)),
        );
        at.push(rss());
    }
    DONE.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    println!(
        "DECAY base={base} peak={peak} freed={freed} t1={} t2={} t3={}",
        at[0], at[1], at[2]
    );
}

fn run_child(profile: &str) -> std::collections::HashMap<String, u64> {
    run_child_with(profile, false)
}

fn run_child_with(profile: &str, threads: bool) -> std::collections::HashMap<String, u64> {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    if threads {
        command.env(THREADS, "1");
    }
    let out = command
        .args([
            "--exact",
            "memory_first_returns_a_burst_to_the_os",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, profile)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The harness prints "test <name> ... " on the same line first.
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("DECAY ").map(|(_, figures)| figures))
        .unwrap_or_else(|| {
            panic!(
                "child printed no figures: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    line.split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

#[test]
fn memory_first_returns_a_burst_to_the_os() {
    if let Ok(profile) = std::env::var(CHILD) {
        child(&profile);
        return;
    }
    let memory_first = run_child("memory-first");
    let throughput = run_child("throughput");
    // As a server's heavy requests do it: the threads that freed stay alive and idle.
    let threads = run_child_with("memory-first", true);
    eprintln!(
        "memory-first, 4 threads x 64 x 1 MiB: base {} peak {} freed {} t1 {} t2 {} t3 {} MiB",
        threads["base"] / MIB,
        threads["peak"] / MIB,
        threads["freed"] / MIB,
        threads["t1"] / MIB,
        threads["t2"] / MIB,
        threads["t3"] / MIB
    );
    let mib = |m: &std::collections::HashMap<String, u64>, k: &str| m[k] / MIB;
    eprintln!(
        "memory-first: base {} peak {} freed {} t1 {} t2 {} t3 {} MiB",
        mib(&memory_first, "base"),
        mib(&memory_first, "peak"),
        mib(&memory_first, "freed"),
        mib(&memory_first, "t1"),
        mib(&memory_first, "t2"),
        mib(&memory_first, "t3")
    );
    eprintln!(
        "throughput:   base {} peak {} freed {} t1 {} t2 {} t3 {} MiB",
        mib(&throughput, "base"),
        mib(&throughput, "peak"),
        mib(&throughput, "freed"),
        mib(&throughput, "t1"),
        mib(&throughput, "t2"),
        mib(&throughput, "t3")
    );
    for m in [&memory_first, &throughput] {
        assert!(
            m["peak"] >= m["base"] + 240 * MIB,
            "the burst was resident: {m:?}"
        );
    }
    // memory-first: within 2 s of going idle, at least three quarters of the burst is back,
    // whichever threads allocated and freed it.
    for m in [&memory_first, &threads] {
        assert!(
            m["t2"] <= m["base"] + 64 * MIB,
            "memory-first kept the burst: {m:?}"
        );
    }
    // throughput (jemalloc's defaults): an idle process keeps it; nothing runs the decay.
    assert!(
        throughput["t3"] >= throughput["base"] + 192 * MIB,
        "throughput released the burst: {throughput:?}"
    );
}
