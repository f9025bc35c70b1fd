//! The memory governor's promise on real processes: the example server, with default settings,
//! inside a real memory cgroup of 384 MiB, takes bursts of heavy requests that together need far
//! more than the limit, and is never OOM-killed. Every answer is a 200 or a 503 with
//! `Retry-After` (never a reset), small requests stay fast meanwhile, and the budget is whole
//! again afterwards.
//!
//! The cgroup is a child of this process's own (tests/support/cgroup.rs); where none can be made
//! the tests say why and skip, except as root or in CI.

mod support;

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use support::Server;
use support::health::{budget_back_to_full, health};
use support::load::{self, Steady, quantile, tally};
use test_support::MemoryCgroup;
use test_support::{runtime, wait_for};

const LIMIT: u64 = 384 << 20;

// The bursts load both cores: one scenario at a time, so that latencies mean something.
static SERIAL: Mutex<()> = Mutex::new(());

#[test]
fn heavy_bursts_never_oom_kill_the_server() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(cgroup) = MemoryCgroup::create_or_skip(
        "heavy_bursts_never_oom_kill_the_server",
        "governor-heavy",
        LIMIT,
    ) else {
        return;
    };
    let server = Server::start_in(&cgroup, "server", &[]);
    let addr = server.addr.clone();
    runtime().block_on(async {
        let h = health(&addr).await;
        assert_eq!(h["limit_bytes"], LIMIT, "the monitor reads the cgroup's limit");
        let capacity = h["budget"]["capacity_bytes"].as_u64().unwrap();
        assert!(
            capacity > LIMIT / 2 && capacity < LIMIT,
            "the budget is the critical share less what the process holds: {capacity}"
        );

        // The first burst finds the route unseen: its probe shows the cost, the rest queue.
        for (n, mib, min_ok) in [(16, 40, 15), (8, 64, 1), (32, 16, 1)] {
            let steady = Steady::start(
                &addr,
                &["/api/hello", "/api/health/live"],
                Duration::from_millis(10),
            );
            let path = format!("/api/reports/heavy?mib={mib}");
            let results = load::burst(&addr, &path, n, Duration::from_secs(60)).await;
            let small = steady.finish().await;
            let t = tally(&results);
            let peak = cgroup.peak_bytes().unwrap_or(0);
            println!(
                "{n} x {mib} MiB: {} ok, {} 503 with Retry-After, other {:?}; p99 {:?}; cgroup peak {} MiB of {}",
                t.ok,
                t.refused_with_retry_after,
                t.other,
                quantile(&t.latencies, 0.99),
                peak >> 20,
                LIMIT >> 20
            );
            assert_eq!(cgroup.oom_kills(), 0, "{n} x {mib} MiB: OOM-killed");
            assert!(t.other.is_empty(), "only 200 or 503 + Retry-After: {:?}", t.other);
            assert!(t.ok >= min_ok, "{n} x {mib} MiB: {} of {n} completed", t.ok);
            for (path, latencies, failed) in &small {
                assert!(failed.is_empty(), "{path} failed during the burst: {failed:?}");
                let p99 = quantile(latencies, 0.99);
                println!("  {path}: {} requests, p50 {:?}, p99 {p99:?}", latencies.len(), quantile(latencies, 0.5));
                assert!(
                    p99 < Duration::from_millis(100),
                    "{path} p99 {p99:?} during {n} x {mib} MiB"
                );
            }
            let h = budget_back_to_full(&addr).await;
            assert!(h["budget"]["capacity_bytes"].as_u64().unwrap() > 0);
        }

        // The server serves normally afterwards, heavy work included.
        let hello = load::send(&addr, "GET", "/api/hello", None, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!((hello.status, &hello.body[..]), (200, &b"hello"[..]));
        let again = load::send(
            &addr,
            "GET",
            "/api/reports/heavy?mib=32",
            None,
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        assert_eq!(again.status, 200);
        let h = budget_back_to_full(&addr).await;
        let heavy = h["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == "/api/reports/heavy")
            .expect("the heavy route in /api/health");
        let predicted = heavy["predicted_cost_bytes"].as_u64().unwrap();
        assert!(predicted >= 16 << 20, "a learned cost: {heavy}");
        println!("heavy route: {heavy}");
    });
    assert_eq!(cgroup.oom_kills(), 0);
}

#[test]
fn buffered_uploads_and_heavy_reports_share_one_budget() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(cgroup) = MemoryCgroup::create_or_skip(
        "buffered_uploads_and_heavy_reports_share_one_budget",
        "governor-uploads",
        LIMIT,
    ) else {
        return;
    };
    let server = Server::start_in(&cgroup, "server", &[]);
    let addr = server.addr.clone();
    let stored = runtime().block_on(async {
        // 8 MiB bodies: under the 10 MiB threshold, so the body layer buffers them, under the
        // same budget as the heavy reports.
        let bodies: Vec<Bytes> = (0..8).map(|i| support::workload::noise(8 << 20, i as u64)).collect();
        let uploads: Vec<_> = bodies
            .iter()
            .cloned()
            .map(|body| {
                let addr = addr.clone();
                tokio::spawn(async move {
                    load::send(&addr, "POST", "/api/uploads", Some(body), Duration::from_secs(60))
                        .await
                })
            })
            .collect();
        let heavy = load::burst(&addr, "/api/reports/heavy?mib=40", 8, Duration::from_secs(60));
        let heavy = tally(&heavy.await);
        let mut stored = Vec::new();
        let mut refused = 0;
        for (i, task) in uploads.into_iter().enumerate() {
            let answer = task.await.unwrap().unwrap_or_else(|e| panic!("upload {i}: {e}"));
            match answer.status {
                200 => {
                    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
                    let expected = hex::encode(Sha256::digest(&bodies[i]));
                    assert_eq!(json["sha256"], expected.as_str(), "upload {i} stored whole");
                    assert_eq!(json["bytes"], 8 << 20);
                    stored.push(expected);
                }
                503 => {
                    assert!(answer.retry_after.is_some(), "upload {i}: 503 without Retry-After");
                    refused += 1;
                }
                other => panic!("upload {i}: status {other}"),
            }
        }
        println!(
            "uploads: {} stored, {refused} refused; heavy: {} ok, {} refused, other {:?}; cgroup peak {} MiB",
            stored.len(),
            heavy.ok,
            heavy.refused_with_retry_after,
            heavy.other,
            cgroup.peak_bytes().unwrap_or(0) >> 20
        );
        assert!(heavy.other.is_empty(), "heavy: {:?}", heavy.other);
        assert_eq!(cgroup.oom_kills(), 0);
        budget_back_to_full(&addr).await;
        stored
    });
    // Nothing lost: every 200 is a file with exactly the bytes sent, and nothing else is there.
    let mut on_disk: Vec<String> = std::fs::read_dir(server.upload_dir.path())
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
        })
        .collect();
    let mut expected = stored;
    on_disk.sort();
    expected.sort();
    assert_eq!(
        on_disk, expected,
        "the stored files are exactly the uploads answered 200"
    );
    wait_for(Duration::from_secs(1), "no OOM kill", || {
        (cgroup.oom_kills() == 0).then_some(())
    });
}
