//! `/metrics` served from a recorder the application installed itself, with a metric prefix and
//! without the process gauges: the application's metrics and this workspace's (prefixed) in one
//! scrape through a real server. Alone in its binary: it installs the global recorder and fixes
//! the process-wide prefix.

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::net::TcpListener;
use tower_memory_health::{HealthLayer, MemoryMonitor, PrometheusMetrics, Upkeep};
use tower_memory_interceptor::MemoryInterceptorLayer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_recorder_serves_both_and_the_prefix_keeps_them_apart() {
    // Before anything of the workspace is built, as the docs say.
    tower_memory_probe::set_metric_prefix("myapp").unwrap();
    // The application's own recorder and metrics, one of them named like one of ours.
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .expect("the first recorder");
    metrics::counter!("app_logins_total").increment(3);
    metrics::gauge!("memory_usage_bytes").set(42.0);

    let monitor = MemoryMonitor::builder()
        .process_metrics(false)
        .build()
        .unwrap();
    monitor.sample_now().await.unwrap();
    let metrics = PrometheusMetrics::from_handle(handle, Upkeep::Spawn);
    let app = Router::new()
        .route("/work", get(|| async { vec![7u8; 64 << 10] }))
        .layer(
            MemoryInterceptorLayer::new()
                .route_classifier(|_, uri| (uri.path() == "/work").then_some("/work")),
        )
        .layer(HealthLayer::new(&monitor).metrics(metrics));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client = reqwest::Client::new();
    for _ in 0..3 {
        let body = client
            .get(format!("http://{addr}/work"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.len(), 64 << 10);
    }
    // The report comes when the server drops the body: poll the scrape until it shows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let response = client
            .get(format!("http://{addr}/api/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        if text.contains("myapp_http_request_allocated_bytes_count{method=\"GET\",route=\"/work\",status=\"200\"} 3") {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "three /work requests never showed in the scrape:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    server.abort();

    let lines: Vec<&str> = text.lines().collect();
    let has = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
    // The application's metrics, names untouched.
    assert!(has("app_logins_total 3"), "{text}");
    assert!(has("memory_usage_bytes 42"), "{text}");
    // The workspace's, prefixed: the monitor's gauges, their descriptions, the interceptor's
    // histograms.
    assert!(has("myapp_memory_usage_bytes "), "{text}");
    assert!(has("myapp_memory_pressure_level 0"), "{text}");
    assert!(has("# HELP myapp_memory_usage_bytes "), "{text}");
    assert!(
        has("myapp_http_request_net_allocated_bytes_count"),
        "{text}"
    );
    // Nothing of the workspace unprefixed, and no process gauges (turned off).
    for line in &lines {
        let name = line
            .trim_start_matches("# HELP ")
            .trim_start_matches("# TYPE ")
            .split([' ', '{'])
            .next()
            .unwrap_or_default();
        let ours_unprefixed = name.starts_with("http_")
            || name.starts_with("process_")
            || (name.starts_with("memory_") && name != "memory_usage_bytes");
        assert!(!ours_unprefixed, "unprefixed or unwanted: {line}");
    }
}
