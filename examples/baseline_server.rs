//! The baseline: `examples/server`'s routes written the way a typical axum service is written
//! today, with none of this workspace's layers. Benchmarks and tests compare the memory-aware
//! stack against it: how often a plain service is OOM-killed under bursts in a memory cgroup, and
//! what the whole stack costs or saves, request for request.
//!
//! ```sh
//! cargo run --release --features full --example baseline_server
//! ```
//!
//! Build it with the same features and profile as `examples/server` (`--features full`), so both
//! link the same jemalloc. Listens on 127.0.0.1:5001 (`BIND`, `PORT`; `PORT=0` picks a free port),
//! prints `listening on http://ADDR` first, and serves what the example server serves, with the
//! same parameters, limits and response bodies:
//!
//! - `GET /api/hello`
//! - `GET /api/documents?count=N`: the same generator (`examples/server/documents.rs`), so the
//!   same bytes for the same N
//! - `POST /api/documents`: `Json<Vec<serde_json::Value>>`, `{"received": count}`
//! - `POST /api/uploads`: the whole body as `Bytes` (up to `MAX_BODY_SIZE`, default 1 GiB), then
//!   written to a file in `UPLOAD_DIR`; `{"bytes": n, "sha256": "..."}`
//! - `GET /api/events?count=N&interval_ms=M`: server-sent events
//! - `GET /api/reports/heavy?mib=N`: the same N MiB report; `allocated_bytes` is always null
//! - `GET /api/health/live`: `ok`
//!
//! `BASELINE_LAYERS=none` drops tower-http's compression and decompression too: bare axum with
//! the same routes, the reference for what the whole stack costs per request (BENCHMARKS.md).
//!
//! Deliberately missing: per-request accounting and quotas, the memory governor and its budget,
//! body streaming and spooling (an upload is held in memory whole), bounded decompression
//! (tower-http's `RequestDecompressionLayer` has no ratio cap; only the body limit, counted in
//! decoded bytes, stops a bomb), memory-bounded compression (tower-http's `CompressionLayer` with
//! its defaults: brotli quality 11 and a 4 MiB window), the monitor, pressure shedding, readiness,
//! metrics, heap profiles, allocator reclaim and a drain timeout. It uses jemalloc as the example
//! server does, without heap profiling (the example turns that on for its pprof endpoint), so the
//! allocator is not what differs. On SIGTERM or SIGINT it stops accepting, lets in-flight requests
//! finish (an open event stream holds the exit until it ends) and exits 0.

// The exact generator of the example server, so both send the same payloads.
#[path = "server/documents.rs"]
mod documents;
// The uploads, the error answer and the event stream, as the example server has them.
#[path = "server/shared.rs"]
mod shared;
#[path = "server/shutdown.rs"]
mod shutdown;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tikv_jemallocator::Jemalloc;
use tower_http::compression::CompressionLayer;
use tower_http::decompression::RequestDecompressionLayer;

use shared::{AppError, Uploads, events, heavy_pages};
use shutdown::shutdown_signal;

#[global_allocator]
static GLOBAL: Jemalloc = Jemalloc;

/// The JSON body limit of `POST /api/documents`: the example server lets its `Json` extractor
/// take what its body layer buffers, `STREAM_BUFFER_THRESHOLD`, 10 MiB by default. The same limit
/// here gives the same request the same answer.
const JSON_LIMIT: usize = 10 << 20;

/// Most documents one request may ask for (as in the example server).
const MAX_DOCUMENTS: usize = 100_000;

struct Config {
    bind: IpAddr,
    port: u16,
    upload_dir: PathBuf,
    max_body_size: usize,
    /// tower-http's compression and decompression layers (`BASELINE_LAYERS`, `tower-http` or
    /// `none`).
    tower_http: bool,
}

fn var<T: FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(std::env::VarError::NotUnicode(v)) => Err(format!("{name}={v:?} is invalid")),
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is invalid")),
    }
}

impl Config {
    fn from_env() -> Result<Self, String> {
        let upload_dir = match std::env::var_os("UPLOAD_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            Some(_) => return Err("UPLOAD_DIR is empty".into()),
            // /var/tmp is on disk by convention; /tmp is often a tmpfs, where uploads would be
            // charged to the memory cgroup and skew the comparison (the example server avoids a
            // tmpfs too).
            None => PathBuf::from("/var/tmp/tower-memory-baseline-uploads"),
        };
        let config = Config {
            bind: var("BIND", IpAddr::from([127, 0, 0, 1]))?,
            port: var("PORT", 5001)?,
            upload_dir,
            max_body_size: var("MAX_BODY_SIZE", 1 << 30)?,
            tower_http: match std::env::var("BASELINE_LAYERS").as_deref() {
                Err(_) | Ok("tower-http") => true,
                Ok("none") => false,
                Ok(other) => {
                    return Err(format!(
                        "BASELINE_LAYERS={other:?} is invalid: tower-http or none"
                    ));
                }
            },
        };
        if config.max_body_size == 0 {
            return Err("MAX_BODY_SIZE must be above 0".into());
        }
        Ok(config)
    }
}

#[tokio::main]
async fn main() {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("configuration error: {e}");
            std::process::exit(2);
        }
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).init();
    if let Err(e) = serve(config).await {
        tracing::error!(error = %e, "server failed");
        std::process::exit(1);
    }
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    tokio::fs::create_dir_all(&config.upload_dir).await?;
    let app = Router::new()
        .route("/api/hello", get(hello))
        .route(
            "/api/documents",
            get(list_documents).post(receive_documents),
        )
        .route(
            "/api/uploads",
            // The usual fix for "413 on upload": raise axum's 2 MB default for this route.
            post(upload).layer(DefaultBodyLimit::max(config.max_body_size)),
        )
        .route("/api/events", get(events))
        .route("/api/reports/heavy", get(heavy_report))
        .route("/api/health/live", get(|| async { "ok" }))
        .with_state(Uploads::new(config.upload_dir.clone()))
        .layer(DefaultBodyLimit::max(JSON_LIMIT));
    let app = if config.tower_http {
        app.layer(RequestDecompressionLayer::new())
            .layer(CompressionLayer::new())
    } else {
        app
    };

    // Installed before the address is announced, so a signal right after it is not missed.
    let stop = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(config.bind, config.port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await?;
    tracing::info!("shut down");
    Ok(())
}

async fn hello() -> &'static str {
    "hello"
}

#[derive(Deserialize)]
struct DocumentsQuery {
    count: Option<usize>,
}

async fn list_documents(Query(q): Query<DocumentsQuery>) -> Result<Response, AppError> {
    let count = q.count.unwrap_or(1000);
    if count > MAX_DOCUMENTS {
        return Err(AppError::bad_request(format!(
            "count={count} is over the maximum of {MAX_DOCUMENTS}"
        )));
    }
    let body = documents::documents_json(count);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Serialize)]
struct Received {
    received: usize,
}

async fn receive_documents(Json(docs): Json<Vec<serde_json::Value>>) -> Json<Received> {
    Json(Received {
        received: docs.len(),
    })
}

#[derive(Serialize)]
struct Uploaded {
    bytes: u64,
    sha256: String,
}

/// The whole body in memory, hashed, written out in one call: the common way, and the reason a
/// burst of large uploads takes a plain service past its memory limit.
async fn upload(State(uploads): State<Uploads>, body: Bytes) -> Result<Json<Uploaded>, AppError> {
    let sha256 = hex::encode(Sha256::digest(&body));
    tokio::fs::write(uploads.next_path(), &body).await?;
    Ok(Json(Uploaded {
        bytes: body.len() as u64,
        sha256,
    }))
}

#[derive(Deserialize)]
struct HeavyQuery {
    mib: Option<u64>,
}

#[derive(Serialize)]
struct HeavyReport {
    mib: u64,
    bytes: u64,
    checksum: u64,
    /// Null: nothing here measures what a request allocates.
    allocated_bytes: Option<u64>,
}

/// The example server's heavy report: N pages of 1 MiB, every byte written, a yield between
/// pages. Nothing bounds it but the cgroup.
async fn heavy_report(Query(q): Query<HeavyQuery>) -> Result<Json<HeavyReport>, AppError> {
    let mib = q.mib.unwrap_or(64);
    if !(1..=4096).contains(&mib) {
        return Err(AppError::bad_request("mib must be between 1 and 4096"));
    }
    let (pages, checksum) = heavy_pages(mib).await;
    let bytes = pages.iter().map(|p| p.len() as u64).sum();
    Ok(Json(HeavyReport {
        mib,
        bytes,
        checksum,
        allocated_bytes: None,
    }))
}
