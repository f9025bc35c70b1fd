//! Decompression bombs against a server in a separate process (this test binary, re-executed),
//! whose peak RSS is read from `/proc/<pid>/status`: each bomb is answered 413, the peak grows
//! by less than twice the cap, and the server keeps serving.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use test_support::{bounded, exit_when_stdin_closes, json_doc, runtime, spawn_test_child};
use tower::ServiceBuilder;
use tower_memory_compression::{Encoding, RequestDecompressionLayer, compress_to_vec};

const CHILD_ENV: &str = "COMPRESSION_LAYER_BOMB_SERVER";
const CAP: u64 = 64 << 20;

/// The server half, run in a child process by `bombs_are_refused_with_bounded_memory`.
#[test]
#[ignore = "server process of bombs_are_refused_with_bounded_memory (runs only in the child)"]
fn bomb_server_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    // Exit when the parent closes our stdin (or dies).
    exit_when_stdin_closes();
    let runtime = runtime();
    runtime.block_on(async {
        let epoch = Instant::now();
        let calls = Calls::default();
        let (c1, c2) = (calls.clone(), calls.clone());
        // Default caps (64 MiB, 100:1 past 1 MiB).
        let default = serve(
            ServiceBuilder::new()
                .layer(RequestDecompressionLayer::new())
                .service_fn(move |r| handler(r, c1.clone(), epoch)),
        )
        .await;
        // Ratio check off: only the 64 MiB cap stops a bomb (the worst case for memory).
        let no_ratio = serve(
            ServiceBuilder::new()
                .layer(RequestDecompressionLayer::new().max_ratio(0))
                .service_fn(move |r| handler(r, c2.clone(), epoch)),
        )
        .await;
        println!("\nPORTS {} {}", default.addr.port(), no_ratio.addr.port());
        std::io::stdout().flush().unwrap();
        // Serve until the parent closes stdin (bounded by the parent's lifetime).
        std::future::pending::<()>().await;
    });
}

fn bombs() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let zeros = vec![0u8; (CAP + (16 << 20)) as usize];
    let gzip = compress_to_vec(Encoding::Gzip, &zeros);
    let gzip_in_gzip = compress_to_vec(Encoding::Gzip, &gzip);
    let huge_window = vec![
        0x28,
        0xB5,
        0x2F,
        0xFD,           // magic
        0x00,           // no single segment, no checksum, no content size
        (27 - 10) << 3, // window descriptor: 2^27 = 128 MiB
        0x00,
        0x00,
        0x00, // raw block, size 0, not last
        0x01,
        0x00,
        0x00, // last raw block, size 0
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00, // padding to 18 bytes
    ];
    vec![
        ("gzip", "gzip", gzip),
        (
            "deflate",
            "deflate",
            compress_to_vec(Encoding::Deflate, &zeros),
        ),
        ("br", "br", compress_to_vec(Encoding::Brotli, &zeros)),
        ("zstd", "zstd", compress_to_vec(Encoding::Zstd, &zeros)),
        ("zstd huge window", "zstd", huge_window),
        ("gzip-in-gzip", "gzip, gzip", gzip_in_gzip),
    ]
}

#[test]
fn bombs_are_refused_with_bounded_memory() {
    // libtest prints "test bomb_server_child ... " on the same line first.
    let mut child = spawn_test_child(
        "bomb_server_child",
        CHILD_ENV,
        Stdio::inherit(),
        Duration::from_secs(60),
        |line| Some(line.split_once("PORTS ")?.1.to_string()),
    );
    let pid = child.pid();
    let ports: Vec<u16> = child
        .addr()
        .split(' ')
        .map(|p| p.parse().unwrap())
        .collect();

    let bombs = bombs();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bounded("bombs_are_refused_with_bounded_memory", 120, async {
        let peak = || tower_memory_probe::process_memory_of(pid).unwrap();
        let doc = json_doc(100_000);
        let normal = compress_to_vec(Encoding::Gzip, &doc);
        for (server, port) in ["default caps", "ratio off"].into_iter().zip(ports) {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            // Warm up: the first requests allocate runtime and connection state.
            for _ in 0..3 {
                let raw = request(addr, "POST", "/echo", &[("content-encoding", "gzip")], Bytes::from(normal.clone())).await;
                assert_eq!(raw.status, 200);
            }
            for (name, coding, body) in &bombs {
                // Per bomb: reset the peak to the current RSS (`clear_refs` 5), so that memory the
                // allocator kept from an earlier bomb (glibc keeps freed pages in per-thread
                // arenas) is not counted twice. Where that is refused, the peak since the start
                // of this server's run is compared instead (stricter).
                let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
                let before = peak();
                if !reset {
                    eprintln!("clear_refs refused: comparing peaks since the start");
                }
                let started = Instant::now();
                let raw = request(
                    addr,
                    "POST",
                    "/echo",
                    &[("content-encoding", coding)],
                    Bytes::from(body.clone()),
                )
                .await;
                let after = peak();
                eprintln!(
                    "{server}: {name} ({} bytes) -> {} in {:?}: {}; peak RSS {} -> {} MiB (+{} MiB)",
                    body.len(),
                    raw.status,
                    started.elapsed(),
                    String::from_utf8_lossy(&raw.body()).trim(),
                    before.peak_rss_bytes >> 20,
                    after.peak_rss_bytes >> 20,
                    (after.peak_rss_bytes.saturating_sub(before.rss_bytes)) >> 20,
                );
                assert_eq!(raw.status, 413, "{server}: {name}");
                assert!(
                    after.peak_rss_bytes.saturating_sub(before.rss_bytes) < 2 * CAP,
                    "{server}: {name}: peak RSS grew from {} to {} bytes (cap {CAP})",
                    before.rss_bytes,
                    after.peak_rss_bytes
                );
                // Still serving.
                let raw = request(addr, "POST", "/echo", &[("content-encoding", "gzip")], Bytes::from(normal.clone())).await;
                assert_eq!(raw.status, 200, "{server}: after {name}");
                assert_eq!(raw.body(), echo_answer(&doc).as_bytes());
            }
        }
    }));
    drop(child.child_mut().stdin.take());
}
