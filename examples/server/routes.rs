//! The example's handlers.

use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tower_memory_interceptor::RequestMemory;
use tower_memory_stream_body::{SpoolError, SpooledBody};

use crate::documents::documents_json;
use crate::shared::heavy_pages;
pub(crate) use crate::shared::{AppError, Uploads, events};

impl AppError {
    pub(crate) fn too_large(message: impl Into<String>) -> Self {
        AppError(StatusCode::PAYLOAD_TOO_LARGE, message.into())
    }
}

/// `GET /api/hello`
pub(crate) async fn hello() -> &'static str {
    "hello"
}

#[derive(Deserialize)]
pub(crate) struct DocumentsQuery {
    count: Option<usize>,
}

/// Most documents one request may ask for.
const MAX_DOCUMENTS: usize = 100_000;

/// `GET /api/documents?count=N`: N records (default 1000, about 256 KiB).
pub(crate) async fn list_documents(Query(q): Query<DocumentsQuery>) -> Result<Response, AppError> {
    let count = q.count.unwrap_or(1000);
    if count > MAX_DOCUMENTS {
        return Err(AppError::bad_request(format!(
            "count={count} is over the maximum of {MAX_DOCUMENTS}"
        )));
    }
    let body = documents_json(count);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Serialize)]
pub(crate) struct Received {
    received: usize,
}

/// `POST /api/documents`: a JSON array, buffered by the body layer.
pub(crate) async fn receive_documents(Json(docs): Json<Vec<serde_json::Value>>) -> Json<Received> {
    Json(Received {
        received: docs.len(),
    })
}

#[derive(Serialize)]
pub(crate) struct Uploaded {
    bytes: u64,
    sha256: String,
}

/// `POST /api/uploads`: the body is spooled into `UPLOAD_DIR` (a large one straight to disk, one
/// frame at a time), hashed from there in 64 KiB reads, and renamed into place. A failed body
/// answers with the status the body layer gave it (413, 408, 400).
pub(crate) async fn upload(
    State(uploads): State<Uploads>,
    body: SpooledBody,
) -> Result<Json<Uploaded>, SpoolError> {
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

#[derive(Deserialize)]
pub(crate) struct HeavyQuery {
    mib: Option<u64>,
    hold_ms: Option<u64>,
}

#[derive(Serialize)]
pub(crate) struct HeavyReport {
    mib: u64,
    bytes: u64,
    checksum: u64,
    /// What the interceptor has charged to this request so far.
    allocated_bytes: Option<u64>,
}

/// `GET /api/reports/heavy?mib=N&hold_ms=M` (default 64 MiB, at most 4096; hold 0 ms, at most
/// 60000): builds an N MiB report in memory, one MiB per step with an await between steps, holds
/// it M ms more (a report waiting on a slow dependency: what `/api/health` shows in flight), and
/// answers a summary. Over 50 MiB the
/// interceptor logs it as heavy and reclaims afterwards; over `MAX_REQUEST_MEMORY` it is aborted
/// with 503 at a poll boundary and its memory freed.
pub(crate) async fn heavy_report(
    Query(q): Query<HeavyQuery>,
    memory: Option<RequestMemory>,
) -> Result<Json<HeavyReport>, AppError> {
    let mib = q.mib.unwrap_or(64);
    if !(1..=4096).contains(&mib) {
        return Err(AppError::bad_request("mib must be between 1 and 4096"));
    }
    let hold = q.hold_ms.unwrap_or(0);
    if hold > 60_000 {
        return Err(AppError::bad_request("hold_ms must be at most 60000"));
    }
    let (pages, checksum) = heavy_pages(mib).await;
    if hold > 0 {
        tokio::time::sleep(Duration::from_millis(hold)).await;
    }
    let bytes = pages.iter().map(|p| p.len() as u64).sum();
    Ok(Json(HeavyReport {
        mib,
        bytes,
        checksum,
        allocated_bytes: memory.map(|m| m.allocated()),
    }))
}

/// `GET /api/faults/panic` (with `FAULT_ROUTES=true`): holds 4 MiB across an await, then panics,
/// as a handler with a bug would. The stack's CatchPanicLayer answers 500.
pub(crate) async fn panic() -> &'static str {
    let held = vec![1u8; 4 << 20];
    tokio::task::yield_now().await;
    if std::hint::black_box(held.len()) > 0 {
        panic!("a handler panicked (FAULT_ROUTES)");
    }
    "unreachable"
}
