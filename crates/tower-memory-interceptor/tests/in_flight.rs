//! What is holding memory now: the requests in flight listed largest first, the warning when a
//! running request crosses the heavy threshold, what routes leave behind in the ledger, and query
//! strings kept out of the logs. Real axum servers on 127.0.0.1; alone in its binary because it
//! installs the global tracing subscriber.

mod common;

use std::hint::black_box;
use std::sync::Mutex;
use std::time::Duration;

use std::sync::OnceLock;

use axum::Router;
use axum::routing::get;
use common::*;
use http::Uri;
use test_support::{Captured, bounded, capture_warnings};
use tokio::sync::watch;
use tower_memory_interceptor::{InFlight, Ledger, MemoryInterceptorLayer};
use tower_memory_probe::{MemoryBudget, PressureSignal};

/// Memory a route keeps after its requests end (a cache that never evicts).
static KEPT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// The WARN lines of the process's one tracing subscriber (installed once for both tests).
fn log() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(capture_warnings)
}

/// `/hold` (and `/small`, the same handler on a route of its own: the governor runs a route's
/// first request alone) answers once `release` says true.
fn router(release: watch::Receiver<bool>) -> Router {
    let hold = move |uri: Uri| {
        let mut release = release.clone();
        async move {
            // `size=` MiB, touched a MiB at a time across awaits, as a report is built.
            let mut pages = Vec::new();
            for _ in 0..size_param(uri.query()) {
                pages.push(vec![1u8; 1 << 20]);
                tokio::task::yield_now().await;
            }
            let _ = release.wait_for(|&go| go).await;
            black_box(&pages);
            "held"
        }
    };
    Router::new()
        .route("/hold", get(hold.clone()))
        .route("/small", get(hold))
        .route(
            "/keep",
            get(|| async {
                KEPT.lock().unwrap().push(vec![2u8; 1 << 20]);
                "kept"
            }),
        )
}

async fn listed(in_flight: &InFlight, route: &str, min: u64) -> u64 {
    bounded("the request in flight", 10, async {
        loop {
            if let Some(r) = in_flight
                .largest(8)
                .into_iter()
                .find(|r| r.route == route && r.held_bytes >= min)
            {
                return r.held_bytes;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_requests_hold_now_and_leave_behind() {
    let log = log();

    // A layer with the governor (its registry lists requests from 64 KiB) and one with pressure
    // aborts alone (from 1 MiB); neither lists small requests.
    let ledger = Ledger::new(16);
    let governed = MemoryInterceptorLayer::new()
        .ledger(ledger.clone())
        .without_reclaim()
        .heavy_threshold(40 << 20)
        .governor(tower_memory_interceptor::GovernorConfig::new(
            MemoryBudget::new(1 << 30),
        ));
    let in_flight = governed.in_flight().expect("a registry with the governor");
    assert_eq!(in_flight.min_bytes(), 64 * KIB);
    assert!(MemoryInterceptorLayer::new().in_flight().is_none());
    let pressured = MemoryInterceptorLayer::new().abort_under_pressure(PressureSignal::new());
    assert_eq!(pressured.in_flight().unwrap().min_bytes(), MIB);

    let (release, released) = watch::channel(false);
    let (addr, _server) = serve_axum(router(released).layer(governed)).await;
    let client = client();

    // Two requests held open: listed largest first, with route, method, age, held and peak.
    let big = tokio::spawn({
        let client = client.clone();
        async move { get_status(&client, addr, "/hold?size=48&secret=hunter2").await }
    });
    let held = listed(&in_flight, "/hold", 48 * MIB).await;
    assert!(held < 52 * MIB, "{held}");
    let small = tokio::spawn({
        let client = client.clone();
        async move { get_status(&client, addr, "/small?size=4").await }
    });
    let largest = bounded("both requests in flight", 10, async {
        loop {
            let largest = in_flight.largest(8);
            if largest.len() == 2 && largest[1].held_bytes >= 4 * MIB {
                return largest;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(largest.len(), 2, "{largest:?}");
    assert!(largest[0].held_bytes > largest[1].held_bytes);
    assert_eq!(largest[0].method, http::Method::GET);
    assert!(largest[0].peak_bytes >= largest[0].held_bytes);
    assert!(largest[0].age > Duration::ZERO);
    assert!(largest[0].to_string().starts_with("GET /hold held="));
    let by_route = in_flight.by_route();
    let hold = by_route
        .iter()
        .find(|(r, _)| r.as_str() == "/hold")
        .unwrap()
        .1;
    assert_eq!(hold.requests, 1);
    assert!(hold.held_bytes >= 48 * MIB);
    assert_eq!(largest[1].route, "/small");

    // The big one crossed the heavy threshold while running: one warning now, path only. (The
    // other test's lines carry their query: `path="/hold?...`.)
    let crossing: Vec<String> = log
        .lines()
        .into_iter()
        .filter(|l| l.contains("crossed the heavy threshold while running"))
        .filter(|l| l.contains("path=\"/hold\""))
        .collect();
    assert_eq!(crossing.len(), 1, "{crossing:?}");
    assert!(crossing[0].contains("route=/hold"), "{}", crossing[0]);
    assert!(!crossing[0].contains("hunter2"), "{}", crossing[0]);

    release.send(true).unwrap();
    assert_eq!(big.await.unwrap(), 200);
    assert_eq!(small.await.unwrap(), 200);
    bounded("the listing to empty", 10, async {
        while !in_flight.largest(8).is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Still one crossing warning (not one per poll), and the end-of-request one without the query.
    let lines = log.lines();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("crossed the heavy threshold") && l.contains("path=\"/hold\""))
            .count(),
        1
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("heavy request") && l.contains("path=\"/hold\""))
    );
    assert!(!lines.iter().any(|l| l.contains("hunter2")), "{lines:?}");

    // What routes leave behind: /keep keeps a MiB per request, /hold nothing.
    for _ in 0..3 {
        assert_eq!(get_status(&client, addr, "/keep").await, 200);
    }
    let routes = ledger.snapshot();
    let kept = routes.iter().find(|r| r.route == "/keep").unwrap();
    assert!(
        // Three MiB kept, give or take the request's own small allocations and frees.
        (3 * MIB as i64 - 16 * KIB as i64..3 * MIB as i64 + 64 * KIB as i64)
            .contains(&kept.retained_bytes),
        "{kept:?}"
    );
    let hold = routes.iter().find(|r| r.route == "/hold").unwrap();
    assert!(hold.retained_bytes.abs() < (MIB as i64), "{hold:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_strings_are_logged_only_when_asked_for() {
    let log = log();
    let (release, released) = watch::channel(false);
    let layer = MemoryInterceptorLayer::new()
        .without_reclaim()
        .heavy_threshold(2 << 20)
        .log_query_strings(true);
    let (addr, _server) = serve_axum(router(released).layer(layer)).await;
    let request = tokio::spawn(async move {
        get_status(&client(), addr, "/hold?size=3&tag=visible-query-42").await
    });
    // Both warnings, the crossing one and the end-of-request one, carry the query.
    let crossing =
        bounded("the crossing warning", 10, async {
            loop {
                if let Some(l) = log.lines().into_iter().find(|l| {
                    l.contains("crossed the heavy threshold") && l.contains("tag=visible")
                }) {
                    return l;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    assert!(
        crossing.contains("path=\"/hold?size=3&tag=visible-query-42\""),
        "{crossing}"
    );
    release.send(true).unwrap();
    assert_eq!(request.await.unwrap(), 200);
    bounded("the heavy warning", 10, async {
        while !log
            .lines()
            .iter()
            .any(|l| l.contains("heavy request") && l.contains("tag=visible-query-42"))
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
