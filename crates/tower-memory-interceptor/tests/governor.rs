//! The memory governor on real servers: admission by learned cost, the queue and its 503, tiny
//! requests that never queue, the probe of an unseen route, parking and the deadlock abort, and
//! the budget back to full on every path.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::Uri;
use axum::routing::get;
use common::{MIB, Reports, client, fetch, serve_axum, size_param};
use http::StatusCode;
use test_support::bounded;
use tower_memory_interceptor::{
    AbortReason, GovernorConfig, Ledger, MemoryInterceptorLayer, Outcome,
};
use tower_memory_probe::MemoryBudget;

/// What the handlers share with the test.
struct Gate {
    entered: AtomicUsize,
    holding: AtomicUsize,
    /// Requests half-way through their growth (`meet`).
    met: AtomicUsize,
    release: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    fn new() -> Arc<Gate> {
        Arc::new(Gate {
            entered: AtomicUsize::new(0),
            holding: AtomicUsize::new(0),
            met: AtomicUsize::new(0),
            release: tokio::sync::watch::channel(false).0,
        })
    }

    async fn wait_holding(&self, n: usize) {
        bounded("requests holding", 20, async {
            while self.holding.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }
}

fn param(uri: &Uri, name: &str) -> Option<usize> {
    uri.query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// `GET /grow?size=N[&hold=1]`: allocates N MiB one MiB per poll (like a report built across
/// awaits), then optionally holds it until the gate opens.
async fn grow(gate: Arc<Gate>, uri: Uri) -> String {
    gate.entered.fetch_add(1, Ordering::SeqCst);
    let mib = size_param(uri.query());
    let mut pages = Vec::with_capacity(mib);
    for i in 0..mib {
        // `meet=N`: at 5/8 of the way, wait until N requests are there, so that they hold
        // memory at the same time however the machine schedules them.
        if i == mib * 5 / 8
            && let Some(n) = param(&uri, "meet")
        {
            gate.met.fetch_add(1, Ordering::SeqCst);
            while gate.met.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        pages.push(vec![(i % 251) as u8 + 1; MIB as usize]);
        tokio::task::yield_now().await;
    }
    if param(&uri, "hold") == Some(1) {
        let mut release = gate.release.subscribe();
        gate.holding.fetch_add(1, Ordering::SeqCst);
        let _ = release.wait_for(|go| *go).await;
    }
    black_box(&pages);
    format!("grew {mib} MiB")
}

fn router(gate: &Arc<Gate>, layer: MemoryInterceptorLayer) -> Router {
    let g = Arc::clone(gate);
    Router::new()
        .route("/grow", get(move |uri: Uri| grow(Arc::clone(&g), uri)))
        .route("/tiny", get(|| async { "tiny" }))
        .layer(layer)
}

async fn budget_empty(budget: &MemoryBudget) {
    bounded("budget back to full", 10, async {
        while budget.in_use() != 0 || budget.reserved() != 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!((budget.queue_len(), budget.parked_len()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_costs_queue_heavy_requests_and_never_tiny_ones() {
    let budget = MemoryBudget::new(40 * MIB);
    let ledger = Ledger::default();
    let reports = Reports::default();
    let gate = Gate::new();
    let layer = MemoryInterceptorLayer::new()
        .ledger(ledger.clone())
        .on_report(reports.sink())
        .retry_after(Duration::from_secs(3))
        .governor(
            GovernorConfig::new(budget.clone()).admission_timeout(Duration::from_millis(300)),
        );
    let (addr, _server) = serve_axum(router(&gate, layer)).await;
    let client = client();

    // The first of each route is its probe: afterwards the cost is known.
    assert_eq!(fetch(&client, addr, "/grow?size=16").await.0.status(), 200);
    assert_eq!(fetch(&client, addr, "/tiny").await.0.status(), 200);
    let stats = ledger.snapshot();
    let cost = |route: &str| {
        stats
            .iter()
            .find(|r| r.route == route)
            .and_then(|r| r.predicted_cost_bytes)
            .unwrap()
    };
    assert!(
        (16 * MIB..18 * MIB).contains(&cost("/grow")),
        "the probe's peak: {}",
        cost("/grow")
    );
    assert!(cost("/tiny") < 64 << 10, "tiny: {}", cost("/tiny"));
    budget_empty(&budget).await;

    // Two holders fill 32 of 40 MiB.
    let holders: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { fetch(&client, addr, "/grow?size=16&hold=1").await })
        })
        .collect();
    gate.wait_holding(2).await;
    assert!(
        budget.reserved() >= 32 * MIB,
        "reserved {}",
        budget.reserved()
    );

    // A third does not fit: it waits its 300 ms in the queue, then 503 with Retry-After,
    // without the handler ever running.
    let entered = gate.entered.load(Ordering::SeqCst);
    let (head, body) = fetch(&client, addr, "/grow?size=16").await;
    assert_eq!(head.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(head.headers()["retry-after"], "3");
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.contains("memory budget"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["reason"], "admission_timeout", "{text}");
    assert_eq!(json["retry_after_seconds"], 3, "{text}");
    assert_eq!(gate.entered.load(Ordering::SeqCst), entered, "never called");
    let refused = reports
        .wait_for("/grow?size=16", 2, Duration::from_secs(5))
        .await;
    assert!(refused.iter().any(
        |r| r.outcome == Outcome::Rejected && r.status == Some(StatusCode::SERVICE_UNAVAILABLE)
    ));

    // A tiny request is served at once while the budget is full (a queued one would wait 300 ms
    // and get 503: the holders are not released yet).
    let (head, body) = fetch(&client, addr, "/tiny").await;
    assert_eq!((head.status(), &body[..]), (StatusCode::OK, &b"tiny"[..]));

    // A queued request goes in as soon as the holders end.
    let queued = {
        let client = client.clone();
        tokio::spawn(async move { fetch(&client, addr, "/grow?size=16").await })
    };
    bounded("queued", 5, async {
        while budget.queue_len() == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    gate.release.send_replace(true);
    for h in holders {
        assert_eq!(h.await.unwrap().0.status(), 200);
    }
    let (head, body) = bounded("queued request", 10, queued).await.unwrap();
    assert_eq!(
        (head.status(), &body[..]),
        (StatusCode::OK, &b"grew 16 MiB"[..])
    );
    budget_empty(&budget).await;
    let grow = ledger
        .snapshot()
        .into_iter()
        .find(|r| r.route == "/grow")
        .unwrap();
    assert_eq!(grow.governor.rejected, 1, "{grow:?}");
    assert!(grow.governor.queued >= 1, "{grow:?}");
    assert!(grow.governor.admitted >= 3, "{grow:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_s_first_request_runs_alone_and_shows_the_cost() {
    let budget = MemoryBudget::new(200 * MIB);
    let gate = Gate::new();
    let layer = MemoryInterceptorLayer::new()
        .governor(GovernorConfig::new(budget.clone()).probe_timeout(Duration::from_secs(10)));
    let (addr, _server) = serve_axum(router(&gate, layer)).await;
    let client = client();

    let probe = {
        let client = client.clone();
        tokio::spawn(async move { fetch(&client, addr, "/grow?size=8&hold=1").await })
    };
    gate.wait_holding(1).await;
    let second = {
        let client = client.clone();
        tokio::spawn(async move { fetch(&client, addr, "/grow?size=8").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        gate.entered.load(Ordering::SeqCst),
        1,
        "the second request waits for the probe"
    );
    gate.release.send_replace(true);
    assert_eq!(probe.await.unwrap().0.status(), 200);
    let (head, body) = bounded("second", 10, second).await.unwrap();
    assert_eq!(
        (head.status(), &body[..]),
        (StatusCode::OK, &b"grew 8 MiB"[..])
    );
    assert!(budget.stats().admitted >= 2);
    budget_empty(&budget).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_over_capacity_aborts_the_request_furthest_over_its_reservation() {
    // Two requests reserve 1 MiB each (the route is unseen and nobody waits for the probe), then
    // each grows to 16 MiB in a 24 MiB budget; they meet at 10 MiB each, so neither can finish
    // alone: both park and nobody can free anything. After the park timeout one is aborted (only
    // one: the second waits for the first's memory) and the other finishes.
    let budget = MemoryBudget::new(24 * MIB);
    let reports = Reports::default();
    let gate = Gate::new();
    let layer = MemoryInterceptorLayer::new()
        .on_report(reports.sink())
        .governor(
            GovernorConfig::new(budget.clone())
                .probe_timeout(Duration::ZERO)
                .park_timeout(Duration::from_millis(100)),
        );
    let (addr, _server) = serve_axum(router(&gate, layer)).await;
    let client = client();
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let (head, body) = fetch(&client, addr, "/grow?size=16&meet=2").await;
                (head.status(), String::from_utf8(body.to_vec()).unwrap())
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(bounded("both answer", 20, t).await.unwrap());
    }
    results.sort();
    assert_eq!(
        results[0],
        (StatusCode::OK, "grew 16 MiB".to_string()),
        "{results:?}"
    );
    assert_eq!(results[1].0, StatusCode::SERVICE_UNAVAILABLE, "{results:?}");
    assert!(
        results[1].1.contains("over its reservation"),
        "{}",
        results[1].1
    );
    let all = reports.wait_for("/grow", 2, Duration::from_secs(5)).await;
    let aborted: Vec<_> = all
        .iter()
        .filter(|r| r.outcome == Outcome::Aborted(AbortReason::Overcommit))
        .collect();
    assert_eq!(aborted.len(), 1, "{all:?}");
    // Dropping the aborted handler freed what it held, measured.
    assert!(aborted[0].deallocated >= 8 * MIB, "{:?}", aborted[0]);
    assert!(budget.stats().parked >= 1);
    budget_empty(&budget).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_gives_the_budget_back() {
    use tower_http::catch_panic::CatchPanicLayer;

    let budget = MemoryBudget::new(64 * MIB);
    let gate = Gate::new();
    let g = Arc::clone(&gate);
    // No quota on this server: a panic with RUST_BACKTRACE set resolves symbols inside the
    // handler's poll, tens of MiB charged to the request.
    let layer = MemoryInterceptorLayer::new().governor(GovernorConfig::new(budget.clone()));
    let app = Router::new()
        .route("/grow", get(move |uri: Uri| grow(Arc::clone(&g), uri)))
        .route(
            "/panic",
            get(|| async {
                let block = vec![7u8; 8 << 20];
                tokio::task::yield_now().await;
                if black_box(block.len()) > 0 {
                    panic!("handler panicked on purpose");
                }
                "unreachable"
            }),
        )
        .layer(CatchPanicLayer::new())
        .layer(layer);
    let (addr, _server) = serve_axum(app).await;
    let client = client();

    // Completion (also teaches the route its cost).
    assert_eq!(fetch(&client, addr, "/grow?size=8").await.0.status(), 200);
    budget_empty(&budget).await;
    // Panic, under CatchPanicLayer: a 500.
    let (head, body) = fetch(&client, addr, "/panic").await;
    assert_eq!(head.status(), 500, "{body:?}");
    budget_empty(&budget).await;
    // Quota abort.
    let layer = MemoryInterceptorLayer::new()
        .max_request_memory(24 * MIB)
        .governor(GovernorConfig::new(budget.clone()));
    let (quota_addr, _quota_server) = serve_axum(router(&gate, layer)).await;
    assert_eq!(
        fetch(&client, quota_addr, "/grow?size=8").await.0.status(),
        200
    );
    let (head, body) = fetch(&client, quota_addr, "/grow?size=32").await;
    assert_eq!(head.status(), 503, "{body:?}");
    assert!(String::from_utf8_lossy(&body).contains("quota"), "{body:?}");
    budget_empty(&budget).await;
    // Client gone while the handler holds its memory.
    let holder = {
        let client = client.clone();
        tokio::spawn(async move { fetch(&client, addr, "/grow?size=8&hold=1").await })
    };
    gate.wait_holding(1).await;
    assert!(budget.in_use() >= 8 * MIB);
    holder.abort();
    budget_empty(&budget).await;
    // Refused at once: no room for the learned cost and no queue to wait in.
    let small = MemoryBudget::with_max_queue(4 * MIB, 0);
    let layer = MemoryInterceptorLayer::new().governor(GovernorConfig::new(small.clone()));
    let (addr2, _server2) = serve_axum(router(&gate, layer)).await;
    assert_eq!(fetch(&client, addr2, "/grow?size=2").await.0.status(), 200);
    small.charge(3 * MIB);
    let (head, body) = fetch(&client, addr2, "/grow?size=2").await;
    assert_eq!(head.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(head.headers().contains_key("retry-after"));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["reason"], "queue_full", "{json}");
    small.release(3 * MIB);
    budget_empty(&small).await;
}
