//! The per-request quota and the largest-first aborts under critical pressure.
//!
//! (Over 400 lines: the quota and pressure-abort cases share one server and the re-run-as-child
//! harness.)

mod common;

use std::convert::Infallible;
use std::hint::black_box;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Uri;
use axum::routing::get;
use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use test_support::{bounded, exit_when_stdin_closes, runtime, spawn_test_child};
use tower::{ServiceBuilder, ServiceExt};
use tower_memory_interceptor::{
    AbortError, AbortReason, MemoryInterceptorLayer, Outcome, RequestMemory,
};
use tower_memory_probe::{Pressure, PressureSignal, process_memory_of};

/// Allocates 1 MiB per await and keeps it, up to 512 MiB (a bound, so the test cannot run away
/// if the quota failed).
async fn runaway() -> &'static str {
    let mut held = Vec::new();
    for _ in 0..512 {
        held.push(vec![1u8; 1 << 20]);
        tokio::task::yield_now().await;
    }
    black_box(&held);
    "the quota never stopped this handler"
}

const SERVER_ROLE: &str = "MEMORY_INTERCEPTOR_QUOTA_SERVER";

/// The server process of `runaway_handler_under_a_64_mib_quota_...`: that test starts this test
/// binary again with only this test selected and `SERVER_ROLE` set, so that the server's peak RSS
/// is its own.
#[test]
#[ignore = "the server process of the runaway quota test, started by it"]
fn quota_server_process() {
    if std::env::var_os(SERVER_ROLE).is_none() {
        return;
    }
    // The parent holds our stdin: when it goes away, so do we.
    exit_when_stdin_closes();
    let runtime = runtime();
    runtime.block_on(async {
        let router = Router::new()
            .route("/runaway", get(runaway))
            .route("/hello", get(|| async { "hello" }))
            .layer(
                MemoryInterceptorLayer::new()
                    .max_request_memory(64 * MIB)
                    .on_report(|r| {
                        println!(
                            "REPORT {} {} {} {}",
                            r.path_and_query, r.outcome, r.allocated, r.peak_net
                        )
                    }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("LISTENING {}", listener.local_addr().unwrap());
        axum::serve(listener, router).await.unwrap();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_handler_under_a_64_mib_quota_gets_503_with_bounded_server_rss() {
    // The address comes from its `LISTENING` line (libtest may have printed the test's name
    // before it).
    let server = spawn_test_child(
        "quota_server_process",
        SERVER_ROLE,
        Stdio::null(),
        Duration::from_secs(60),
        |line| {
            let at = line.find("LISTENING ")?;
            Some(line[at + "LISTENING ".len()..].trim().to_string())
        },
    );
    let addr: std::net::SocketAddr = server.addr().parse().unwrap();
    let pid = server.pid();
    let client = client();

    assert_eq!(get_status(&client, addr, "/hello").await, 200);
    let baseline = process_memory_of(pid).unwrap().peak_rss_bytes;

    let (head, body) = bounded("runaway", 60, fetch(&client, addr, "/runaway")).await;
    assert_eq!(head.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The default Retry-After of every memory 503 (tower_memory_probe::DEFAULT_RETRY_AFTER).
    assert_eq!(head.headers()[header::RETRY_AFTER], "1");
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        text.contains("per-request memory quota of 67108864 bytes"),
        "{text}"
    );

    let peak = process_memory_of(pid).unwrap().peak_rss_bytes;
    let growth = peak.saturating_sub(baseline);
    println!(
        "server peak RSS {} MiB before the runaway request, {} MiB after (grew {} MiB)",
        baseline / MIB,
        peak / MIB,
        growth / MIB
    );
    assert!(
        growth < 128 * MIB,
        "server peak RSS grew by {} MiB",
        growth / MIB
    );

    // The server keeps serving, and said why it stopped the handler.
    assert_eq!(get_status(&client, addr, "/hello").await, 200);
    let report = server.next_line("REPORT /runaway", Duration::from_secs(10));
    let fields: Vec<&str> = report.split(' ').collect();
    assert_eq!(fields[2], "aborted_quota", "{report}");
    let allocated: u64 = fields[3].parse().unwrap();
    let peak_net: u64 = fields[4].parse().unwrap();
    assert!(allocated > 64 * MIB && peak_net > 64 * MIB, "{report}");
    assert!(
        peak_net < 66 * MIB,
        "stopped at the first boundary past the quota: {report}"
    );
}

struct Holding {
    holding: AtomicUsize,
    release: tokio::sync::watch::Sender<bool>,
}

/// Allocates `size` MiB, says so, and holds it until released.
async fn hold(state: Arc<Holding>, uri: Uri) -> String {
    let mib = size_param(uri.query());
    let block = vec![1u8; mib << 20];
    let mut release = state.release.subscribe();
    // The account is updated at the end of a poll: end this one before saying "holding", so the
    // pressure ranking already sees the block when the test reads the count.
    tokio::task::yield_now().await;
    state.holding.fetch_add(1, Ordering::SeqCst);
    let _ = release.wait_for(|go| *go).await;
    black_box(&block);
    format!("held {mib} MiB")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_pressure_aborts_the_largest_requests_first() {
    let reports = Reports::default();
    let signal = PressureSignal::new();
    let state = Arc::new(Holding {
        holding: AtomicUsize::new(0),
        release: tokio::sync::watch::channel(false).0,
    });
    let router = Router::new()
        .route(
            "/hold",
            get({
                let state = Arc::clone(&state);
                move |uri: Uri| hold(Arc::clone(&state), uri)
            }),
        )
        .layer(
            MemoryInterceptorLayer::new()
                .abort_under_pressure(signal.clone())
                .pressure_aborts_per_tick(2)
                .pressure_tick(Duration::from_secs(60))
                .on_report(reports.sink()),
        );
    let (addr, _server) = serve_axum(router).await;
    let client = client();

    let sizes = [2u64, 8, 32, 16, 4];
    let tasks: Vec<_> = sizes
        .iter()
        .map(|mib| {
            let client = client.clone();
            let path = format!("/hold?size={mib}");
            tokio::spawn(async move {
                let (head, body) = fetch(&client, addr, &path).await;
                (head.status(), String::from_utf8(body.to_vec()).unwrap())
            })
        })
        .collect();
    bounded("all requests holding", 30, async {
        while state.holding.load(Ordering::SeqCst) < sizes.len() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    // One pressure tick aborts the two largest, and no other.
    signal.set(Pressure::Critical);
    let aborted = bounded("aborts", 10, async {
        loop {
            let aborted: Vec<_> = reports
                .all()
                .into_iter()
                .filter(|r| r.outcome == Outcome::Aborted(AbortReason::Pressure))
                .collect();
            if aborted.len() >= 2 {
                return aborted;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let mut paths: Vec<_> = aborted
        .iter()
        .map(|r| r.path_and_query.to_string())
        .collect();
    paths.sort();
    assert_eq!(paths, ["/hold?size=16", "/hold?size=32"]);
    for report in &aborted {
        assert_eq!(report.status, Some(StatusCode::SERVICE_UNAVAILABLE));
        // Dropping the handler freed its block, measured.
        assert!(report.deallocated >= 16 * MIB, "{report:?}");
    }

    signal.set(Pressure::Normal);
    state.release.send_replace(true);
    let mut results = Vec::new();
    for task in tasks {
        results.push(bounded("response", 30, task).await.unwrap());
    }
    for (mib, (status, body)) in sizes.iter().zip(&results) {
        if *mib == 32 || *mib == 16 {
            assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(body.contains("memory pressure is critical"), "{body}");
        } else {
            assert_eq!(*status, StatusCode::OK);
            assert_eq!(*body, format!("held {mib} MiB"));
        }
    }
    let all = reports
        .wait_for("/hold", sizes.len(), Duration::from_secs(10))
        .await;
    assert_eq!(all.len(), sizes.len(), "one report per request");
    assert_eq!(
        all.iter()
            .filter(|r| r.outcome == Outcome::Completed)
            .count(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_crossed_while_the_body_streams_ends_the_body_with_an_error() {
    let reports = Reports::default();
    let router = Router::new()
        .route(
            "/leaky",
            get(|| async {
                // Every frame keeps another MiB alive in the stream's state.
                let stream = futures_util::stream::unfold(Vec::new(), |mut held| async move {
                    if held.len() == 512 {
                        return None;
                    }
                    held.push(vec![0u8; 1 << 20]);
                    tokio::task::yield_now().await;
                    Some((Ok::<_, Infallible>(Bytes::from_static(b"x")), held))
                });
                Body::from_stream(stream)
            }),
        )
        .route("/hello", get(|| async { "hello" }))
        .layer(
            MemoryInterceptorLayer::new()
                .max_request_memory(16 * MIB)
                .on_report(reports.sink()),
        );
    let (addr, _server) = serve_axum(router).await;
    let client = client();

    let response = client
        .request(
            Request::get(format!("http://{addr}/leaky"))
                .body(http_body_util::Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "headers were sent before the quota was crossed"
    );
    let result = bounded("body", 30, response.into_body().collect()).await;
    assert!(
        result.is_err(),
        "the body must end with an error, not a clean end"
    );

    let report = bounded(
        "report",
        10,
        reports.wait_for("/leaky", 1, Duration::from_secs(10)),
    )
    .await
    .remove(0);
    assert_eq!(report.outcome, Outcome::Aborted(AbortReason::Quota));
    assert_eq!(report.status, Some(StatusCode::OK));
    assert!(
        report.peak_net > 16 * MIB as i64 && report.peak_net < 18 * MIB as i64,
        "{report:?}"
    );
    assert!(report.body_bytes < 32, "{report:?}");
    assert!(
        report.deallocated >= 16 * MIB,
        "dropping the stream freed its blocks: {report:?}"
    );
    assert_eq!(get_status(&client, addr, "/hello").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_errors_and_responses_are_typed_and_explained() {
    let layer = MemoryInterceptorLayer::new()
        .max_request_memory(8 * MIB)
        .retry_after(Duration::from_secs(7));

    // Over the quota before answering: 503 with Retry-After and the reason in the body.
    let service =
        ServiceBuilder::new()
            .layer(layer.clone())
            .service_fn(|_req: Request<()>| async {
                let block = vec![1u8; 9 << 20];
                tokio::task::yield_now().await;
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(block))))
            });
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        tower_memory_probe::OVERLOAD_CONTENT_TYPE
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let text = json["error"].as_str().unwrap();
    assert!(text.starts_with("request aborted: it held "), "{text}");
    assert!(text.contains("quota of 8388608 bytes"), "{text}");
    assert_eq!(json["reason"], "quota");
    assert_eq!(json["retry_after_seconds"], 7);

    // Over the quota in a handler that answers at once: the response is what holds the memory,
    // and it is dropped too.
    let service =
        ServiceBuilder::new()
            .layer(layer.clone())
            .service_fn(|_req: Request<()>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(vec![1u8; 9 << 20]))))
            });
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let text = json["error"].as_str().unwrap();
    assert!(text.starts_with("request aborted: it held "), "{text:?}");

    // Over the quota while streaming: the body's error is an AbortError.
    let service = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|_req: Request<()>| async {
            let frames = futures_util::stream::unfold(Vec::new(), |mut held| async move {
                held.push(vec![0u8; 1 << 20]);
                (held.len() <= 64).then(|| {
                    (
                        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"y"))),
                        held,
                    )
                })
            });
            Ok::<_, Infallible>(Response::new(StreamBody::new(frames)))
        });
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let error = response.into_body().collect().await.unwrap_err();
    let abort = error.downcast_ref::<AbortError>().expect("an AbortError");
    assert_eq!(abort.reason(), AbortReason::Quota);
    match abort {
        AbortError::Quota { held, limit } => {
            assert_eq!(*limit, 8 * MIB);
            assert!(*held > 8 * MIB && *held < 10 * MIB, "{abort}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_covers_instrumented_spawned_work() {
    let reports = Reports::default();
    let stopped_at = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route(
            "/spawned",
            get({
                let stopped_at = Arc::clone(&stopped_at);
                move |memory: RequestMemory| async move {
                    let watch = memory.clone();
                    let task = tokio::spawn(memory.instrument(async move {
                        let mut held = Vec::new();
                        for _ in 0..512 {
                            // The handler is gone once the quota is crossed; stop too.
                            if watch.abort_pending().is_some() {
                                break;
                            }
                            held.push(vec![1u8; 1 << 20]);
                            tokio::task::yield_now().await;
                        }
                        stopped_at.store(held.len(), Ordering::SeqCst);
                        held.len()
                    }));
                    format!("{}", task.await.unwrap())
                }
            }),
        )
        .layer(
            MemoryInterceptorLayer::new()
                .max_request_memory(32 * MIB)
                .on_report(reports.sink()),
        );
    let (addr, _server) = serve_axum(router).await;
    let (head, body) = bounded("spawned", 30, fetch(&client(), addr, "/spawned")).await;
    assert_eq!(head.status(), StatusCode::SERVICE_UNAVAILABLE, "{body:?}");
    let report = bounded(
        "report",
        10,
        reports.wait_for("/spawned", 1, Duration::from_secs(10)),
    )
    .await
    .remove(0);
    assert_eq!(report.outcome, Outcome::Aborted(AbortReason::Quota));
    assert!(report.allocated > 32 * MIB, "{report:?}");
    bounded("spawned task stops", 10, async {
        while stopped_at.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let stopped = stopped_at.load(Ordering::SeqCst);
    assert!((32..40).contains(&stopped), "stopped after {stopped} MiB");
}
