//! The whole-service before/after: the example server (the whole stack) against the same routes
//! written the way a typical axum service is written (`examples/baseline_server.rs`: `Bytes` and
//! `Json` extractors, tower-http compression and decompression, the same jemalloc), under one
//! mixed workload, side by side in one run, each figure the median of `RUNS` runs.
//!
//! (Over 400 lines: one driver: its phases, its report and its pictures in one place, as the
//! command BENCHMARKS.md cites (the workload itself is in tests/support/workload.rs).)
//!
//! ```sh
//! cargo build --release --features full --example server --example baseline_server
//! cargo bench --features full --bench outcomes            # RUNS=3; about 8 minutes
//! SOAK_SECONDS=600 cargo bench --features full --bench outcomes   # also the 10-minute leak soak
//! SOAK_ONLY=1 SOAK_SECONDS=600 cargo bench --features full --bench outcomes  # the soak alone
//! ```
//!
//! Servers: `baseline` (jemalloc defaults), `stack` (the example server with its defaults) and
//! `stack-memory-first` (the same with `MEMORY_ALLOCATOR_PROFILE=memory-first` and
//! `MEMORY_CHECK_INTERVAL=5000`, what deploy/ runs).
//!
//! Parts, each with a fresh server process per server and run, the order of the servers rotating
//! from run to run:
//!
//! 1. **Memory**: steady small traffic (small JSON reads, compressed 256 KiB document reads with a
//!    browser's `Accept-Encoding`, 4 KiB JSON posts) in phases: warm-up 3 s, burst (8 concurrent
//!    64 MiB uploads, 4 heavy reports of 32 MiB, 4 event streams), idle 4 s, the same burst
//!    again, idle 4 s. The server's RSS is sampled every 100 ms. Figures: peak RSS (`VmHWM`), RSS
//!    2 s after each burst ends against the idle RSS before the first burst.
//! 2. **Throughput**: all servers up at once pinned to core 0, wrk pinned to core 1, 5-second runs
//!    rotating over the servers: small JSON reads (`/api/documents?count=5`, uncompressed), the
//!    256 KiB document with a browser's `Accept-Encoding`, and with `gzip` alone.
//! 3. **Overload**: each server in a real 512 MiB memory cgroup; steady small traffic plus 12
//!    concurrent 64 MiB uploads and 12 heavy reports of 64 MiB (about 3x what fits). Cgroup usage
//!    sampled every 100 ms; every answer counted (200, 503 with `Retry-After`, anything else);
//!    OOM kills read from the cgroup.
//! 4. **Soak** (only with `SOAK_SECONDS`): the stack alone under steady traffic and a small burst
//!    every 30 s; the growth trend tower-memory-health reports at the end.
//!
//! Writes `outcomes-rss.png` and `outcomes-overload.png` (gnuplot) into `PLOT_DIR` (default: the
//! workspace root, next to BENCHMARKS.md), from the first run's samples, and the raw samples into
//! `target/outcomes/`. Root is needed for the cgroups; loopback only; bounded in time.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::Server;
use support::workload::{self, Background, Burst, Outcome, Sample, Sampler, status_bytes};
use test_support::MemoryCgroup;
use test_support::runtime;

const SERVERS: [&str; 3] = ["baseline", "stack", "stack-memory-first"];
const NORMAL_BURST: Burst = Burst {
    uploads: 8,
    upload_mib: 64,
    heavy: 4,
    heavy_mib: 32,
    streams: 4,
};
const OVERLOAD_LIMIT: u64 = 512 << 20;
const OVERLOAD_BURST: Burst = Burst {
    uploads: 12,
    upload_mib: 64,
    heavy: 12,
    heavy_mib: 64,
    streams: 4,
};
const MIB: f64 = (1u64 << 20) as f64;
/// One colour per server, the same in every picture.
const COLOURS: [&str; 3] = ["#d55e00", "#0072b2", "#009e73"];

fn start(server: &str, cgroup: Option<&MemoryCgroup>) -> Server {
    let (example, env): (&str, &[(&str, &str)]) = match server {
        "baseline" => ("baseline_server", &[]),
        "stack" => ("server", &[]),
        "stack-memory-first" => (
            "server",
            &[
                ("MEMORY_ALLOCATOR_PROFILE", "memory-first"),
                ("MEMORY_CHECK_INTERVAL", "5000"),
            ],
        ),
        other => panic!("no server {other}"),
    };
    match cgroup {
        Some(cgroup) => Server::start_in(cgroup, example, env),
        None => Server::start(example, env),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Memory over the normal workload

/// Phases of the memory part (the index is what the sampler records).
const PHASES: [&str; 5] = ["warm-up", "burst 1", "idle 1", "burst 2", "idle 2"];

struct MemoryRun {
    samples: Vec<Sample>,
    /// (start, end) seconds of each phase.
    phases: Vec<(f64, f64)>,
    idle_rss: u64,
    peak_rss: u64,
    /// RSS 2 s after each burst ended.
    after: Vec<u64>,
    burst: workload::Counts,
    background: workload::Counts,
}

fn memory_run(server: &str) -> MemoryRun {
    let s = start(server, None);
    let pid = s.pid();
    let sampler = Sampler::start(pid, None, Duration::from_millis(100));
    let rt = runtime();
    let clock = Instant::now();
    let mut phases = Vec::new();
    let (bursts, background, idle_rss, after) = rt.block_on(async {
        let mut t0 = sampler.now();
        let mut next_phase = |p: usize, phases: &mut Vec<(f64, f64)>| {
            let now = sampler.now();
            phases.push((t0, now));
            t0 = now;
            sampler.phase(p);
        };
        let background = Background::start(&s.addr, Duration::from_millis(20), clock);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle_rss = status_bytes(pid, "VmRSS:").unwrap_or(0);
        let mut bursts = Vec::new();
        let mut after = Vec::new();
        for b in 0..2 {
            next_phase(1 + 2 * b, &mut phases);
            bursts.extend(
                workload::burst(&s.addr, NORMAL_BURST, clock, Duration::from_secs(120)).await,
            );
            next_phase(2 + 2 * b, &mut phases);
            tokio::time::sleep(Duration::from_secs(2)).await;
            after.push(status_bytes(pid, "VmRSS:").unwrap_or(0));
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let now = sampler.now();
        phases.push((t0, now));
        (bursts, background.finish().await, idle_rss, after)
    });
    let peak_rss = status_bytes(pid, "VmHWM:").unwrap_or(0);
    MemoryRun {
        samples: sampler.finish(),
        phases,
        idle_rss,
        peak_rss,
        after,
        burst: workload::counts(&bursts),
        background: workload::counts(&background),
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Throughput

struct Wrk {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn wrk(url: &str, headers: &[&str], seconds: u32) -> Wrk {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", "1", "wrk", "-t1", "-c64", "--latency"])
        .arg(format!("-d{seconds}s"));
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    let value = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
    };
    let ms = |v: &str| -> f64 {
        let (n, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
        let n: f64 = n.parse().unwrap_or(f64::NAN);
        match unit {
            "us" => n / 1e3,
            "ms" => n,
            "s" => n * 1e3,
            "m" => n * 60e3,
            _ => f64::NAN,
        }
    };
    Wrk {
        rps: value("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0),
        p50_ms: value("50%").map_or(f64::NAN, ms),
        p99_ms: value("99%").map_or(f64::NAN, ms),
    }
}

const WORKLOADS: [(&str, &str, &[&str]); 3] = [
    ("small JSON reads", "/api/documents?count=5", &[]),
    (
        "256 KiB document, browser Accept-Encoding",
        "/api/documents",
        &["Accept-Encoding: gzip, deflate, br, zstd"],
    ),
    (
        "256 KiB document, gzip",
        "/api/documents",
        &["Accept-Encoding: gzip"],
    ),
];

/// Per workload and server: the runs' figures.
type Throughput = BTreeMap<(usize, &'static str), Vec<Wrk>>;

fn throughput(rounds: usize, seconds: u32) -> Throughput {
    let servers: Vec<(&str, Server)> = SERVERS
        .iter()
        .map(|name| {
            let s = start(name, None);
            // Server on core 0, wrk on core 1 (BENCHMARKING.md).
            let _ = Command::new("taskset")
                .args(["-a", "-p", "-c", "0"])
                .arg(s.pid().to_string())
                .output();
            (*name, s)
        })
        .collect();
    let mut out = Throughput::new();
    for round in 0..rounds {
        for (w, (_, path, headers)) in WORKLOADS.iter().enumerate() {
            for k in 0..servers.len() {
                let (name, server) = &servers[(k + round) % servers.len()];
                let r = wrk(&server.url(path), headers, seconds);
                out.entry((w, name)).or_default().push(r);
            }
        }
    }
    out
}

/// The encoding each server picks for a browser's `Accept-Encoding`, and its size.
fn encodings() -> Vec<(String, String, usize)> {
    SERVERS
        .iter()
        .map(|name| {
            let s = start(name, None);
            let out = Command::new("curl")
                .args(["-sS", "-D", "/dev/stderr", "-o", "/dev/stdout", "-H"])
                .arg(format!(
                    "Accept-Encoding: {}",
                    workload::BROWSER_ACCEPT_ENCODING
                ))
                .arg(s.url("/api/documents"))
                .output()
                .expect("curl");
            let headers = String::from_utf8_lossy(&out.stderr).to_lowercase();
            let encoding = headers
                .lines()
                .find_map(|l| l.strip_prefix("content-encoding:"))
                .map_or("identity".to_string(), |v| v.trim().to_string());
            (name.to_string(), encoding, out.stdout.len())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 3. Overload in a memory cgroup

struct OverloadRun {
    samples: Vec<Sample>,
    outcomes: Vec<Outcome>,
    oom_kills: u64,
    peak_cgroup: u64,
}

fn overload_run(server: &str) -> OverloadRun {
    let cgroup = MemoryCgroup::create("outcomes", OVERLOAD_LIMIT)
        .unwrap_or_else(|e| panic!("a memory cgroup for the overload part (run as root): {e}"));
    let s = start(server, Some(&cgroup));
    let usage_dir = cgroup.path().to_path_buf();
    let v1 = usage_dir.join("memory.usage_in_bytes").exists();
    let usage = move || {
        let file = if v1 {
            "memory.usage_in_bytes"
        } else {
            "memory.current"
        };
        std::fs::read_to_string(usage_dir.join(file))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    };
    let sampler = Sampler::start(s.pid(), Some(Box::new(usage)), Duration::from_millis(100));
    let rt = runtime();
    let clock = Instant::now();
    let outcomes = rt.block_on(async {
        let background = Background::start(&s.addr, Duration::from_millis(20), clock);
        tokio::time::sleep(Duration::from_secs(2)).await;
        sampler.phase(1);
        let mut all =
            workload::burst(&s.addr, OVERLOAD_BURST, clock, Duration::from_secs(120)).await;
        sampler.phase(2);
        tokio::time::sleep(Duration::from_secs(2)).await;
        all.extend(background.finish().await);
        all
    });
    OverloadRun {
        samples: sampler.finish(),
        outcomes,
        oom_kills: cgroup.oom_kills(),
        peak_cgroup: cgroup.peak_bytes().unwrap_or(0),
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Soak

fn soak(seconds: u64) -> String {
    // In a memory cgroup of its own (no tight limit), so that the monitor's usage is this
    // process's, not the shared host cgroup's; the stored uploads are deleted after each burst,
    // so their page cache does not pass for a leak.
    let cgroup = MemoryCgroup::create("outcomes-soak", 4 << 30)
        .unwrap_or_else(|e| panic!("a memory cgroup for the soak (run as root): {e}"));
    let s = start("stack-memory-first", Some(&cgroup));
    let rt = runtime();
    let clock = Instant::now();
    let start_rss = status_bytes(s.pid(), "VmRSS:").unwrap_or(0);
    let mut settled: Vec<(f64, f64)> = Vec::new();
    let health = rt.block_on(async {
        let background = Background::start(&s.addr, Duration::from_millis(50), clock);
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < deadline {
            let small = Burst {
                uploads: 2,
                upload_mib: 16,
                heavy: 2,
                heavy_mib: 16,
                streams: 1,
            };
            workload::burst(&s.addr, small, clock, Duration::from_secs(60)).await;
            for entry in std::fs::read_dir(s.upload_dir.path()).into_iter().flatten() {
                let _ = std::fs::remove_file(entry.map(|e| e.path()).unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
            // RSS at the end of each idle period: the series a leak would climb through.
            let rss = status_bytes(s.pid(), "VmRSS:").unwrap_or(0);
            settled.push((clock.elapsed().as_secs_f64(), rss as f64 / MIB));
        }
        background.finish().await;
        support::load::send(&s.addr, "GET", "/api/health", None, Duration::from_secs(10))
            .await
            .expect("/api/health")
    });
    let json: serde_json::Value = serde_json::from_slice(&health.body).expect("health JSON");
    // A fresh process warms up (thread caches, metric series, the ledger's routes, the budget's
    // learned costs) during its first minutes; a leak is growth that goes on after that, so the
    // slope is also taken over the second half of the settled series.
    let second_half = &settled[settled.len() / 2..];
    let series: Vec<String> = settled
        .iter()
        .map(|(t, mib)| format!("{t:.0}s {mib:.1}"))
        .collect();
    format!(
        "soak of {seconds} s (stack, memory-first, own memory cgroup): RSS {:.1} -> {:.1} MiB; \
         RSS after each idle period (MiB): {}; slope of the second half {:.2} MiB/hour; \
         tower-memory-health's trend over the whole run {}",
        start_rss as f64 / MIB,
        status_bytes(s.pid(), "VmRSS:").unwrap_or(0) as f64 / MIB,
        series.join(", "),
        slope_per_hour(second_half),
        json["trend"],
    )
}

/// Least-squares slope of `(seconds, MiB)` points, in MiB per hour.
fn slope_per_hour(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return f64::NAN;
    }
    let (mean_t, mean_v) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (t, v)| (a + t / n, b + v / n));
    let (cov, var) = points.iter().fold((0.0, 0.0), |(c, w), (t, v)| {
        (
            c + (t - mean_t) * (v - mean_v),
            w + (t - mean_t) * (t - mean_t),
        )
    });
    cov / var * 3600.0
}

// ---------------------------------------------------------------------------------------------
// Output

fn write_samples(dir: &Path, name: &str, samples: &[Sample]) -> PathBuf {
    let path = dir.join(format!("{name}.dat"));
    let mut text = String::from("# t_seconds rss_mib cgroup_mib phase\n");
    for s in samples {
        let _ = writeln!(
            text,
            "{:.2} {:.2} {:.2} {}",
            s.t,
            s.rss as f64 / MIB,
            s.cgroup.map_or(f64::NAN, |c| c as f64 / MIB),
            s.phase
        );
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// Completed requests per second (200 and 503 separately) from the outcomes.
fn write_rates(dir: &Path, name: &str, outcomes: &[Outcome]) -> PathBuf {
    let mut per_second: BTreeMap<u64, (u64, u64, u64)> = BTreeMap::new();
    for o in outcomes {
        let e = per_second.entry(o.done_at as u64).or_default();
        match &o.result {
            Ok(a) if a.status == 200 => e.0 += 1,
            Ok(a) if a.status == 503 && a.retry_after.is_some() => e.1 += 1,
            _ => e.2 += 1,
        }
    }
    let path = dir.join(format!("{name}.rates"));
    let mut text = String::from("# second ok refused failed\n");
    for (s, (ok, refused, failed)) in per_second {
        let _ = writeln!(text, "{}.5 {ok} {refused} {failed}", s);
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn plot(script: &str) {
    let mut child = Command::new("gnuplot")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("gnuplot runs (apt-get install gnuplot-nox)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "gnuplot failed");
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let plot_dir = std::env::var_os("PLOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/outcomes");
    std::fs::create_dir_all(&data).unwrap();
    let soak_seconds: Option<u64> = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok());
    if std::env::var_os("SOAK_ONLY").is_some() {
        println!("{}", soak(soak_seconds.unwrap_or(600)));
        return;
    }

    // 1. Memory.
    let mut memory: BTreeMap<&str, Vec<MemoryRun>> = BTreeMap::new();
    for run in 0..runs {
        for k in 0..SERVERS.len() {
            let name = SERVERS[(k + run) % SERVERS.len()];
            let r = memory_run(name);
            eprintln!(
                "memory run {run} {name}: idle {:.0} MiB, peak {:.0} MiB, after bursts {:?} MiB, burst {:?}",
                r.idle_rss as f64 / MIB,
                r.peak_rss as f64 / MIB,
                r.after.iter().map(|a| a >> 20).collect::<Vec<_>>(),
                r.burst
            );
            memory.entry(name).or_default().push(r);
        }
    }
    // 2. Throughput.
    let tp = throughput(runs, 5);
    let enc = encodings();
    // 3. Overload.
    let mut overload: BTreeMap<&str, Vec<OverloadRun>> = BTreeMap::new();
    for run in 0..runs {
        for k in 0..SERVERS.len() {
            let name = SERVERS[(k + run) % SERVERS.len()];
            let r = overload_run(name);
            let c = workload::counts(&r.outcomes);
            eprintln!(
                "overload run {run} {name}: {c:?}, OOM kills {}, cgroup peak {:.0} MiB",
                r.oom_kills,
                r.peak_cgroup as f64 / MIB
            );
            overload.entry(name).or_default().push(r);
        }
    }

    let mut report = String::new();
    let _ = writeln!(
        report,
        "\n## Memory over the normal workload (median of {runs} runs)\n"
    );
    let _ = writeln!(
        report,
        "| server | idle RSS MiB | peak RSS MiB | peak / baseline | RSS 2 s after burst 1 | after burst 2 | burst: 200 / 503 / failed | small traffic: 200 / 503 / failed |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|---|---|---|");
    let base_peak = median(
        memory["baseline"]
            .iter()
            .map(|r| r.peak_rss as f64)
            .collect(),
    );
    for name in SERVERS {
        let rs = &memory[name];
        let m = |f: &dyn Fn(&MemoryRun) -> f64| median(rs.iter().map(f).collect());
        let peak = m(&|r| r.peak_rss as f64);
        let c = |f: &dyn Fn(&MemoryRun) -> usize| m(&|r| f(r) as f64);
        let _ = writeln!(
            report,
            "| {name} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} / {:.0} |",
            m(&|r| r.idle_rss as f64) / MIB,
            peak / MIB,
            peak / base_peak,
            m(&|r| r.after[0] as f64) / MIB,
            m(&|r| r.after[1] as f64) / MIB,
            c(&|r| r.burst.ok),
            c(&|r| r.burst.refused),
            c(&|r| r.burst.failed),
            c(&|r| r.background.ok),
            c(&|r| r.background.refused),
            c(&|r| r.background.failed),
        );
    }
    let _ = writeln!(
        report,
        "\n## Throughput (median of {runs} rotating rounds of 5 s; ratio: median of the per-round ratios to the baseline)\n"
    );
    let _ = writeln!(
        report,
        "| workload | server | req/s | ratio | p50 ms | p99 ms |\n|---|---|---|---|---|---|"
    );
    for (w, (label, _, _)) in WORKLOADS.iter().enumerate() {
        let base = &tp[&(w, "baseline")];
        for name in SERVERS {
            let rs = &tp[&(w, name)];
            let ratio = median(rs.iter().zip(base).map(|(a, b)| a.rps / b.rps).collect());
            let _ = writeln!(
                report,
                "| {label} | {name} | {:.0} | {:.3} | {:.2} | {:.2} |",
                median(rs.iter().map(|r| r.rps).collect()),
                ratio,
                median(rs.iter().map(|r| r.p50_ms).collect()),
                median(rs.iter().map(|r| r.p99_ms).collect()),
            );
        }
    }
    let _ = writeln!(
        report,
        "\nEncoding chosen for `Accept-Encoding: {}`:",
        workload::BROWSER_ACCEPT_ENCODING
    );
    for (name, encoding, bytes) in &enc {
        let _ = writeln!(report, "- {name}: {encoding}, {bytes} bytes");
    }
    let _ = writeln!(
        report,
        "\n## Overload: {} MiB memory cgroup, {} x {} MiB uploads + {} x {} MiB heavy reports + {} event streams beside steady small traffic (median of {runs} runs)\n",
        OVERLOAD_LIMIT >> 20,
        OVERLOAD_BURST.uploads,
        OVERLOAD_BURST.upload_mib,
        OVERLOAD_BURST.heavy,
        OVERLOAD_BURST.heavy_mib,
        OVERLOAD_BURST.streams
    );
    let _ = writeln!(
        report,
        "| server | 200 | 503 + Retry-After | failed (reset, other) | peak cgroup MiB | OOM kills (per run) |\n|---|---|---|---|---|---|"
    );
    for name in SERVERS {
        let rs = &overload[name];
        let counts: Vec<_> = rs.iter().map(|r| workload::counts(&r.outcomes)).collect();
        let _ = writeln!(
            report,
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:?} |",
            median(counts.iter().map(|c| c.ok as f64).collect()),
            median(counts.iter().map(|c| c.refused as f64).collect()),
            median(counts.iter().map(|c| c.failed as f64).collect()),
            median(rs.iter().map(|r| r.peak_cgroup as f64).collect()) / MIB,
            rs.iter().map(|r| r.oom_kills).collect::<Vec<_>>(),
        );
    }
    if let Some(seconds) = soak_seconds {
        let _ = writeln!(report, "\n## Soak\n\n{}", soak(seconds));
    }
    println!("{report}");
    std::fs::write(data.join("report.md"), &report).unwrap();

    // Pictures from the first run of each server.
    let mut rss_script = format!(
        "set terminal pngcairo size 1200,700 font ',11'\nset output '{}'\n\
         set title 'RSS over the normal workload (first run): warm-up, burst, idle, burst, idle'\n\
         set xlabel 'seconds since start'\nset ylabel 'RSS (MiB)'\nset key top right box opaque\nset grid\n",
        plot_dir.join("outcomes-rss.png").display()
    );
    let mut plots = Vec::new();
    for (name, colour) in SERVERS.iter().zip(COLOURS) {
        let name = *name;
        let r = &memory[name][0];
        let file = write_samples(&data, &format!("memory-{name}"), &r.samples);
        // Phase boundaries of this server's run, as vertical lines (the baseline's labelled).
        for (i, (start, _)) in r.phases.iter().enumerate().skip(1) {
            if name == "baseline" {
                let _ = writeln!(
                    rss_script,
                    "set arrow from {start:.2}, graph 0 to {start:.2}, graph 1 nohead dt 3 lc rgb '#888888'\n\
                     set label '{}' at {start:.2}, graph 0.97 offset 0.5,0 font ',9'",
                    PHASES[i]
                );
            }
        }
        plots.push(format!(
            "'{}' using 1:2 with lines lw 2 lc rgb '{colour}' title '{name} (peak {:.0} MiB)'",
            file.display(),
            r.peak_rss as f64 / MIB
        ));
    }
    let _ = writeln!(rss_script, "plot {}", plots.join(", \\\n  "));
    plot(&rss_script);

    let mut overload_script = format!(
        "set terminal pngcairo size 1200,900 font ',11'\nset output '{}'\n\
         set multiplot layout 2,1 title 'Overload: {} MiB memory cgroup, about 3x what fits (first run)'\n\
         set xlabel 'seconds since start'\nset grid\nset key top left box opaque\n\
         set ylabel 'MiB'\nset yrange [0:{}]\n",
        plot_dir.join("outcomes-overload.png").display(),
        OVERLOAD_LIMIT >> 20,
        (OVERLOAD_LIMIT >> 20) + 64
    );
    let mut usage = vec![format!(
        "{} with lines dt 2 lw 2 lc rgb 'black' title 'limit'",
        OVERLOAD_LIMIT >> 20
    )];
    let mut rates = Vec::new();
    for (name, colour) in SERVERS.iter().zip(COLOURS) {
        let name = *name;
        let r = &overload[name][0];
        let samples = write_samples(&data, &format!("overload-{name}"), &r.samples);
        let per_second = write_rates(&data, &format!("overload-{name}"), &r.outcomes);
        let killed = if r.oom_kills > 0 { ", OOM-killed" } else { "" };
        usage.push(format!(
            "'{}' using 1:3 with lines lw 2 lc rgb '{colour}' title '{name}: cgroup usage (with page cache){killed}'",
            samples.display(),
        ));
        usage.push(format!(
            "'{}' using 1:2 with lines lw 2 dt 3 lc rgb '{colour}' title '{name}: RSS'",
            samples.display(),
        ));
        rates.push(format!(
            "'{}' using 1:2 with linespoints lw 2 lc rgb '{colour}' title '{name}: 200 per second'",
            per_second.display()
        ));
        rates.push(format!(
            "'{}' using 1:3 with points pt 6 ps 1.5 lc rgb '{colour}' title '{name}: 503 + Retry-After per second'",
            per_second.display()
        ));
        rates.push(format!(
            "'{}' using 1:4 with points pt 2 ps 1.5 lc rgb '{colour}' title '{name}: failed per second'",
            per_second.display()
        ));
    }
    let _ = writeln!(overload_script, "plot {}", usage.join(", \\\n  "));
    let _ = writeln!(
        overload_script,
        "set ylabel 'answers per second'\nset autoscale y\nset key top right box opaque\nplot {}\nunset multiplot",
        rates.join(", \\\n  ")
    );
    plot(&overload_script);
    eprintln!(
        "plots: {} and {}",
        plot_dir.join("outcomes-rss.png").display(),
        plot_dir.join("outcomes-overload.png").display()
    );
}
