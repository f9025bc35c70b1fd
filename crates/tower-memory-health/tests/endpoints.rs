//! The endpoints over real servers on 127.0.0.1 (axum, and plain hyper with a tower stack), with a
//! real HTTP client: shapes and status codes, readiness under pressure and on drain, liveness,
//! shedding with the health paths exempt, pass-through, and a `promtool check metrics` run on a
//! real scrape.
//!
//! (Over 400 lines: every endpoint's cases against one real-server harness, each short; split by
//! endpoint, each file would repeat the server setup.)

mod common;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use bytes::Bytes;
use common::Steered;
use http_body_util::Full;
use serde_json::Value;
use test_support::eventually;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_memory_health::{HealthLayer, MemoryMonitor, PressureShedLayer, PrometheusMetrics};
use tower_memory_interceptor::Ledger;

struct Server {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    async fn axum(app: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server { addr, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "{url}"
    );
    let body = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    names.iter().copied().collect()
}

fn steered_monitor(source: &Steered) -> MemoryMonitor {
    MemoryMonitor::builder()
        .source(source.clone())
        .limit_bytes(1000)
        .reclaim_enabled(false)
        .build()
        .unwrap()
}

fn work_app(calls: Arc<AtomicUsize>) -> Router {
    Router::new().route(
        "/api/work",
        get(move || {
            let calls = Arc::clone(&calls);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                ([("x-handler", "work")], "done")
            }
        }),
    )
}

#[tokio::test]
async fn health_report_has_the_documented_shape() {
    let monitor = MemoryMonitor::builder().build().unwrap();
    monitor.start().unwrap();
    let ledger = Ledger::new(16);
    ledger.record("/api/reports", 50 << 20);
    ledger.record("/api/hello", 1000);
    ledger.record("/api/reports", 10 << 20);
    let app = work_app(Arc::default()).layer(HealthLayer::new(&monitor).ledger(ledger, 1));
    let server = Server::axum(app).await;
    let client = reqwest::Client::new();

    let (status, body) = get_json(&client, &server.url("/api/health")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        keys(&body),
        set(&[
            "status",
            "sampled_at",
            "sample_age_seconds",
            "limit_bytes",
            "limit_source",
            "configured_limit_bytes",
            "usage_bytes",
            "usage_ratio",
            "thresholds",
            "process",
            "allocator",
            "cgroup",
            "trend",
            "reclaim",
            "budget",
            "kernel_events",
            "routes",
            "in_flight",
            "in_flight_min_bytes"
        ])
    );
    // No limit configured: the cgroup's or physical memory; no listing of requests in flight.
    assert!(matches!(
        body["limit_source"].as_str(),
        Some("cgroup_max" | "cgroup_high" | "physical")
    ));
    assert_eq!(body["configured_limit_bytes"], Value::Null);
    assert_eq!(body["in_flight"], serde_json::json!([]));
    assert_eq!(body["in_flight_min_bytes"], Value::Null);
    assert!(body["sample_age_seconds"].as_f64().unwrap() < 1.5);
    // No governor's budget was given to this monitor.
    assert_eq!(body["budget"], Value::Null);
    assert!(body["kernel_events"].is_array());
    assert!(matches!(
        body["status"].as_str(),
        Some("healthy" | "warning")
    ));
    assert_eq!(body["thresholds"]["warning"], 0.75);
    assert_eq!(body["thresholds"]["critical"], 0.85);
    assert_eq!(
        keys(&body["process"]),
        set(&[
            "rss_bytes",
            "peak_rss_bytes",
            "virtual_bytes",
            "non_allocator_resident_bytes"
        ])
    );
    // glibc does not say what it holds resident: nothing to subtract.
    assert_eq!(body["process"]["non_allocator_resident_bytes"], Value::Null);
    let rss = body["process"]["rss_bytes"].as_u64().unwrap();
    assert!(rss > 0);
    assert!(body["process"]["peak_rss_bytes"].as_u64().unwrap() >= rss);
    let usage = body["usage_bytes"].as_u64().unwrap();
    let limit = body["limit_bytes"].as_u64().unwrap();
    assert!(usage >= rss);
    let ratio = body["usage_ratio"].as_f64().unwrap();
    assert!((ratio - usage as f64 / limit as f64).abs() < 1e-3);
    assert_eq!(
        keys(&body["allocator"]),
        set(&[
            "backend",
            "allocated_bytes",
            "active_bytes",
            "resident_bytes",
            "mapped_bytes",
            "retained_bytes",
            "metadata_bytes",
            "fragmentation_ratio"
        ])
    );
    // This test binary runs on the system allocator.
    assert_eq!(body["allocator"]["backend"], "glibc");
    assert!(body["allocator"]["allocated_bytes"].as_u64().unwrap() > 0);
    match &body["cgroup"] {
        Value::Null => {}
        cgroup => {
            assert_eq!(
                keys(cgroup),
                set(&[
                    "version",
                    "usage_bytes",
                    "working_set_bytes",
                    "limit_bytes",
                    "high_bytes",
                    "usage_ratio",
                    "oom_kills"
                ])
            );
            assert!(usage >= cgroup["working_set_bytes"].as_u64().unwrap());
        }
    }
    assert_eq!(
        keys(&body["trend"]),
        set(&["bytes_per_hour", "window_seconds"])
    );
    assert_eq!(
        keys(&body["reclaim"]),
        set(&["runs", "failures", "released_bytes", "by_trigger", "last"])
    );
    assert_eq!(
        keys(&body["reclaim"]["by_trigger"]),
        set(&["scheduled", "critical", "warning", "heavy_request", "api"])
    );
    let routes = body["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 1, "top 1 only");
    assert_eq!(
        keys(&routes[0]),
        set(&[
            "route",
            "requests",
            "allocated_bytes_total",
            "allocated_bytes_max",
            "retained_bytes",
            "predicted_cost_bytes",
            "governor"
        ])
    );
    assert_eq!(
        routes[0]["predicted_cost_bytes"],
        Value::Null,
        "no governor here"
    );
    assert_eq!(
        keys(&routes[0]["governor"]),
        set(&["admitted", "queued", "rejected", "parked", "aborted"])
    );
    assert_eq!(routes[0]["route"], "/api/reports");
    assert_eq!(routes[0]["requests"], 2);
    assert_eq!(routes[0]["allocated_bytes_total"], 60 << 20);
    assert_eq!(routes[0]["allocated_bytes_max"], 50 << 20);
    monitor.stop();
}

#[tokio::test]
async fn health_shows_the_governor_budget_and_queue() {
    let budget = tower_memory_probe::MemoryBudget::with_max_queue(1, 7);
    let monitor = MemoryMonitor::builder()
        .limit_bytes(1 << 40)
        .budget(
            budget.clone(),
            tower_memory_health::BudgetCapacity::Bytes(64 << 20),
        )
        .build()
        .unwrap();
    monitor.sample_now().await.unwrap();
    let held = budget.try_reserve(10 << 20).unwrap();
    budget.charge(1 << 20);
    let app = work_app(Arc::default()).layer(HealthLayer::new(&monitor));
    let server = Server::axum(app).await;
    let client = reqwest::Client::new();
    let (status, body) = get_json(&client, &server.url("/api/health")).await;
    assert_eq!(status, 200, "{body}");
    let b = &body["budget"];
    assert_eq!(
        keys(b),
        set(&[
            "mode",
            "capacity_bytes",
            "charged_bytes",
            "reserved_bytes",
            "available_bytes",
            "usage_ratio",
            "queue",
            "parked",
            "admitted_total",
            "admitted_after_wait_total",
            "rejected_total",
            "parked_total"
        ])
    );
    assert_eq!(b["mode"], "bytes");
    assert_eq!(b["capacity_bytes"], 64 << 20);
    assert_eq!(b["charged_bytes"], 11 << 20);
    assert_eq!(b["reserved_bytes"], 10 << 20);
    assert_eq!(b["available_bytes"], 53 << 20);
    assert_eq!(b["queue"], serde_json::json!({"length": 0, "max": 7}));
    assert_eq!(b["admitted_total"], 1);
    drop(held);
    budget.release(1 << 20);
}

#[tokio::test]
async fn health_is_at_most_a_second_old_and_samples_at_most_once_a_second() {
    let source = Steered::new(500);
    // A running monitor that samples once an hour: only /health's own freshness rule resamples.
    let monitor = MemoryMonitor::builder()
        .source(source.clone())
        .limit_bytes(1000)
        .reclaim_enabled(false)
        .check_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    monitor.start().unwrap();
    assert!(eventually(Duration::from_secs(5), || monitor.snapshot().is_some()).await);
    let server = Server::axum(work_app(Arc::default()).layer(HealthLayer::new(&monitor))).await;
    let client = reqwest::Client::new();
    let (_, first) = get_json(&client, &server.url("/api/health")).await;
    assert_eq!(first["usage_bytes"], 500);
    let samples = monitor.sample_counts().0;

    // Memory moves; within the second, a flood of requests gets the same sample.
    source.set(700);
    for _ in 0..20 {
        let (_, body) = get_json(&client, &server.url("/api/health")).await;
        if body["sample_age_seconds"].as_f64().unwrap() < 0.8 {
            assert_eq!(body["usage_bytes"], 500);
            assert_eq!(body["sampled_at"], first["sampled_at"]);
        }
    }
    assert!(monitor.sample_counts().0 <= samples + 1);
    // After it, one new sample shows where memory is now.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, body) = get_json(&client, &server.url("/api/health")).await;
    assert_eq!(body["usage_bytes"], 700, "{body}");
    assert!(body["sample_age_seconds"].as_f64().unwrap() < 0.5);
    assert_eq!(body["limit_source"], "configured");
    assert_eq!(body["configured_limit_bytes"], 1000);
    // Samples asked for by /health do not count as the task's: liveness still follows the task.
    assert!(monitor.liveness().is_live());
    monitor.stop();
}

#[tokio::test]
async fn health_status_codes_follow_pressure() {
    let source = Steered::new(500);
    let monitor = steered_monitor(&source);
    // Not started: /health samples on request (every request: no sample is too young here).
    let server = Server::axum(
        work_app(Arc::default()).layer(HealthLayer::new(&monitor).max_sample_age(Duration::ZERO)),
    )
    .await;
    let client = reqwest::Client::new();
    for (rss, code, word) in [
        (500, 200, "healthy"),
        (800, 200, "warning"),
        (900, 503, "critical"),
        (820, 503, "critical"), // hysteresis: not yet 0.05 below 0.85
        (600, 200, "healthy"),
    ] {
        source.set(rss);
        let (status, body) = get_json(&client, &server.url("/api/health")).await;
        assert_eq!(
            (status, body["status"].as_str().unwrap()),
            (code, word),
            "{rss}"
        );
        assert_eq!(body["usage_bytes"], rss);
        assert_eq!(body["limit_bytes"], 1000);
        assert_eq!(body["cgroup"], Value::Null);
    }
    // The trend has three samples by now.
    let (_, body) = get_json(&client, &server.url("/api/health")).await;
    assert!(body["trend"]["bytes_per_hour"].is_number());
    // HEAD answers like GET without a body.
    let head = client.head(server.url("/api/health")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_failing_source_gives_500_on_health_and_keeps_serving() {
    let source = Steered::new(500);
    source.fail.store(true, Ordering::SeqCst);
    let monitor = steered_monitor(&source);
    let server = Server::axum(work_app(Arc::default()).layer(HealthLayer::new(&monitor))).await;
    let client = reqwest::Client::new();
    let (status, body) = get_json(&client, &server.url("/api/health")).await;
    assert_eq!(status, 500);
    assert!(body["error"].as_str().unwrap().contains("told to fail"));
    source.fail.store(false, Ordering::SeqCst);
    let (status, _) = get_json(&client, &server.url("/api/health")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn readiness_flips_under_pressure_and_on_drain() {
    let source = Steered::new(100);
    let monitor = steered_monitor(&source);
    let health = HealthLayer::new(&monitor);
    let drain = health.drain_handle();
    let server = Server::axum(work_app(Arc::default()).layer(health)).await;
    let client = reqwest::Client::new();
    let ready = || async { get_json(&client, &server.url("/api/health/ready")).await };

    monitor.sample_now().await.unwrap();
    let (status, body) = ready().await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ready");

    source.set(800);
    monitor.sample_now().await.unwrap();
    let (status, body) = ready().await;
    assert_eq!(
        (status, body["pressure"].as_str().unwrap()),
        (200, "warning")
    );

    source.set(900);
    monitor.sample_now().await.unwrap();
    let (status, body) = ready().await;
    assert_eq!(status, 503);
    assert_eq!(body["reason"], "memory_critical");

    source.set(100);
    monitor.sample_now().await.unwrap();
    assert_eq!(ready().await.0, 200);

    assert!(drain.start());
    assert!(!drain.start());
    let (status, body) = ready().await;
    assert_eq!(status, 503);
    assert_eq!(body["reason"], "draining");
    assert_eq!(body["draining"], true);
    // Draining does not make the process unhealthy or dead.
    assert_eq!(
        get_json(&client, &server.url("/api/health/live")).await.0,
        200
    );
    assert_eq!(get_json(&client, &server.url("/api/health")).await.0, 200);
    // And the application keeps serving the requests that still arrive.
    let work = client.get(server.url("/api/work")).send().await.unwrap();
    assert_eq!(work.status(), 200);
}

#[tokio::test]
async fn liveness_reports_a_stalled_monitor() {
    let source = Steered::new(100);
    let monitor = MemoryMonitor::builder()
        .source(source.clone())
        .limit_bytes(1000)
        .reclaim_enabled(false)
        .check_interval(Duration::from_millis(20))
        .stall_after(Duration::from_millis(250))
        .build()
        .unwrap();
    let server = Server::axum(work_app(Arc::default()).layer(HealthLayer::new(&monitor))).await;
    let client = reqwest::Client::new();
    let live = || async { get_json(&client, &server.url("/api/health/live")).await };

    let (status, body) = live().await;
    assert_eq!(
        (status, body["status"].as_str().unwrap()),
        (200, "not_running")
    );
    monitor.start().unwrap();
    assert!(eventually(Duration::from_secs(5), || monitor.sample_counts().0 > 0).await);
    let (status, body) = live().await;
    assert_eq!((status, body["status"].as_str().unwrap()), (200, "alive"));

    source.block.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    let stalled = loop {
        let (status, body) = live().await;
        if status == 503 || Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(stalled.0, 503);
    assert_eq!(stalled.1["status"], "stalled");
    assert!(stalled.1["since_last_sample_seconds"].as_f64().unwrap() > 0.25);

    source.block.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, _) = live().await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "monitor did not recover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    monitor.stop();
}

#[tokio::test]
async fn shedding_refuses_work_before_the_handler_and_spares_health() {
    let source = Steered::new(100);
    let monitor = steered_monitor(&source);
    let calls = Arc::new(AtomicUsize::new(0));
    // Shedding outermost, so that the health paths reach it and must be exempt.
    let app = work_app(Arc::clone(&calls))
        .layer(HealthLayer::new(&monitor))
        .layer(PressureShedLayer::new(&monitor).retry_after(Duration::from_millis(1500)));
    let server = Server::axum(app).await;
    let client = reqwest::Client::new();

    monitor.sample_now().await.unwrap();
    assert_eq!(
        client
            .get(server.url("/api/work"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    source.set(900);
    monitor.sample_now().await.unwrap();
    for _ in 0..5 {
        let response = client.get(server.url("/api/work")).send().await.unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "2");
        assert!(response.headers().get("x-handler").is_none());
        let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert_eq!(body["reason"], "critical");
        assert_eq!(body["retry_after_seconds"], 2);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the handler never ran");

    // The probes answer as the health layer decides, not as the shedder would.
    let (status, body) = get_json(&client, &server.url("/api/health/live")).await;
    assert_eq!(
        (status, body["status"].as_str().unwrap()),
        (200, "not_running")
    );
    let (status, body) = get_json(&client, &server.url("/api/health/ready")).await;
    assert_eq!(
        (status, body["reason"].as_str().unwrap()),
        (503, "memory_critical")
    );
    let (status, body) = get_json(&client, &server.url("/api/health")).await;
    assert_eq!(
        (status, body["status"].as_str().unwrap()),
        (503, "critical")
    );

    source.set(100);
    monitor.sample_now().await.unwrap();
    assert_eq!(
        client
            .get(server.url("/api/work"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn proportional_shedding_between_the_thresholds() {
    let source = Steered::new(100);
    let monitor = steered_monitor(&source);
    let calls = Arc::new(AtomicUsize::new(0));
    let app = work_app(Arc::clone(&calls))
        .layer(PressureShedLayer::new(&monitor).proportional(1.0))
        .layer(HealthLayer::new(&monitor));
    let server = Server::axum(app).await;
    let client = reqwest::Client::new();
    let count = |n: usize| {
        let client = client.clone();
        let url = server.url("/api/work");
        async move {
            let mut shed = 0;
            for _ in 0..n {
                let r = client.get(&url).send().await.unwrap();
                if r.status() == 503 {
                    assert!(r.headers().contains_key("retry-after"));
                    let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
                    assert_eq!(body["reason"], "proportional");
                    shed += 1;
                } else {
                    assert_eq!(r.status(), 200);
                }
            }
            shed
        }
    };
    // Halfway between warning (0.75) and critical (0.85): half the requests.
    source.set(800);
    monitor.sample_now().await.unwrap();
    assert_eq!(count(40).await, 20);
    // A quarter of the way: a quarter.
    source.set(775);
    monitor.sample_now().await.unwrap();
    assert_eq!(count(40).await, 10);
    // Normal: none.
    source.set(500);
    monitor.sample_now().await.unwrap();
    assert_eq!(count(20).await, 0);
    assert_eq!(calls.load(Ordering::SeqCst), 20 + 30 + 20);
    // Without `proportional`, Warning sheds nothing.
    let plain = work_app(Arc::default()).layer(PressureShedLayer::new(&monitor));
    let plain = Server::axum(plain).await;
    source.set(840);
    monitor.sample_now().await.unwrap();
    for _ in 0..10 {
        assert_eq!(
            client
                .get(plain.url("/api/work"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
}

#[tokio::test]
async fn other_paths_pass_through_untouched() {
    let source = Steered::new(100);
    let monitor = steered_monitor(&source);
    let app = work_app(Arc::default())
        .route("/api/health-check", get(|| async { "app's own" }))
        .route("/api/echo", post(|body: Bytes| async move { body }))
        .layer(HealthLayer::new(&monitor));
    let server = Server::axum(app).await;
    let client = reqwest::Client::new();

    let r = client.get(server.url("/api/work")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-handler"], "work");
    assert_eq!(r.text().await.unwrap(), "done");
    let r = client
        .get(server.url("/api/health-check"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "app's own");
    let payload = vec![7u8; 300_000];
    let r = client
        .post(server.url("/api/echo"))
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap(), payload);
    for path in [
        "/api/healthz",
        "/api/health/",
        "/health",
        "/api/metrics",
        "/api/nope",
    ] {
        let r = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path} belongs to the inner router");
    }
    let r = client.post(server.url("/api/health")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
}

#[tokio::test]
async fn the_prefix_is_configurable() {
    let source = Steered::new(100);
    let monitor = steered_monitor(&source);
    let root =
        Server::axum(work_app(Arc::default()).layer(HealthLayer::new(&monitor).prefix("/"))).await;
    let other = Server::axum(
        work_app(Arc::default()).layer(HealthLayer::new(&monitor).prefix("internal/")),
    )
    .await;
    let client = reqwest::Client::new();
    assert_eq!(get_json(&client, &root.url("/health/ready")).await.0, 200);
    assert_eq!(
        get_json(&client, &other.url("/internal/health/ready"))
            .await
            .0,
        200
    );
    assert_eq!(
        client
            .get(root.url("/api/health"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        HealthLayer::new(&monitor).prefix("internal/").prefix_path(),
        "/internal"
    );
}

#[tokio::test]
async fn metrics_scrape_passes_promtool() {
    let metrics = PrometheusMetrics::install().unwrap();
    let source = Steered::new(100);
    let monitor = MemoryMonitor::builder()
        .source(source.clone())
        .limit_bytes(1000)
        .reclaimer(
            tower_memory_probe::Reclaimer::builder()
                .min_interval(Duration::ZERO)
                .build(),
        )
        .build()
        .unwrap();
    let app = work_app(Arc::default())
        .layer(PressureShedLayer::new(&monitor))
        .layer(HealthLayer::new(&monitor).metrics(metrics.clone()));
    let server = Server::axum(app).await;
    let client = reqwest::Client::new();

    // Enter Critical (a reclaim runs), shed a request, come back.
    source.set(900);
    monitor.sample_now().await.unwrap();
    assert_eq!(
        client
            .get(server.url("/api/work"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    let critical = client.get(server.url("/api/metrics")).send().await.unwrap();
    assert_eq!(critical.status(), 200);
    assert!(
        critical.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = critical.text().await.unwrap();
    assert!(text.contains("memory_pressure_level 2"), "{text}");
    assert!(text.contains("memory_usage_ratio 0.9"), "{text}");
    assert!(text.contains("memory_limit_bytes 1000"), "{text}");
    assert!(
        text.contains("memory_reclaim_runs_total{trigger=\"critical\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("memory_reclaim_duration_seconds_count{trigger=\"critical\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("memory_shed_requests_total{reason=\"critical\"}"),
        "{text}"
    );

    source.set(100);
    monitor.sample_now().await.unwrap();
    let text = client
        .get(server.url("/api/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "memory_process_peak_resident_bytes",
        "memory_usage_bytes",
        "memory_limit_bytes",
        "memory_usage_ratio",
        "memory_pressure_level",
        "memory_warning_threshold_ratio",
        "memory_critical_threshold_ratio",
        "memory_allocator_info",
        "memory_growth_window_seconds",
        "memory_leak_suspected",
        "memory_reclaim_runs_total",
        "memory_reclaim_released_bytes_total",
        "memory_reclaim_last_duration_seconds",
        "memory_reclaim_duration_seconds",
        "memory_monitor_samples_total",
        "memory_monitor_last_sample_timestamp_seconds",
        "memory_monitor_live",
        "memory_pressure_changes_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing from:\n{text}"
        );
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no help"
        );
    }
    assert!(text.contains("memory_pressure_level 0"), "{text}");
    let rss_line = text
        .lines()
        .find(|l| l.starts_with("process_resident_memory_bytes "))
        .unwrap();
    let rss: f64 = rss_line.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(rss > 1e6, "{rss_line}");

    if std::env::var_os("MEMORY_HEALTH_PRINT_METRICS").is_some() {
        println!("{text}");
    }
    // promtool (Debian's `prometheus` package) lints the exposition.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &text).unwrap();
    let output = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(file.path()).unwrap())
        .output()
        .expect("promtool must be installed (apt-get install prometheus)");
    assert!(
        output.status.success(),
        "promtool: {}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stdout.is_empty() && output.stderr.is_empty(),
        "{output:?}"
    );
    // Installing again hands back the same recorder.
    let again = PrometheusMetrics::install().unwrap();
    assert!(again.render(None).contains("memory_pressure_level"));
}

/// A plain hyper server with a tower stack (no axum) whose inner service is saturated: the probes
/// still answer at once, because the health service never waits for the inner one's readiness.
#[tokio::test]
async fn probes_are_not_blocked_by_a_saturated_inner_service() {
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceBuilder;

    let source = Steered::new(100);
    let monitor = steered_monitor(&source);
    let release = Arc::new(tokio::sync::Notify::new());
    let entered = Arc::new(AtomicUsize::new(0));
    let (release2, entered2) = (Arc::clone(&release), Arc::clone(&entered));
    let service = ServiceBuilder::new()
        .layer(HealthLayer::new(&monitor).prefix("/"))
        .concurrency_limit(1)
        .service_fn(move |_req: http::Request<Incoming>| {
            let (release, entered) = (Arc::clone(&release2), Arc::clone(&entered2));
            async move {
                entered.fetch_add(1, Ordering::SeqCst);
                release.notified().await;
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from_static(b"slow"))))
            }
        });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let client = reqwest::Client::new();
    let slow = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .get(format!("http://{addr}/slow"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    });
    assert!(
        eventually(Duration::from_secs(5), || entered.load(Ordering::SeqCst)
            == 1)
        .await
    );
    // The one permit is taken; a second application request waits...
    let queued = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .get(format!("http://{addr}/queued"))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!queued.is_finished());
    // ...but the probes do not.
    for path in ["/health/live", "/health/ready", "/health"] {
        let started = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(2),
            client.get(format!("http://{addr}{path}")).send(),
        )
        .await
        .expect("probe blocked behind the inner service")
        .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    release.notify_one();
    assert_eq!(slow.await.unwrap(), "slow");
    assert!(
        eventually(Duration::from_secs(5), || entered.load(Ordering::SeqCst)
            == 2)
        .await
    );
    release.notify_one();
    assert_eq!(queued.await.unwrap(), 200);
    accept.abort();
}

/// With `heap-profile` on but jemalloc not the global allocator (this binary runs on glibc), the
/// endpoint exists, guards itself and answers 501.
#[cfg(feature = "heap-profile")]
#[tokio::test]
async fn heap_profile_without_jemalloc_is_not_implemented() {
    let source = Steered::new(100);
    let monitor = steered_monitor(&source);
    let token = "a-sufficiently-long-token";
    let with = Server::axum(
        work_app(Arc::default()).layer(HealthLayer::new(&monitor).heap_profile_token(token)),
    )
    .await;
    let without = Server::axum(work_app(Arc::default()).layer(HealthLayer::new(&monitor))).await;
    let client = reqwest::Client::new();
    let url = "/api/debug/pprof/heap";
    assert_eq!(
        client.get(without.url(url)).send().await.unwrap().status(),
        404
    );
    assert_eq!(
        client.get(with.url(url)).send().await.unwrap().status(),
        401
    );
    let r = client
        .get(with.url(url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 501);
    let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert!(body["error"].as_str().unwrap().contains("glibc"), "{body}");
    assert!(matches!(
        tower_memory_health::write_heap_profile(std::env::temp_dir().join("never-written.pb.gz")),
        Err(tower_memory_health::HeapProfileError::NotJemalloc(_))
    ));
}
