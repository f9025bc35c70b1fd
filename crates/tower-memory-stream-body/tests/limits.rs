//! The layer behind a real axum/hyper server on 127.0.0.1, driven by real sockets: every path
//! with its status code, and the budget whole again afterwards.
//!
//! (Over 400 lines: every path of the layer with its status code, against one server harness.)

mod common;

use std::time::{Duration, Instant};

use common::*;
use test_support::chunk;
use tokio::io::AsyncWriteExt;
use tower_memory_stream_body::{MemoryBudget, StreamBodyLayer};

const KIB: usize = 1024;

/// A small layer for tests: 1 MiB max, 64 KiB threshold, 16 KiB chunks, its own 1 MiB budget.
fn layer() -> (StreamBodyLayer, MemoryBudget) {
    let budget = MemoryBudget::new(1024 * KIB as u64);
    let layer = StreamBodyLayer::new()
        .max_body_size(1024 * KIB as u64)
        .buffer_threshold(64 * KIB as u64)
        .chunk_size(16 * KIB)
        .memory_budget(budget.clone())
        .budget_wait(Duration::from_millis(200))
        .idle_timeout(Duration::from_millis(500))
        .handler_grace(Duration::from_secs(2));
    (layer, budget)
}

#[tokio::test]
async fn small_known_length_is_buffered_into_one_frame_under_the_budget() {
    let (layer, budget) = layer();
    let addr = serve(app(layer)).await;
    let body = data(40 * KIB);
    let response = post_body(addr, "/inspect", &body).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = response.seen();
    assert_eq!(seen.mode, "Some(Buffered { len: 40960 })");
    assert_eq!(seen.frames, 1);
    assert_eq!(seen.total, body.len() as u64);
    assert_eq!(seen.sha256, sha256_hex(&body));
    assert_eq!(seen.budget_in_use, body.len() as u64);
    assert!(budget_returns(&budget).await);
}

#[tokio::test]
async fn large_known_length_streams_in_bounded_frames() {
    let (layer, budget) = layer();
    let addr = serve(app(layer)).await;
    let body = data(900 * KIB);
    let response = post_body(addr, "/inspect", &body).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = response.seen();
    assert_eq!(
        seen.mode,
        "Some(Streaming { content_length: Some(921600) })"
    );
    assert!(seen.max_frame <= 16 * KIB, "frame of {}", seen.max_frame);
    assert!(seen.frames >= 900 / 16);
    assert_eq!(seen.sha256, sha256_hex(&body));
    // Streaming takes nothing from the budget.
    assert_eq!(seen.budget_in_use, 0);
    assert_eq!(budget.available(), budget.total());
}

#[tokio::test]
async fn unknown_length_under_the_threshold_is_small_after_all() {
    let (layer, budget) = layer();
    let addr = serve(app(layer)).await;
    let body = data(50 * KIB);
    let response = post_chunked(addr, "/inspect", &body, 1000).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = response.seen();
    assert_eq!(seen.mode, "Some(Buffered { len: 51200 })");
    assert_eq!(seen.frames, 1);
    assert_eq!(seen.sha256, sha256_hex(&body));
    assert_eq!(seen.budget_in_use, body.len() as u64);
    assert!(budget_returns(&budget).await);
}

#[tokio::test]
async fn unknown_length_crossing_the_threshold_switches_to_streaming_losing_nothing() {
    let (layer, budget) = layer();
    let addr = serve(app(layer)).await;
    // Odd chunk sizes, so frames straddle the threshold and the chunk size.
    let body = data(700 * KIB + 123);
    let response = post_chunked(addr, "/inspect", &body, 7 * KIB + 5).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let seen = response.seen();
    assert_eq!(seen.mode, "Some(Streaming { content_length: None })");
    assert!(seen.max_frame <= 16 * KIB, "frame of {}", seen.max_frame);
    assert_eq!(seen.total, body.len() as u64);
    assert_eq!(seen.sha256, sha256_hex(&body));
    // The bytes read before the switch were charged to the budget, up to the threshold.
    assert_eq!(seen.budget_in_use, 64 * KIB as u64);
    assert!(budget_returns(&budget).await);
}

#[tokio::test]
async fn content_length_over_the_limit_gets_413_before_any_byte_is_read() {
    let (layer, budget) = layer();
    let addr = serve(app(layer)).await;
    // The body is never sent: the answer comes on the head alone.
    let mut stream = send_head(addr, "/inspect", &[("Content-Length", "1048577")]).await;
    let response = read_response(&mut stream).await.unwrap();
    assert_eq!(response.status, 413);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(response.text().contains("1048576"), "{}", response.text());
    assert!(closed_by_server(&mut stream, Duration::from_secs(2)).await);

    // With `Expect: 100-continue` the client hears 413 instead of 100 and never sends.
    let mut stream = send_head(
        addr,
        "/inspect",
        &[("Content-Length", "5000000"), ("Expect", "100-continue")],
    )
    .await;
    let response = read_response(&mut stream).await.unwrap();
    assert_eq!(response.status, 413);
    assert_eq!(budget.available(), budget.total());
}

#[tokio::test]
async fn chunked_body_over_the_limit_ends_in_413_whatever_the_handler_does() {
    let (layer, budget) = layer();
    let addr = serve(app(layer)).await;
    let body = data(1100 * KIB);
    // `/inspect` answers 500 on the body error, `/ignore-errors` answers 200: the client gets
    // the layer's 413 either way, and the connection closes.
    for path in ["/inspect", "/ignore-errors"] {
        let response = post_chunked(addr, path, &body, 32 * KIB).await;
        assert_eq!(response.status, 413, "{path}: {}", response.text());
        assert_eq!(response.header("connection"), Some("close"), "{path}");
    }
    assert!(budget_returns(&budget).await);
    // The server still serves.
    assert_eq!(post_body(addr, "/inspect", b"fine").await.status, 200);
}

#[tokio::test]
async fn a_handler_that_keeps_working_after_its_body_failed_is_overruled_after_the_grace() {
    let (layer, budget) = layer();
    let layer = layer.handler_grace(Duration::from_millis(300));
    let addr = serve(app(layer)).await;
    // `/swallow-and-sleep` ignores the body error and then works for a minute: the layer drops
    // it once the grace is over and answers.
    let started = Instant::now();
    let response = post_chunked(addr, "/swallow-and-sleep", &data(1100 * KIB), 64 * KIB).await;
    assert_eq!(response.status, 413, "{}", response.text());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(budget_returns(&budget).await);
}

#[tokio::test]
async fn body_shorter_than_its_content_length() {
    let (layer, budget) = layer();
    let addr = serve(app(layer)).await;
    // (declared, sent): buffered by the layer, and streaming to the handler.
    for (declared, sent) in [(40 * KIB, 10 * KIB), (900 * KIB, 100 * KIB)] {
        let len = declared.to_string();
        // The client stops sending and closes its side: the body broke off, 400.
        let mut stream = send_head(addr, "/inspect", &[("Content-Length", &len)]).await;
        stream.write_all(&data(sent)).await.unwrap();
        stream.shutdown().await.unwrap();
        let response = read_response(&mut stream).await.unwrap();
        assert_eq!(response.status, 400, "{declared}: {}", response.text());
        assert_eq!(response.header("connection"), Some("close"));

        // The client stops sending and waits: idle timeout, 408, connection closed.
        let started = Instant::now();
        let mut stream = send_head(addr, "/inspect", &[("Content-Length", &len)]).await;
        stream.write_all(&data(sent)).await.unwrap();
        let response = read_response(&mut stream).await.unwrap();
        assert_eq!(response.status, 408, "{declared}: {}", response.text());
        assert_eq!(response.header("connection"), Some("close"));
        assert!(started.elapsed() >= Duration::from_millis(450));
        assert!(closed_by_server(&mut stream, Duration::from_secs(2)).await);
    }
    assert!(budget_returns(&budget).await);
}

#[tokio::test]
async fn body_longer_than_its_content_length() {
    let (layer, budget) = layer();
    let addr = serve(app(layer)).await;
    // hyper reads exactly Content-Length bytes: the handler gets the declared 100 and answers;
    // the surplus is the start of a "next request" that is not HTTP, which hyper answers with
    // 400 and closes.
    let mut stream = send_head(addr, "/inspect", &[("Content-Length", "100")]).await;
    let body = data(150);
    stream.write_all(&body).await.unwrap();
    let first = read_response(&mut stream).await.unwrap();
    assert_eq!(first.status, 200);
    let seen = first.seen();
    assert_eq!(seen.total, 100);
    assert_eq!(seen.sha256, sha256_hex(&body[..100]));
    let second = read_response(&mut stream).await.unwrap();
    assert_eq!(second.status, 400);
    assert!(closed_by_server(&mut stream, Duration::from_secs(2)).await);
    assert!(budget_returns(&budget).await);
}

#[tokio::test]
async fn unreadable_content_length_is_refused() {
    let (layer, _budget) = layer();
    let addr = serve(app(layer)).await;
    // hyper itself refuses it before the layer sees the request.
    let mut stream = send_head(addr, "/inspect", &[("Content-Length", "12abc")]).await;
    let response = read_response(&mut stream).await.unwrap();
    assert_eq!(response.status, 400);
}

#[tokio::test]
async fn exhausted_budget_gives_503_with_retry_after_and_every_byte_comes_back() {
    let budget = MemoryBudget::new(200 * KIB as u64);
    let layer = StreamBodyLayer::new()
        .buffer_threshold(128 * KIB as u64)
        .memory_budget(budget.clone())
        .budget_wait(Duration::from_millis(1000))
        .retry_after(Duration::from_secs(3))
        .idle_timeout(Duration::from_secs(5));
    let addr = serve(app(layer)).await;
    let body = data(90 * KIB);
    let len = body.len().to_string();

    // Two uploads start: their bytes are reserved before the layer reads them.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = send_head(addr, "/inspect", &[("Content-Length", &len)]).await;
        stream.write_all(&body[..KIB]).await.unwrap();
        held.push(stream);
    }
    assert!(wait_until(|| budget.in_use() == 2 * 90 * KIB as u64).await);

    // A third one does not fit in what is left: after the short wait, 503 with Retry-After.
    let started = Instant::now();
    let mut third = send_head(addr, "/inspect", &[("Content-Length", &len)]).await;
    let response = read_response(&mut third).await.unwrap();
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(response.header("retry-after"), Some("3"));
    assert_eq!(response.header("connection"), Some("close"));
    // The workspace's one format for memory 503s.
    assert_eq!(response.header("content-type"), Some("application/json"));
    let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(json["reason"], "budget_exhausted", "{json}");
    assert_eq!(json["retry_after_seconds"], 3, "{json}");
    assert!(json["error"].as_str().unwrap().contains("budget"), "{json}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(990), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");

    // A fourth waits, and gets in when the first upload finishes within its wait.
    let waiter = tokio::spawn({
        let body = body.clone();
        async move {
            let len = body.len().to_string();
            let mut stream = send_head(addr, "/inspect", &[("Content-Length", &len)]).await;
            stream.write_all(&body).await.unwrap();
            read_response(&mut stream).await.unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    for mut stream in held {
        stream.write_all(&body[KIB..]).await.unwrap();
        let response = read_response(&mut stream).await.unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.seen().sha256, sha256_hex(&body));
    }
    let response = waiter.await.unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(budget_returns(&budget).await);
    // The refused client can come back.
    assert_eq!(post_body(addr, "/inspect", &body).await.status, 200);
}

#[tokio::test]
async fn a_body_larger_than_the_whole_budget_is_refused_at_once() {
    let budget = MemoryBudget::new(100 * KIB as u64);
    let layer = StreamBodyLayer::new()
        .buffer_threshold(512 * KIB as u64)
        .memory_budget(budget.clone())
        .budget_wait(Duration::from_secs(5));
    let addr = serve(app(layer)).await;
    // Known length: refused on the head, without waiting.
    let started = Instant::now();
    let mut stream = send_head(addr, "/inspect", &[("Content-Length", "204800")]).await;
    let response = read_response(&mut stream).await.unwrap();
    assert_eq!(response.status, 413, "{}", response.text());
    assert!(response.text().contains("memory budget"));
    assert!(started.elapsed() < Duration::from_secs(2));
    // Unknown length: refused when what the layer would hold passes the whole budget.
    let response = post_chunked(addr, "/inspect", &data(200 * KIB), 16 * KIB).await;
    assert_eq!(response.status, 413, "{}", response.text());
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(budget_returns(&budget).await);
}

/// Sends `declared` bytes one at a time, `every` apart, until the server answers.
async fn trickle(
    addr: std::net::SocketAddr,
    path: &str,
    declared: usize,
    every: Duration,
) -> (RawResponse, Duration, tokio::net::tcp::OwnedReadHalf) {
    let len = declared.to_string();
    let stream = send_head(addr, path, &[("Content-Length", &len)]).await;
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..declared {
            if write.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(every).await;
        }
    });
    let started = Instant::now();
    let response = read_response(&mut read).await.unwrap();
    writer.abort();
    (response, started.elapsed(), read)
}

#[tokio::test]
async fn one_byte_per_second_bodies_get_408() {
    let budget = MemoryBudget::new(1024 * KIB as u64);
    let layer = StreamBodyLayer::new()
        .buffer_threshold(64 * KIB as u64)
        .memory_budget(budget.clone())
        .idle_timeout(Duration::from_secs(5))
        .min_rate(240, Duration::from_millis(1500));
    let addr = serve(app(layer)).await;
    // Buffered by the layer (100 bytes declared) and streaming to handlers (1 MiB declared),
    // one of which swallows body errors: all 408 after the 1.5 s grace, connection closed.
    let cases = [
        ("/inspect", 100),
        ("/inspect", 1024 * KIB),
        ("/ignore-errors", 1024 * KIB),
    ];
    let runs = cases.map(|(path, declared)| {
        tokio::spawn(async move {
            let (response, took, mut read) =
                trickle(addr, path, declared, Duration::from_secs(1)).await;
            let mut buf = [0u8; 16];
            let closed = matches!(
                tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio::io::AsyncReadExt::read(&mut read, &mut buf)
                )
                .await,
                Ok(Ok(0)) | Ok(Err(_))
            );
            (path, declared, response, took, closed)
        })
    });
    for run in runs {
        let (path, declared, response, took, closed) = run.await.unwrap();
        assert_eq!(
            response.status,
            408,
            "{path} {declared}: {}",
            response.text()
        );
        assert_eq!(response.header("connection"), Some("close"));
        assert!(response.text().contains("240"), "{}", response.text());
        assert!(
            took >= Duration::from_millis(1400),
            "{path} {declared}: {took:?}"
        );
        assert!(took < Duration::from_secs(4), "{path} {declared}: {took:?}");
        assert!(closed, "{path} {declared}: connection left open");
    }
    assert!(budget_returns(&budget).await);
}

#[tokio::test]
async fn idle_body_of_unknown_length_gets_408() {
    let (layer, budget) = layer();
    let addr = serve(app(layer)).await;
    let mut stream = send_head(addr, "/inspect", &[("Transfer-Encoding", "chunked")]).await;
    stream.write_all(&chunk(&data(10 * KIB))).await.unwrap();
    let started = Instant::now();
    let response = read_response(&mut stream).await.unwrap();
    assert_eq!(response.status, 408);
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert!(closed_by_server(&mut stream, Duration::from_secs(2)).await);
    assert!(budget_returns(&budget).await);
}

#[tokio::test]
async fn client_disconnect_mid_upload_returns_the_budget() {
    let (layer, budget) = layer();
    let addr = serve(app(layer)).await;
    for path in ["/inspect", "/hang"] {
        // Buffering in the layer: half the body, then the client is gone.
        let mut stream = send_head(addr, path, &[("Content-Length", "60000")]).await;
        stream.write_all(&data(30_000)).await.unwrap();
        assert!(wait_until(|| budget.in_use() == 60_000).await);
        drop(stream);
        assert!(budget_returns(&budget).await, "{path}: budget not returned");
    }
    // Unknown length, frames read and charged before the client vanishes.
    let mut stream = send_head(addr, "/inspect", &[("Transfer-Encoding", "chunked")]).await;
    stream.write_all(&chunk(&data(20_000))).await.unwrap();
    assert!(wait_until(|| budget.in_use() >= 20_000).await);
    drop(stream);
    assert!(budget_returns(&budget).await);
    assert_eq!(
        post_body(addr, "/inspect", b"still serving").await.status,
        200
    );
}

#[tokio::test]
async fn a_panicking_handler_returns_the_budget() {
    let (layer, budget) = layer();
    let addr = serve(app(layer)).await;
    for _ in 0..3 {
        let body = data(50 * KIB);
        let len = body.len().to_string();
        let mut stream = send_head(addr, "/panic", &[("Content-Length", &len)]).await;
        stream.write_all(&body).await.unwrap();
        // No response: the connection task unwound.
        assert!(read_response(&mut stream).await.is_err());
        assert!(budget_returns(&budget).await);
    }
    assert_eq!(
        post_body(addr, "/inspect", b"still serving").await.status,
        200
    );
}

#[tokio::test]
async fn a_hanging_handler_holds_its_budget_until_the_client_leaves() {
    let (layer, budget) = layer();
    let addr = serve(app(layer)).await;
    let body = data(50 * KIB);
    let len = body.len().to_string();
    let mut stream = send_head(addr, "/hang", &[("Content-Length", &len)]).await;
    stream.write_all(&body).await.unwrap();
    assert!(wait_until(|| budget.in_use() == body.len() as u64).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(budget.in_use(), body.len() as u64);
    // hyper notices the closed connection and drops the handler's future with the reservation.
    drop(stream);
    assert!(budget_returns(&budget).await);
}
