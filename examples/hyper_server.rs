//! The same layers over a plain hyper 1 server (hyper-util), no axum.
//!
//! ```sh
//! cargo run --release --example hyper_server --features full
//! ```
//!
//! Listens on 127.0.0.1:5000 (`BIND`, `PORT`), serves `GET /api/hello`, `GET /api/documents`
//! (a 256 KiB JSON array), `POST /api/echo-size` (reads the request body frame by frame and
//! answers its size and SHA-256) and the health routes under `/api`; HTTP/1 and HTTP/2 (h2c).
//! Without axum there is no `MatchedPath`: the interceptor is told the routes by a classifier.

#[path = "server/shutdown.rs"]
mod shutdown;

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use sha2::{Digest, Sha256};
use tower::ServiceBuilder;
use tower_memory::stack::MemoryStack;
use tower_memory_health::PrometheusMetrics;
use tower_memory_stream_body::BoxError;

use shutdown::shutdown_signal;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Route labels: fixed strings, so random paths cannot create new metric series.
fn route(_: &Method, uri: &Uri) -> Option<&'static str> {
    match uri.path() {
        "/api/hello" => Some("/api/hello"),
        "/api/documents" => Some("/api/documents"),
        "/api/echo-size" => Some("/api/echo-size"),
        _ => None,
    }
}

fn documents() -> Bytes {
    let items: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                r#"{{"id":{i},"name":"document {i}","created_at":"2026-11-{:02}T10:{:02}:00Z","tags":["memory","tower","{}"],"size":{}}}"#,
                1 + i % 28,
                i % 60,
                if i % 2 == 0 { "even" } else { "odd" },
                i * 37 % 10_000,
            )
        })
        .collect();
    Bytes::from(format!("[{}]", items.join(",")))
}

async fn handle<B>(request: Request<B>) -> Result<Response<Full<Bytes>>, BoxError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let response = match (request.method(), request.uri().path()) {
        (&Method::GET, "/api/hello") => Response::new(Full::new(Bytes::from_static(b"hello"))),
        (&Method::GET, "/api/documents") => Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(documents()))?,
        (&Method::POST, "/api/echo-size") => {
            // Frame by frame: the body layer hands a large body over in chunks, never whole.
            let mut body = std::pin::pin!(request.into_body());
            let (mut bytes, mut hasher) = (0u64, Sha256::new());
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.map_err(Into::into)?.into_data() {
                    bytes += data.len() as u64;
                    hasher.update(&data);
                }
            }
            let json = format!(
                r#"{{"bytes":{bytes},"sha256":"{}"}}"#,
                hex::encode(hasher.finalize())
            );
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(json)))?
        }
        _ => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(b"not found")))?,
    };
    Ok(response)
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
    // The whole stack from the configuration in one call (`MemoryStack`), as in the main job.
    let stack = stack
        .route_classifier(route)
        .ledger_routes(64)
        .metrics(PrometheusMetrics::install()?)
        .build()?;
    stack.start()?;
    let drain = stack.drain();

    let service = ServiceBuilder::new()
        .layer(stack.layer())
        .service_fn(handle);

    let bind: IpAddr = std::env::var("BIND")
        .unwrap_or_else(|_| "127.0.0.1".into())
        .parse()?;
    let port: u16 = std::env::var("PORT")
        .unwrap_or_else(|_| "5000".into())
        .parse()?;
    let mut shutdown = std::pin::pin!(shutdown_signal());
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(bind, port)).await?;
    println!("listening on http://{}", listener.local_addr()?);

    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        eprintln!("accept failed: {e}");
                        continue;
                    }
                };
                let connection = builder
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service.clone()))
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drain.start();
    drop(listener);
    // In-flight requests finish; idle keep-alive connections close at once.
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(std::time::Duration::from_secs(20)) => eprintln!("drain timeout"),
    }
    stack.stop();
    Ok(())
}
