//! The governor's burst table: the example server (the whole stack, default settings) and the
//! baseline server (plain axum, same handlers) each in a fresh 384 MiB memory cgroup, taking the
//! bursts of `tests/governor.rs` with a steady stream of `GET /api/hello` beside them. Prints, per
//! server and burst: completed, refused (503 with `Retry-After`), failed (reset, other status),
//! heavy p99, hello p99, peak cgroup usage against the limit, OOM kills. A server that was
//! OOM-killed is started again for the next burst.
//!
//! Run (root, on a host where memory cgroups can be created; loopback only, bounded):
//!
//! ```sh
//! cargo build --release --features full --example server --example baseline_server
//! cargo bench --features full --bench bursts
//! ```
//!
//! `RUNS=3` (default 1) repeats the whole table and prints the median of each cell.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use support::Server;
use support::load::{self, Steady, quantile, tally};
use test_support::MemoryCgroup;

const LIMIT: u64 = 384 << 20;
const BURSTS: [(usize, u64); 3] = [(16, 40), (8, 64), (32, 16)];

#[derive(Default, Clone)]
struct Row {
    completed: usize,
    refused: usize,
    failed: usize,
    heavy_p99_ms: f64,
    hello_p99_ms: f64,
    hello_failed: usize,
    peak_mib: u64,
    oom_kills: u64,
}

fn run_server(name: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut cgroup = MemoryCgroup::create("bursts", LIMIT).expect("a memory cgroup (run as root)");
    let mut server = Server::start_in(&cgroup, name, &[]);
    let runtime = test_support::runtime();
    for (n, mib) in BURSTS {
        if server.process.child_mut().try_wait().unwrap().is_some() {
            // Killed by the last burst: a new process in a new cgroup (peak and OOM count afresh).
            drop(server);
            cgroup = MemoryCgroup::create("bursts", LIMIT).unwrap();
            server = Server::start_in(&cgroup, name, &[]);
        }
        let kills_before = cgroup.oom_kills();
        let addr = server.addr.clone();
        let row = runtime.block_on(async {
            let steady = Steady::start(&addr, &["/api/hello"], Duration::from_millis(10));
            let path = format!("/api/reports/heavy?mib={mib}");
            let results = load::burst(&addr, &path, n, Duration::from_secs(60)).await;
            let small = steady.finish().await;
            let t = tally(&results);
            let (hello, hello_failed) = small
                .into_iter()
                .next()
                .map(|(_, l, f)| (l, f.len()))
                .unwrap_or_default();
            Row {
                completed: t.ok,
                refused: t.refused_with_retry_after,
                failed: t.other.len(),
                heavy_p99_ms: quantile(&t.latencies, 0.99).as_secs_f64() * 1e3,
                hello_p99_ms: quantile(&hello, 0.99).as_secs_f64() * 1e3,
                hello_failed,
                peak_mib: 0,
                oom_kills: 0,
            }
        });
        // Let a killed process be reaped and counted.
        std::thread::sleep(Duration::from_millis(300));
        rows.push(Row {
            peak_mib: cgroup.peak_bytes().unwrap_or(0) >> 20,
            oom_kills: cgroup.oom_kills() - kills_before,
            ..row
        });
        // The peak is per burst: v1 resets `max_usage_in_bytes` on write.
        let _ = std::fs::write(cgroup.path().join("memory.max_usage_in_bytes"), "0");
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(server);
    rows
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let servers = ["server", "baseline_server"];
    let mut all: Vec<Vec<Vec<Row>>> = vec![Vec::new(); servers.len()];
    for run in 0..runs {
        // Interleaved: each run measures both servers, in alternating order.
        let order: Vec<usize> = if run % 2 == 0 { vec![0, 1] } else { vec![1, 0] };
        for i in order {
            all[i].push(run_server(servers[i]));
        }
    }
    println!(
        "384 MiB memory cgroup, default settings, median of {runs} run(s); hello every 10 ms beside each burst"
    );
    println!(
        "| server | burst | completed | 503 + Retry-After | failed (reset) | heavy p99 ms | hello p99 ms | hello failed | peak cgroup MiB | OOM kills |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (i, server) in servers.iter().enumerate() {
        for (b, (n, mib)) in BURSTS.iter().enumerate() {
            let cell =
                |f: &dyn Fn(&Row) -> f64| median(all[i].iter().map(|rows| f(&rows[b])).collect());
            println!(
                "| {server} | {n} x {mib} MiB | {} | {} | {} | {:.0} | {:.1} | {} | {} / {} | {} |",
                cell(&|r| r.completed as f64),
                cell(&|r| r.refused as f64),
                cell(&|r| r.failed as f64),
                cell(&|r| r.heavy_p99_ms),
                cell(&|r| r.hello_p99_ms),
                cell(&|r| r.hello_failed as f64),
                cell(&|r| r.peak_mib as f64),
                LIMIT >> 20,
                cell(&|r| r.oom_kills as f64),
            );
        }
    }
}
