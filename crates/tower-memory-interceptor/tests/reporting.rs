//! Where reports go: metrics (bounded labels), the ledger, tracing warnings and the reclaimer.
//! Alone in its binary because it installs the global metrics recorder and tracing subscriber.

mod common;

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::*;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use test_support::{bounded, capture_warnings};
use tower_memory_interceptor::{
    ABORTED_METRIC, ALLOCATED_METRIC, AbortReason, HEAVY_METRIC, Ledger, MemoryInterceptorLayer,
    NET_METRIC, Outcome, UNMATCHED_ROUTE,
};
use tower_memory_probe::Reclaimer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_reach_metrics_ledger_tracing_and_the_reclaimer() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let log = capture_warnings();

    let reports = Reports::default();
    let ledger = Ledger::new(16);
    let reclaimer = Reclaimer::builder().min_interval(Duration::ZERO).build();
    let router = Router::new()
        .route(
            "/heavy",
            get(|| async {
                let block = vec![1u8; 60 << 20];
                black_box(&block);
                "heavy"
            }),
        )
        .route(
            "/light",
            get(|| async {
                let block = vec![1u8; 1024];
                black_box(&block);
                "light"
            }),
        )
        .route(
            "/runaway",
            get(|| async {
                let mut held = Vec::new();
                for _ in 0..256 {
                    held.push(vec![1u8; 1 << 20]);
                    tokio::task::yield_now().await;
                }
                black_box(&held);
                "not stopped"
            }),
        )
        .fallback(|| async { (http::StatusCode::NOT_FOUND, "no such route") })
        .layer(
            MemoryInterceptorLayer::new()
                .ledger(ledger.clone())
                .reclaimer(reclaimer.clone())
                .max_request_memory(100 * MIB)
                .on_report(reports.sink()),
        );
    let (addr, _server) = serve_axum(router).await;
    let client = client();

    assert_eq!(get_status(&client, addr, "/heavy").await, 200);
    for _ in 0..3 {
        assert_eq!(get_status(&client, addr, "/light").await, 200);
    }
    assert_eq!(get_status(&client, addr, "/runaway").await, 503);
    for i in 0..10 {
        let path = format!("/random-{i}-{}", i * 104_729);
        assert_eq!(get_status(&client, addr, &path).await, 404);
    }
    let all = bounded("reports", 10, async {
        loop {
            let all = reports.all();
            if all.len() >= 15 {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(all.len(), 15, "one report per request");
    for report in all
        .iter()
        .filter(|r| r.path_and_query.as_str().starts_with("/random-"))
    {
        assert_eq!(report.route, UNMATCHED_ROUTE);
    }

    // Metrics: the histograms and counters, and labels bounded whatever the paths.
    let snapshot = snapshotter.snapshot().into_vec();
    let mut routes = BTreeSet::new();
    let mut heavy = 0;
    let mut aborted = 0;
    let mut heavy_allocated = Vec::new();
    let mut light_net = 0;
    for (key, _, _, value) in &snapshot {
        let key = key.key();
        let label = |name: &str| {
            key.labels()
                .find(|l| l.key() == name)
                .map(|l| l.value().to_string())
        };
        for l in key.labels() {
            assert!(
                !l.value().contains("random"),
                "raw path as a label: {key:?}"
            );
        }
        if let Some(route) = label("route") {
            routes.insert(route);
        }
        match (key.name(), value) {
            (HEAVY_METRIC, DebugValue::Counter(n)) => {
                // The runaway request allocated past the heavy threshold too, before its 503.
                let labels = (label("method"), label("route"), label("status"));
                let labels = (
                    labels.0.as_deref(),
                    labels.1.as_deref(),
                    labels.2.as_deref(),
                );
                assert!(
                    labels == (Some("GET"), Some("/heavy"), Some("200"))
                        || labels == (Some("GET"), Some("/runaway"), Some("503")),
                    "{labels:?}"
                );
                heavy += n;
            }
            (ABORTED_METRIC, DebugValue::Counter(n)) => {
                assert_eq!(label("reason").as_deref(), Some("quota"));
                aborted += n;
            }
            (ALLOCATED_METRIC, DebugValue::Histogram(values))
                if label("route").as_deref() == Some("/heavy") =>
            {
                heavy_allocated.extend(values.iter().map(|v| v.into_inner()));
            }
            (NET_METRIC, DebugValue::Histogram(values))
                if label("route").as_deref() == Some("/light") =>
            {
                light_net += values.len();
            }
            _ => {}
        }
    }
    assert_eq!(heavy, 2);
    assert_eq!(aborted, 1);
    assert_eq!(heavy_allocated.len(), 1);
    assert!(heavy_allocated[0] >= (60 << 20) as f64);
    assert_eq!(light_net, 3);
    let expected: BTreeSet<String> = ["/heavy", "/light", "/runaway", UNMATCHED_ROUTE]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(routes, expected);

    // The ledger: the hungriest routes first.
    let top = ledger.top(2);
    assert_eq!(top[0].route, "/runaway");
    assert!(top[0].allocated_bytes_max > 100 * MIB);
    assert_eq!(top[1].route, "/heavy");
    assert_eq!(top[1].requests, 1);
    let light = ledger
        .snapshot()
        .into_iter()
        .find(|r| r.route == "/light")
        .unwrap();
    assert_eq!(light.requests, 3);

    // Heavy requests asked the reclaimer to run, in the background.
    bounded("reclaim", 10, async {
        while reclaimer.runs() + reclaimer.failures() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(reclaimer.runs() >= 1, "jemalloc purge ran");

    // Warnings for the heavy request and the abort; nothing for light ones.
    let text = log.text();
    let heavy_line = text
        .lines()
        .find(|l| l.contains("heavy request"))
        .unwrap_or_else(|| panic!("no heavy warning in {text}"));
    assert!(
        heavy_line.contains("WARN") && heavy_line.contains("route=/heavy"),
        "{heavy_line}"
    );
    let abort_line = text
        .lines()
        .find(|l| l.contains("over the per-request memory quota"))
        .unwrap_or_else(|| panic!("no abort warning in {text}"));
    assert!(
        abort_line.contains("route=/runaway") && abort_line.contains("outcome=\"aborted_quota\"")
    );
    assert!(!text.contains("route=/light"), "{text}");

    let runaway = all.iter().find(|r| r.route == "/runaway").unwrap();
    assert_eq!(runaway.outcome, Outcome::Aborted(AbortReason::Quota));
}
