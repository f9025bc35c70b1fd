//! Slow clients: a body at 1 byte per second, an idle connection holding a budget reservation,
//! request heads that never end, and clients that never read a large response (memory per such
//! connection measured and bounded, and freed by the write timeout).

use std::time::{Duration, Instant};

use crate::support::health::health;
use crate::support::invariants::{MIB, Watch};
use crate::support::raw::{Raw, head};
use crate::{matrix_server, run};

#[test]
fn slow_bodies() {
    let server = matrix_server(&[]);
    let watch = Watch::of(&server);
    let addr = server.addr.clone();
    run(Duration::from_secs(120), async {
        // Under the minimum rate (240 B/s) once the 5 s grace has passed: 408.
        let case = watch.case("body at 1 byte/s", 4 * MIB);
        let Raw {
            mut reader,
            mut writer,
        } = Raw::connect(&addr).await;
        let started = Instant::now();
        let trickle = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = writer
                .write_all(&head("POST", "/api/uploads", &["Content-Length: 1000"]))
                .await;
            for _ in 0..30 {
                if writer.write_all(b"x").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let r = reader
            .response(Duration::from_secs(20))
            .await
            .expect("a response");
        let took = started.elapsed();
        trickle.abort();
        assert_eq!(r.status, 408, "{}", r.text());
        assert!(
            (Duration::from_secs(4)..Duration::from_secs(12)).contains(&took),
            "408 after {took:?}"
        );
        case.finish(format!("408 after {:.1} s", took.as_secs_f64()), 0)
            .await;

        // 2 MiB announced (buffered, so reserved at once) and nothing sent.
        let case = watch.case("idle connection holding a budget reservation", 4 * MIB);
        let mut c = Raw::connect(&addr).await;
        let started = Instant::now();
        c.send(&head("POST", "/api/uploads", &["Content-Length: 2097152"]))
            .await
            .unwrap();
        let held = test_support::wait_for_async(
            Duration::from_secs(3),
            "the reservation shows",
            || async {
                let charged = health(&addr).await["budget"]["charged_bytes"]
                    .as_u64()
                    .unwrap();
                (charged >= 2 * MIB).then_some(charged)
            },
        )
        .await;
        let r = c
            .response(Duration::from_secs(20))
            .await
            .expect("a response");
        let took = started.elapsed();
        assert_eq!(r.status, 408, "{}", r.text());
        assert!(took < Duration::from_secs(12), "408 after {took:?}");
        case.finish(
            format!(
                "408 after {:.1} s, {} MiB held until then",
                took.as_secs_f64(),
                held >> 20
            ),
            0,
        )
        .await;
    });
}

/// Live bytes in the server's allocator (jemalloc's `allocated`), from a fresh sample.
async fn allocated(addr: &str) -> u64 {
    // The server samples every 100 ms: wait for a sample taken after now.
    tokio::time::sleep(Duration::from_millis(250)).await;
    health(addr).await["allocator"]["allocated_bytes"]
        .as_u64()
        .expect("allocator.allocated_bytes")
}

#[test]
fn request_heads_that_never_end() {
    const CONNECTIONS: u64 = 200;
    let server = matrix_server(&[
        ("MEMORY_CHECK_INTERVAL", "100"),
        ("HEADER_READ_TIMEOUT_MS", "2000"),
    ]);
    let watch = Watch::of(&server);
    let addr = server.addr.clone();
    run(Duration::from_secs(60), async {
        // Each sends 48 KiB of header lines (under the 64 KiB cap) and never the blank line.
        let case = watch.case("request heads that never end (200 connections)", 32 * MIB);
        let before = allocated(&addr).await;
        let line = format!("X-Pad: {}\r\n", "p".repeat(1000));
        let mut partial = b"GET /api/hello HTTP/1.1\r\nHost: x\r\n".to_vec();
        for _ in 0..48 {
            partial.extend_from_slice(line.as_bytes());
        }
        let started = Instant::now();
        let mut clients = Vec::new();
        for _ in 0..CONNECTIONS {
            let mut c = Raw::connect(&addr).await;
            c.send(&partial).await.unwrap();
            clients.push(c);
        }
        let held = allocated(&addr).await.saturating_sub(before) / CONNECTIONS;
        // The header read timeout (2 s here, 30 s by default) closes every one of them.
        for c in &mut clients {
            let left = Duration::from_secs(8).saturating_sub(started.elapsed());
            assert!(
                c.reader.closed(left).await,
                "a head that never ends is cut off"
            );
        }
        let closed_after = started.elapsed();
        let after =
            test_support::wait_for_async(Duration::from_secs(5), "their memory freed", || async {
                let now = allocated(&addr).await;
                (now < before + MIB).then_some(now)
            })
            .await;
        assert!(held < 128 << 10, "{held} bytes per unfinished head");
        case.finish(
            format!(
                "closed after {:.1} s; {} KiB live per connection until then, {} KiB after",
                closed_after.as_secs_f64(),
                held >> 10,
                after.saturating_sub(before) >> 10
            ),
            0,
        )
        .await;
    });
}

#[test]
fn clients_that_never_read() {
    const CONNECTIONS: u64 = 8;
    let server = matrix_server(&[
        ("MEMORY_CHECK_INTERVAL", "100"),
        ("WRITE_TIMEOUT_MS", "3000"),
    ]);
    let watch = Watch::of(&server);
    let addr = server.addr.clone();
    run(Duration::from_secs(120), async {
        // What one connection can hold at most: its one response, (compressed) in one frame.
        // The kernel's socket buffers take what they can of it; the rest waits in the server.
        let documents = crate::support::load::send(
            &addr,
            "GET",
            "/api/documents?count=20000",
            None,
            Duration::from_secs(30),
        )
        .await
        .unwrap()
        .body
        .len() as u64;
        for (name, path, encoding, bound) in [
            // About 5 MiB of JSON, gzip-compressed in one shot to about 0.6 MiB.
            (
                "large compressed response never read",
                "/api/documents?count=20000",
                "gzip",
                MIB,
            ),
            // The same uncompressed: the String the handler built, capacity and all.
            (
                "large uncompressed response never read",
                "/api/documents?count=20000",
                "identity",
                2 * documents,
            ),
            // A compressed event stream produced as fast as it is taken: the codec's state and
            // what hyper buffers before it stops polling.
            (
                "compressed event stream never read",
                "/api/events?count=10000&interval_ms=0",
                "gzip",
                512 << 10,
            ),
        ] {
            let case = watch.case(name, 96 * MIB);
            let before = allocated(&addr).await;
            let mut clients = Vec::new();
            for _ in 0..CONNECTIONS {
                let mut c = Raw::connect(&addr).await;
                c.send(&head(
                    "GET",
                    path,
                    &[&format!("Accept-Encoding: {encoding}")],
                ))
                .await
                .unwrap();
                clients.push(c);
            }
            // Let the server write until the sockets are full and it waits.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let held = allocated(&addr).await.saturating_sub(before);
            let per_connection = held / CONNECTIONS;
            assert!(
                per_connection < bound,
                "{name}: {per_connection} bytes held per connection (bound {bound})"
            );
            assert_eq!(crate::support::health::live(&addr).await, 200);
            // The clients stay and still read nothing: the write timeout (3 s here, 60 s by
            // default) closes their connections and frees what the responses held.
            // Freed: back within half of what was held (allocator caches keep a little).
            let slack = (held / 2).max(MIB);
            let freed = test_support::wait_for_async(
                Duration::from_secs(10),
                "the write timeout frees the responses",
                || async {
                    let now = allocated(&addr).await;
                    (now < before + slack).then_some(now)
                },
            )
            .await;
            drop(clients);
            case.finish(
                format!(
                    "{} KiB live per unread connection (bound {} KiB), {} KiB after the write timeout",
                    per_connection >> 10,
                    bound >> 10,
                    freed.saturating_sub(before) >> 10
                ),
                0,
            )
            .await;
        }
    });
}
