//! A tonic gRPC server with the whole stack (`MemoryStack`): health endpoints, shedding,
//! per-request allocation accounting, the memory governor and request-body limits. Compression
//! passes gRPC through: gRPC compresses messages itself (and tower-memory-compression skips
//! `application/grpc`).
//!
//! ```sh
//! cargo run --release --example tonic_server --features full
//! ```
//!
//! Listens on 127.0.0.1:50051 (`BIND`, `PORT`). Serves the standard gRPC health service
//! (`grpc.health.v1.Health`, from tonic-health: no protoc needed), whose overall status follows
//! memory pressure: `NOT_SERVING` under critical pressure and while draining on shutdown, so
//! gRPC-aware load balancers move traffic away exactly when `/api/health/ready` says 503. HTTP/1
//! is accepted too, so `curl http://127.0.0.1:50051/api/health` works.

#[path = "server/shutdown.rs"]
mod shutdown;

use std::net::{IpAddr, SocketAddr};

use http::{Method, Uri};
use tonic_health::ServingStatus;
use tower_memory::stack::MemoryStack;
use tower_memory_health::PrometheusMetrics;
use tower_memory_probe::Pressure;

use shutdown::shutdown_signal;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// gRPC paths are `/package.Service/Method`: a fixed set, so they can be labels as they are.
fn grpc_route(_: &Method, uri: &Uri) -> Option<&'static str> {
    match uri.path() {
        "/grpc.health.v1.Health/Check" => Some("/grpc.health.v1.Health/Check"),
        "/grpc.health.v1.Health/Watch" => Some("/grpc.health.v1.Health/Watch"),
        "/grpc.health.v1.Health/List" => Some("/grpc.health.v1.Health/List"),
        _ => None,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Every layer's variables (README, "Configuration"), read once.
    let stack = match MemoryStack::from_env() {
        Ok(stack) => stack,
        Err(e) => {
            eprintln!("configuration error: {e}");
            std::process::exit(2);
        }
    };
    // The whole stack from the configuration in one call, as in the main job. Compression and
    // request decompression pass gRPC through: gRPC compresses messages itself
    // (`grpc-encoding`), and tower-memory-compression skips `application/grpc`.
    let stack = stack
        .route_classifier(grpc_route)
        .ledger_routes(64)
        .max_body_size(64 << 20)
        .metrics(PrometheusMetrics::install()?)
        .build()?;
    stack.start()?;
    let monitor = stack.monitor().clone();
    let drain = stack.drain();

    // The gRPC health status mirrors readiness: pressure changes arrive through the signal.
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let mut pressure = monitor.signal().subscribe();
    let status_reporter = reporter.clone();
    let status_drain = drain.clone();
    tokio::spawn(async move {
        loop {
            let level = *pressure.borrow_and_update();
            let status = if level == Pressure::Critical || status_drain.is_draining() {
                ServingStatus::NotServing
            } else {
                ServingStatus::Serving
            };
            status_reporter.set_service_status("", status).await;
            if pressure.changed().await.is_err() {
                break;
            }
        }
    });

    let layers = stack.layer();

    let bind: IpAddr = std::env::var("BIND")
        .unwrap_or_else(|_| "127.0.0.1".into())
        .parse()?;
    let port: u16 = std::env::var("PORT")
        .unwrap_or_else(|_| "50051".into())
        .parse()?;
    let stop_signal = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(bind, port)).await?;
    println!("listening on http://{}", listener.local_addr()?);

    let shutdown = async move {
        stop_signal.await;
        drain.start();
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
    };
    tonic::transport::Server::builder()
        .accept_http1(true)
        .layer(layers)
        .add_service(health_service)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await?;
    stack.stop();
    Ok(())
}
