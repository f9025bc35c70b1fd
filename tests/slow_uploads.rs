//! Load: 2,000 concurrent slow uploads held open against the example server. Each announces
//! 16 KiB (a buffered body, reserved from the budget at once) and sends it at 2 KiB/s, so all
//! 2,000 are open together for about 8 s. Meanwhile a second client on a runtime of its own
//! probes `/api/health/live` every 10 ms. Asserted: every upload is stored whole, the server's
//! peak RSS stays within what the budget held plus a stated overhead per connection, the
//! liveness p99 is under 50 ms, and afterwards everything is back to idle (budget full, no
//! temporary file, RSS near where it started).

mod support;

use std::time::{Duration, Instant};

use support::Server;
use support::health::{budget_back_to_full, health};
use support::invariants::{MIB, files};
use support::load::{Steady, quantile};
use support::raw::{Raw, head};
use test_support::wait_for_async;

const UPLOADS: usize = 2000;
const BODY: usize = 16 << 10;
const PIECE: usize = 2 << 10;
/// The stated overhead per open upload beyond its budgeted body: connection, buffers, tasks and
/// every layer's state.
const PER_CONNECTION: u64 = 64 << 10;

/// Lets this process (and the server it starts) hold 2,000 sockets each.
fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(rc, 0);
    let want = (4 * UPLOADS as libc::rlim_t + 1024).min(limit.rlim_max);
    if limit.rlim_cur < want {
        limit.rlim_cur = want;
        // SAFETY: as above; raising the soft limit up to the hard one needs no privilege.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    }
    assert!(
        limit.rlim_cur >= 2 * UPLOADS as libc::rlim_t + 256,
        "RLIMIT_NOFILE {} is too low for {UPLOADS} connections",
        limit.rlim_cur
    );
}

fn body(i: usize) -> Vec<u8> {
    (0..BODY).map(|j| (j ^ (i * 13)) as u8).collect()
}

#[test]
fn two_thousand_slow_uploads_are_held_within_budget() {
    raise_open_files();
    let server = Server::start(
        "server",
        &[
            ("MEMORY_REQUEST_BUDGET", "134217728"),
            // Freed memory goes back to the OS within about a second: "back to idle" is visible.
            ("MEMORY_ALLOCATOR_PROFILE", "memory-first"),
        ],
    );
    let addr = server.addr.clone();
    let pid = server.pid();
    let rss = move || tower_memory_probe::process_memory_of(pid).unwrap();
    let runtime = test_support::runtime();
    runtime.block_on(async {
        // A running service has learned its routes: a few uploads first.
        for i in 0..10 {
            let mut c = Raw::connect(&addr).await;
            let mut request = head("POST", "/api/uploads", &[&format!("Content-Length: {BODY}")]);
            request.extend(body(1_000_000 + i));
            assert_eq!(c.exchange(&request, Duration::from_secs(10)).await.unwrap().status, 200);
        }
        let before_files = files(server.upload_dir.path()).len();
        budget_back_to_full(&addr).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = rss().rss_bytes;
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");

        // The probe client: its own thread and runtime, so the uploads' tasks cannot delay it.
        let probe_addr = addr.clone();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let probe = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let steady = Steady::start(&probe_addr, &["/api/health/live"], Duration::from_millis(10));
                tokio::task::spawn_blocking(move || stop_rx.recv()).await.unwrap().unwrap();
                steady.finish().await
            })
        });

        let started = Instant::now();
        let mut tasks = Vec::with_capacity(UPLOADS);
        for i in 0..UPLOADS {
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                let data = body(i);
                let mut c = Raw::connect(&addr).await;
                c.send(&head("POST", "/api/uploads", &[&format!("Content-Length: {BODY}")]))
                    .await
                    .unwrap();
                c.send_paced(&data, PIECE, Duration::from_secs(1)).await.unwrap();
                let r = c.response(Duration::from_secs(30)).await.expect("an answer");
                (r.status, r.text())
            }));
            // Batches of 100 every 50 ms: the listen backlog is 1,024.
            if i % 100 == 99 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        // All open at once: sample while they are.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let during = health(&addr).await;
        let held_rss = rss().rss_bytes;
        let charged = during["budget"]["charged_bytes"].as_u64().unwrap();

        let mut ok = 0;
        for t in tasks {
            let (status, text) = t.await.unwrap();
            assert_eq!(status, 200, "{text}");
            ok += 1;
        }
        let held_for = started.elapsed();
        let peak = rss().peak_rss_bytes;
        stop_tx.send(()).unwrap();
        let probes = tokio::task::spawn_blocking(move || probe.join().unwrap())
            .await
            .unwrap();
        let (_, latencies, failed) = &probes[0];
        let p99 = quantile(latencies, 0.99);

        let growth = peak.saturating_sub(idle);
        let per_connection = held_rss.saturating_sub(idle).saturating_sub(charged) / UPLOADS as u64;
        println!(
            "{ok} of {UPLOADS} slow uploads stored in {held_for:?}; budget charged {} MiB while open; \
             RSS idle {} MiB, while open {} MiB, peak {} MiB (+{} MiB); about {} KiB per connection \
             beyond its body; /api/health/live p50 {:?} p99 {p99:?} over {} probes",
            charged >> 20,
            idle >> 20,
            held_rss >> 20,
            peak >> 20,
            growth >> 20,
            per_connection >> 10,
            quantile(latencies, 0.5),
            latencies.len()
        );
        assert!(failed.is_empty(), "liveness failed during the load: {failed:?}");
        assert!(latencies.len() > 100, "the probe ran: {}", latencies.len());
        assert!(p99 < Duration::from_millis(50), "liveness p99 {p99:?}");
        assert!(
            charged >= (UPLOADS * BODY / 2) as u64,
            "the bodies were held under the budget: {charged}"
        );
        let bound = (UPLOADS * BODY) as u64 + UPLOADS as u64 * PER_CONNECTION;
        assert!(
            growth < bound,
            "peak RSS grew by {growth} bytes, over the bodies plus {} KiB per connection ({bound})",
            PER_CONNECTION >> 10
        );

        // Back to idle.
        budget_back_to_full(&addr).await;
        let dir = server.upload_dir.path().to_owned();
        let stored = files(&dir);
        assert!(stored.iter().all(|f| f.starts_with("upload-")), "temporary files left");
        assert_eq!(stored.len(), before_files + UPLOADS);
        // Most of it given back: at least three quarters of the growth (jemalloc's default decay
        // keeps a little of the rest for a while; 16 MiB absolute was measured at 15).
        let back = idle + (growth / 4).max(16 * MIB);
        let settled = wait_for_async(Duration::from_secs(15), "RSS back near idle", || async {
            let now = rss().rss_bytes;
            (now < back).then_some(now)
        })
        .await;
        println!("RSS back to {} MiB (idle {} MiB)", settled >> 20, idle >> 20);
    });
}
