//! Upload server behind `StreamBodyLayer`: the routes the workspace's example server takes over,
//! and the server the benchmark drivers in `benches/` measure.
//!
//! ```sh
//! cargo run --release -p tower-memory-stream-body --features axum --example upload_server
//! ```
//!
//! - `POST /api/uploads`: the body goes to a file under `UPLOAD_DIR`; answers
//!   `{"bytes": n, "sha256": "..."}`.
//! - `POST /api/documents`: a JSON array, buffered; answers `{"received": count}`.
//!
//! Environment: `PORT` (default 5001, `0` for any free port), `UPLOAD_DIR` (default
//! `<temp dir>/stream-body-uploads`; must not be a tmpfs), `MODE`: `layer` (default) or
//! `baseline`: the same routes with axum's `Bytes` extractor and no layer, for comparison.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tikv_jemallocator::Jemalloc;
use tokio::io::AsyncReadExt;
use tower_memory_stream_body::{
    DEFAULT_BUFFER_THRESHOLD, SpoolConfig, SpoolError, SpooledBody, StreamBodyLayer,
};

#[global_allocator]
static GLOBAL: Jemalloc = Jemalloc;

#[derive(Clone)]
struct Uploads {
    dir: Arc<PathBuf>,
    next: Arc<AtomicU64>,
}

impl Uploads {
    /// A fresh file name under the upload directory.
    fn next_path(&self) -> PathBuf {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join(format!("upload-{}-{id:06}", std::process::id()))
    }
}

#[derive(Serialize)]
struct Uploaded {
    bytes: u64,
    sha256: String,
}

#[derive(Serialize)]
struct Received {
    received: usize,
}

/// Handler errors: the spool's own status (413/408/400 for a failed body, 500 for the disk).
enum AppError {
    Spool(SpoolError),
    Io(std::io::Error),
}

impl From<SpoolError> for AppError {
    fn from(e: SpoolError) -> Self {
        AppError::Spool(e)
    }
}

impl From<std::io::Error> for AppError {
    fn from(e: std::io::Error) -> Self {
        AppError::Io(e)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match self {
            AppError::Spool(e) => e.into_response(),
            AppError::Io(e) => {
                tracing::error!(error = %e, "upload failed");
                (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
            }
        }
    }
}

/// `POST /api/uploads` behind the layer: the body is spooled into the upload directory (a
/// large one straight to disk, one frame at a time), hashed from there, and renamed into place.
async fn upload(
    State(uploads): State<Uploads>,
    body: SpooledBody,
) -> Result<Json<Uploaded>, AppError> {
    let mut reader = body.reader().await?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let bytes = body.len();
    body.persist(uploads.next_path()).await?;
    Ok(Json(Uploaded {
        bytes,
        sha256: hex::encode(hasher.finalize()),
    }))
}

/// `POST /api/uploads` without the layer: axum's `Bytes` extractor holds the whole body.
async fn upload_buffered(
    State(uploads): State<Uploads>,
    body: Bytes,
) -> Result<Json<Uploaded>, AppError> {
    let sha256 = hex::encode(Sha256::digest(&body));
    let bytes = body.len() as u64;
    let path = uploads.next_path();
    tokio::task::spawn_blocking(move || std::fs::write(path, &body))
        .await
        .map_err(std::io::Error::other)??;
    Ok(Json(Uploaded { bytes, sha256 }))
}

/// `POST /api/documents`: a JSON array, buffered.
async fn documents(Json(docs): Json<Vec<serde_json::Value>>) -> Json<Received> {
    Json(Received {
        received: docs.len(),
    })
}

fn app(mode: &str, uploads: Uploads) -> Result<Router, Box<dyn std::error::Error>> {
    let router = match mode {
        "layer" => {
            // Spool into the upload directory itself, so that keeping an upload is a rename.
            let spool = SpoolConfig::new(uploads.dir.as_path())?;
            Router::new()
                .route("/api/uploads", post(upload))
                .route("/api/documents", post(documents))
                // Extractors that collect (`Json`) never hold more than the layer buffers.
                .layer(DefaultBodyLimit::max(DEFAULT_BUFFER_THRESHOLD as usize))
                .layer(StreamBodyLayer::new().spool(spool))
        }
        "baseline" => Router::new()
            .route("/api/uploads", post(upload_buffered))
            .route("/api/documents", post(documents))
            .layer(DefaultBodyLimit::disable()),
        other => return Err(format!("MODE={other:?}: expected layer or baseline").into()),
    };
    Ok(router.with_state(uploads))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .map_err(|_| format!("PORT={p:?} is not a port number"))?,
        Err(_) => 5001,
    };
    let dir = std::env::var_os("UPLOAD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("stream-body-uploads"));
    std::fs::create_dir_all(&dir)?;
    let mode = std::env::var("MODE").unwrap_or_else(|_| "layer".to_string());
    let uploads = Uploads {
        dir: Arc::new(dir),
        next: Arc::new(AtomicU64::new(0)),
    };
    let uploads_dir = uploads.dir.clone();
    let app = app(&mode, uploads)?;

    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    eprintln!("mode {mode}, uploads in {}", uploads_dir.display());
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
        })
        .await?;
    Ok(())
}
