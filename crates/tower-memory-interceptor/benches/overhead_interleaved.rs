//! The `overhead` scenario measured so that a busy machine disturbs it less: every configuration
//! runs in short batches, interleaved with the bare service, many rounds; each keeps its fastest
//! batch (preemption and other processes only ever add time). Prints the added cost per request
//! and per extra poll for each configuration.
//!
//! Run: `cargo bench -p tower-memory-interceptor --bench overhead_interleaved`
//! (`ROUNDS=100` for a quicker run; default 400 rounds of 2,000 requests per configuration).
//!
//! `ONLY=<configuration>` (or `ONLY=bare`) runs one configuration alone, for instruction counts
//! that a noisy machine cannot disturb: run the bench binary under
//! `valgrind --tool=callgrind` with `ROUNDS=1` and `ROUNDS=11` and divide the difference in
//! instructions by 10 x 2,000, with `POLLS=1` or `POLLS=17` for one of the two scenarios
//! (`benches/instructions.sh` in this crate does it; see BENCHMARKS.md).

mod scenario;

use std::task::Context;
use std::time::Instant;

use http::Uri;
use scenario::{Trivial, check_counters, layers, one_request};
use tower::Layer;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const BATCH: u32 = 2_000;

fn main() {
    // `cargo bench` passes `--bench`; nothing else is understood.
    check_counters();
    let rounds: u32 = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(400);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let uri = Uri::from_static("/api/hello");
    let waker = scenario::waker();
    let mut cx = Context::from_waker(&waker);

    let mut rows = Vec::new();
    // `POLLS=1` or `POLLS=17` measures one of the two scenarios only (for instruction counts).
    let only_polls: Option<u32> = std::env::var("POLLS").ok().and_then(|p| p.parse().ok());
    for polls in [1u32, 17] {
        if only_polls.is_some_and(|p| p != polls) {
            continue;
        }
        let inner = Trivial {
            pendings: polls - 1,
        };
        let mut bare = inner;
        let only = std::env::var("ONLY").ok();
        let mut services: Vec<_> = layers()
            .into_iter()
            .filter(|(name, _)| only.as_deref().is_none_or(|o| o == *name))
            .map(|(name, layer)| (name, layer.layer(inner)))
            .collect();
        let mut best_bare = f64::MAX;
        let mut best = vec![f64::MAX; services.len()];
        let run_bare = only.as_deref().is_none_or(|o| o == "bare");
        for _ in 0..rounds {
            if run_bare {
                let start = Instant::now();
                for _ in 0..BATCH {
                    one_request(&mut bare, &uri, &mut cx);
                }
                best_bare = best_bare.min(start.elapsed().as_nanos() as f64 / f64::from(BATCH));
            }
            for (i, (_, service)) in services.iter_mut().enumerate() {
                let start = Instant::now();
                for _ in 0..BATCH {
                    one_request(service, &uri, &mut cx);
                }
                best[i] = best[i].min(start.elapsed().as_nanos() as f64 / f64::from(BATCH));
            }
        }
        let names: Vec<_> = services.iter().map(|(n, _)| *n).collect();
        rows.push((polls, best_bare, names, best));
    }

    if rows.len() < 2 {
        return;
    }
    println!("fastest batch of {BATCH} requests, {rounds} interleaved rounds (ns per request)");
    println!(
        "{:<22} {:>12} {:>12} {:>14} {:>14} {:>16}",
        "configuration",
        "polls=1",
        "polls=17",
        "added/request",
        "added/17 polls",
        "added/extra poll"
    );
    let (_, bare1, names, one) = &rows[0];
    let (_, bare17, _, seventeen) = &rows[1];
    println!(
        "{:<22} {:>12.1} {:>12.1} {:>14} {:>14} {:>16}",
        "bare", bare1, bare17, "-", "-", "-"
    );
    for (i, name) in names.iter().enumerate() {
        let added1 = one[i] - bare1;
        let added17 = seventeen[i] - bare17;
        println!(
            "{:<22} {:>12.1} {:>12.1} {:>14.1} {:>14.1} {:>16.2}",
            name,
            one[i],
            seventeen[i],
            added1,
            added17,
            (added17 - added1) / 16.0
        );
    }
}
