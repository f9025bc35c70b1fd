//! A server wired the way tower-memory-health is meant to be used, and the target of
//! `benches/layers.sh`:
//!
//! - configuration from the environment (`MemoryConfig::from_env`, exits on a bad value);
//! - the monitor started unless `MEMORY_MONITORING_ENABLED=false`;
//! - `HealthLayer` outermost (probes never meet shedding), `PressureShedLayer` inside it;
//! - `/api/metrics` through the Prometheus recorder, `/api/debug/pprof/heap` when
//!   `HEAP_PROFILE_TOKEN` is set (feature `heap-profile`, jemalloc started with `prof:true`);
//! - on SIGTERM or Ctrl-C: readiness turns 503 (drain), the server keeps serving for
//!   `DRAIN_SECONDS` (default 5) so the load balancer can notice, then shuts down gracefully.
//!
//! `cargo run --release -p tower-memory-health --features jemalloc --example health_server`
//! Environment: `ADDR` (default 127.0.0.1:0; the bound address is printed), `BARE=1` serves the
//! same routes without the memory layers (the benchmark's baseline).

use std::time::Duration;

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use tokio::net::TcpListener;
use tower_memory_health::{HealthLayer, MemoryConfig, PressureShedLayer, PrometheusMetrics};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(serde::Deserialize)]
struct Work {
    /// KiB to allocate and touch while handling the request.
    kib: Option<usize>,
}

async fn work(Query(work): Query<Work>) -> String {
    let kib = work.kib.unwrap_or(0).min(64 << 10);
    let buffer = vec![1u8; kib << 10];
    format!("allocated {} bytes\n", std::hint::black_box(buffer).len())
}

#[tokio::main]
async fn main() {
    let config = match MemoryConfig::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("configuration error: {e}");
            std::process::exit(2);
        }
    };
    let app = Router::new()
        .route("/api/hello", get(|| async { "hello\n" }))
        .route("/api/work", get(work));

    let bare = std::env::var_os("BARE").is_some_and(|v| v == "1");
    let (app, drain, monitor) = if bare {
        (app, None, None)
    } else {
        let monitor = config
            .monitor_builder()
            .build()
            .expect("settings validated by MemoryConfig");
        if config.monitoring_enabled {
            monitor.start().expect("inside the runtime");
        }
        let health = HealthLayer::new(&monitor)
            .metrics(PrometheusMetrics::install().expect("the only recorder"));
        #[cfg(feature = "heap-profile")]
        let health = match &config.profile_token {
            Some(token) => health.heap_profile_token(token),
            None => health,
        };
        let drain = health.drain_handle();
        let app = app
            .layer(PressureShedLayer::new(&monitor).proportional(0.5))
            .layer(health);
        (app, Some(drain), Some(monitor))
    };

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&addr).await.expect("bind");
    println!("listening on {}", listener.local_addr().unwrap());
    let grace = std::env::var("DRAIN_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(5));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            if let Some(drain) = drain {
                drain.start();
                println!("draining for {grace:?}");
                tokio::time::sleep(grace).await;
            }
        })
        .await
        .expect("server");
    if let Some(monitor) = monitor {
        monitor.stop();
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
