//! Accuracy of the per-request figures, through a real axum server on 127.0.0.1 and a real hyper
//! client, on a multi-threaded runtime.
//!
//! (Over 400 lines: the accuracy cases share one server and one set of measured handlers.)

mod common;

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::MatchedPath;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use common::*;
use test_support::bounded;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Barrier;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_memory_interceptor::{MemoryInterceptorLayer, Outcome, RequestMemory};

fn layer(reports: &Reports) -> MemoryInterceptorLayer {
    MemoryInterceptorLayer::new().on_report(reports.sink())
}

/// Allocates exactly `size` bytes and keeps them until the response is built.
async fn alloc(uri: Uri) -> String {
    let size = size_param(uri.query());
    let block = vec![1u8; size];
    black_box(&block);
    format!("{}", block.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn allocated_matches_known_sizes() {
    let reports = Reports::default();
    let router = Router::new()
        .route("/alloc", get(alloc))
        .layer(layer(&reports));
    let (addr, _server) = serve_axum(router).await;
    let client = client();

    let sizes = [
        KIB,
        4 * KIB,
        64 * KIB,
        256 * KIB,
        MIB,
        8 * MIB,
        32 * MIB,
        64 * MIB,
    ];
    for n in sizes {
        let path = format!("/alloc?size={n}");
        let (head, body) = bounded("request", 30, fetch(&client, addr, &path)).await;
        assert_eq!(head.status(), 200);
        assert_eq!(body, n.to_string());
        let report = bounded(
            "report",
            10,
            reports.wait_for(&path, 1, Duration::from_secs(10)),
        )
        .await
        .remove(0);
        assert_within(report.allocated, n, &path);
        assert_eq!(report.route, "/alloc");
        assert_eq!(report.status, Some(http::StatusCode::OK));
        assert_eq!(report.outcome, Outcome::Completed);
        assert!(report.polls >= 2, "future and body polled: {report:?}");
        // The block was freed inside the handler: nothing of it is held at the end.
        assert!(report.deallocated >= n, "{report:?}");
        assert!(report.net.unsigned_abs() < 64 * KIB, "{report:?}");
        assert!(report.peak_net >= 0);
    }
    assert_eq!(reports.all().len(), sizes.len(), "exactly one report each");
}

/// Allocates `size` in four steps separated by awaits (yields, a timer, and a barrier that holds
/// every request in flight at once), keeping every step alive to the end.
async fn steps(barrier: Arc<Barrier>, uri: Uri) -> String {
    let size = size_param(uri.query());
    let part = size / 4;
    let mut held: Vec<Vec<u8>> = Vec::with_capacity(4);
    held.push(vec![1u8; part]);
    tokio::task::yield_now().await;
    held.push(vec![2u8; part]);
    barrier.wait().await;
    held.push(vec![3u8; part]);
    tokio::time::sleep(Duration::from_millis(2)).await;
    held.push(vec![4u8; size - 3 * part]);
    tokio::task::yield_now().await;
    black_box(&held);
    format!("{}", held.iter().map(Vec::len).sum::<usize>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_each_get_their_own_figure() {
    const REQUESTS: u64 = 64;
    let reports = Reports::default();
    let barrier = Arc::new(Barrier::new(REQUESTS as usize));
    let router = Router::new()
        .route(
            "/steps",
            get({
                let barrier = Arc::clone(&barrier);
                move |uri: Uri| steps(Arc::clone(&barrier), uri)
            }),
        )
        .layer(layer(&reports));
    let (addr, _server) = serve_axum(router).await;
    let client = client();

    let size_of = |i: u64| 128 * KIB + i * 61 * KIB + i * 7;
    let mut tasks = Vec::new();
    for i in 0..REQUESTS {
        let client = client.clone();
        let n = size_of(i);
        tasks.push(tokio::spawn(async move {
            let (head, body) = fetch(&client, addr, &format!("/steps?size={n}&i={i}")).await;
            assert_eq!(head.status(), 200);
            assert_eq!(body, n.to_string());
        }));
    }
    bounded("64 concurrent requests", 60, async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await;

    let all = bounded(
        "reports",
        10,
        reports.wait_for("/steps", REQUESTS as usize, Duration::from_secs(10)),
    )
    .await;
    assert_eq!(all.len(), REQUESTS as usize);
    for i in 0..REQUESTS {
        let tag = format!("&i={i}");
        let mine: Vec<_> = all
            .iter()
            .filter(|r| r.path_and_query.as_str().ends_with(&tag))
            .collect();
        assert_eq!(mine.len(), 1, "one report for request {i}");
        let report = mine[0];
        assert_within(report.allocated, size_of(i), report.path_and_query.as_str());
        assert!(report.polls >= 5, "{report:?}");
        assert!(report.duration >= Duration::from_millis(2), "{report:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_while_the_body_streams_are_counted() {
    const CHUNK: usize = 256 * 1024;
    const CHUNKS: u32 = 16;
    let reports = Reports::default();
    let router = Router::new()
        .route(
            "/stream",
            get(|| async {
                // Each chunk is allocated while the server polls the body, not in the handler.
                let stream = futures_util::stream::unfold(0u32, |i| async move {
                    if i == CHUNKS {
                        return None;
                    }
                    tokio::task::yield_now().await;
                    let chunk = Bytes::from(vec![i as u8; CHUNK]);
                    Some((Ok::<_, Infallible>(chunk), i + 1))
                });
                Body::from_stream(stream)
            }),
        )
        .layer(layer(&reports));
    let (addr, _server) = serve_axum(router).await;

    let (head, body) = bounded("stream", 30, fetch(&client(), addr, "/stream")).await;
    assert_eq!(head.status(), 200);
    let total = CHUNK as u64 * u64::from(CHUNKS);
    assert_eq!(body.len() as u64, total);

    let report = bounded(
        "report",
        10,
        reports.wait_for("/stream", 1, Duration::from_secs(10)),
    )
    .await
    .remove(0);
    assert_within(report.allocated, total, "streamed body");
    assert_eq!(report.body_bytes, total);
    assert_eq!(report.outcome, Outcome::Completed);
    assert!(report.polls > u64::from(CHUNKS), "{report:?}");
    // The chunks went to the server, which frees them: the request holds nothing at its end.
    assert!(report.handed_off >= total - 64 * KIB, "{report:?}");
    assert!(report.net.unsigned_abs() < 64 * KIB, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_body_still_yields_one_report() {
    const CHUNK: usize = 16 * 1024;
    const CHUNKS: u32 = 2_000;
    let reports = Reports::default();
    let router = Router::new()
        .route(
            "/slow",
            get(|| async {
                let stream = futures_util::stream::unfold(0u32, |i| async move {
                    if i == CHUNKS {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    Some((Ok::<_, Infallible>(Bytes::from(vec![7u8; CHUNK])), i + 1))
                });
                Body::from_stream(stream)
            }),
        )
        .layer(layer(&reports));
    let (addr, _server) = serve_axum(router).await;

    bounded("partial read", 20, async {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket
            .write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut read = 0;
        while read < 128 * 1024 {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "server closed early");
            read += n;
        }
        // Dropping the socket with unread data resets the connection.
    })
    .await;

    let found = bounded(
        "report",
        20,
        reports.wait_for("/slow", 1, Duration::from_secs(20)),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reports.matching("/slow").len(), 1, "exactly one report");
    let report = &found[0];
    assert_eq!(report.outcome, Outcome::BodyDropped, "{report:?}");
    assert!(report.body_bytes >= 64 * KIB, "{report:?}");
    assert!(
        report.body_bytes < CHUNK as u64 * u64::from(CHUNKS),
        "{report:?}"
    );
    assert!(report.allocated >= report.body_bytes, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_under_catch_panic_yields_one_report() {
    async fn boom() -> &'static str {
        let block = vec![1u8; 3 << 20];
        black_box(&block);
        panic!("handler panicked on purpose");
    }
    for catch_outside in [false, true] {
        let reports = Reports::default();
        let stack = if catch_outside {
            // The panic unwinds through the layer's poll; the layer sees its future dropped.
            Router::new().route("/panic", get(boom)).layer(
                ServiceBuilder::new()
                    .layer(CatchPanicLayer::new())
                    .layer(layer(&reports)),
            )
        } else {
            // The panic is caught inside: the layer sees an ordinary 500.
            Router::new().route("/panic", get(boom)).layer(
                ServiceBuilder::new()
                    .layer(layer(&reports))
                    .layer(CatchPanicLayer::new()),
            )
        };
        let (addr, _server) = serve_axum(stack).await;
        let client = client();
        assert_eq!(get_status(&client, addr, "/panic").await, 500);
        let found = bounded(
            "report",
            10,
            reports.wait_for("/panic", 1, Duration::from_secs(10)),
        )
        .await;
        // The server keeps serving; one more request, one more report.
        assert_eq!(get_status(&client, addr, "/panic").await, 500);
        let second = bounded(
            "report",
            10,
            reports.wait_for("/panic", 2, Duration::from_secs(10)),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            reports.matching("/panic").len(),
            2,
            "one report per request"
        );
        for report in [&found[0], &second[1]] {
            // At least the block; the panic itself allocates too (message, hook, backtrace when
            // RUST_BACKTRACE is set), on the request's thread within its poll, and is charged.
            assert!(report.allocated >= 3 * MIB, "{report:?}");
            if catch_outside {
                assert_eq!(report.outcome, Outcome::Panicked, "{report:?}");
                assert_eq!(report.status, None);
            } else {
                assert_eq!(report.outcome, Outcome::Completed, "{report:?}");
                assert_eq!(report.status, Some(http::StatusCode::INTERNAL_SERVER_ERROR));
            }
            assert_eq!(report.route, "/panic");
            // Unwinding freed the block, and the layer charged that to the request.
            assert!(report.deallocated >= 3 * MIB, "{report:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instrument_charges_spawned_work() {
    const WORK: u64 = 8 * MIB;
    async fn spawner(memory: RequestMemory, uri: Uri) -> String {
        let work = async {
            let block = vec![1u8; WORK as usize];
            tokio::task::yield_now().await;
            black_box(&block).len()
        };
        let n = match uri.query() {
            Some("how=instrument") => tokio::spawn(memory.instrument(work)).await.unwrap(),
            // Awaited in place: already measured by the request's own poll, not counted twice.
            Some("how=inline") => memory.instrument(work).await,
            Some("how=blocking") => tokio::task::spawn_blocking(memory.instrument_fn(|| {
                let block = vec![1u8; WORK as usize];
                black_box(&block).len()
            }))
            .await
            .unwrap(),
            _ => tokio::spawn(work).await.unwrap(),
        };
        n.to_string()
    }
    let reports = Reports::default();
    let router = Router::new()
        .route("/spawn", get(spawner))
        .layer(layer(&reports));
    let (addr, _server) = serve_axum(router).await;
    let client = client();

    for how in ["instrument", "inline", "blocking", "plain"] {
        let path = format!("/spawn?how={how}");
        let (head, body) = fetch(&client, addr, &path).await;
        assert_eq!(head.status(), 200);
        assert_eq!(body, WORK.to_string());
        let report = bounded(
            "report",
            10,
            reports.wait_for(&path, 1, Duration::from_secs(10)),
        )
        .await
        .remove(0);
        if how == "plain" {
            // Without instrument(), another task's allocations are not the request's.
            assert!(report.allocated < 256 * KIB, "{report:?}");
        } else {
            assert_within(report.allocated, WORK, &path);
            assert!(report.deallocated >= WORK, "{report:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_memory_is_live_inside_the_handler() {
    async fn live(memory: RequestMemory, matched: MatchedPath) -> Response {
        let before = memory.allocated();
        let net_before = memory.net();
        let block = vec![1u8; 2 << 20];
        black_box(&block);
        let during = memory.allocated() - before;
        let held = memory.net() - net_before;
        drop(block);
        let freed = memory.net() - net_before;
        format!("{during} {held} {freed} {}", matched.as_str()).into_response()
    }
    let reports = Reports::default();
    let router = Router::new()
        .route("/live", get(live))
        .layer(layer(&reports));
    let (addr, _server) = serve_axum(router).await;
    let (head, body) = fetch(&client(), addr, "/live").await;
    assert_eq!(head.status(), 200);
    let text = String::from_utf8(body.to_vec()).unwrap();
    let fields: Vec<&str> = text.split(' ').collect();
    let during: u64 = fields[0].parse().unwrap();
    let held: i64 = fields[1].parse().unwrap();
    let freed: i64 = fields[2].parse().unwrap();
    assert_within(during, 2 * MIB, "live allocated()");
    assert!(held >= 2 << 20, "net() while holding: {held}");
    assert!(
        freed.unsigned_abs() < 64 * KIB,
        "net() after freeing: {freed}"
    );
    assert_eq!(fields[3], "/live");
}
