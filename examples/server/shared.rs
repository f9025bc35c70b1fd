//! What the baseline server shares with the example server to the letter (`baseline_server`
//! includes this file, as it does `documents.rs`): where uploads go and how their files are
//! named, the `{"error": "..."}` answer, `GET /api/events` and the heavy report's pages. Same code, so the comparison
//! measures the layers and nothing else.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;

/// Where uploads are kept.
#[derive(Clone)]
pub(crate) struct Uploads {
    dir: Arc<PathBuf>,
    next: Arc<AtomicU64>,
}

impl Uploads {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir: Arc::new(dir),
            next: Arc::new(AtomicU64::new(0)),
        }
    }

    pub(crate) fn next_path(&self) -> PathBuf {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        self.dir.join(format!("upload-{nanos}-{id:06}"))
    }
}

/// A handler error with its status.
pub(crate) struct AppError(pub StatusCode, pub String);

impl AppError {
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        AppError(StatusCode::BAD_REQUEST, message.into())
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<std::io::Error> for AppError {
    fn from(e: std::io::Error) -> Self {
        tracing::error!(error = %e, "upload I/O failed");
        AppError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

#[derive(Deserialize)]
pub(crate) struct EventsQuery {
    count: Option<u64>,
    interval_ms: Option<u64>,
}

/// `GET /api/events?count=N&interval_ms=M`: N server-sent events, M ms apart (default 10 and
/// 1000; at most 10,000 events and 60 s apart).
pub(crate) async fn events(
    Query(q): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let count = q.count.unwrap_or(10);
    let interval_ms = q.interval_ms.unwrap_or(1000);
    if count > 10_000 || interval_ms > 60_000 {
        return Err(AppError::bad_request(
            "count must be at most 10000 and interval_ms at most 60000",
        ));
    }
    let interval = Duration::from_millis(interval_ms);
    let stream = futures_util::stream::unfold(0u64, move |seq| async move {
        if seq >= count {
            return None;
        }
        if seq > 0 {
            tokio::time::sleep(interval).await;
        }
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let data = serde_json::json!({ "seq": seq, "of": count, "unix_ms": at }).to_string();
        Some((Ok(Event::default().id(seq.to_string()).data(data)), seq + 1))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The heavy report's work: `mib` pages of 1 MiB, every byte written (the pages are resident, as a
/// real report's would be), a yield between pages; returns them and their checksum.
pub(crate) async fn heavy_pages(mib: u64) -> (Vec<Vec<u8>>, u64) {
    let mut pages: Vec<Vec<u8>> = Vec::with_capacity(mib as usize);
    let mut checksum = 0u64;
    for step in 0..mib {
        let page = vec![(step % 251) as u8; 1 << 20];
        checksum = checksum
            .wrapping_mul(31)
            .wrapping_add(page[page.len() / 2] as u64);
        pages.push(page);
        tokio::task::yield_now().await;
    }
    (pages, checksum)
}
