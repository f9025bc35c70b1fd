//! The axum extractors (feature `axum`) behind a real server: `SpooledBody` follows the layer's
//! `BodyMode`, its temporary file goes away on every failure, and `BodyMode` is extractable.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use common::*;
use sha2::{Digest, Sha256};
use test_support::chunk;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_memory_stream_body::{BodyMode, MemoryBudget, SpoolConfig, SpooledBody, StreamBodyLayer};

const KIB: usize = 1024;

#[derive(serde::Serialize, serde::Deserialize)]
struct Spooled {
    mode: Option<String>,
    spilled: bool,
    len: u64,
    sha256: String,
}

async fn describe(mode: Option<BodyMode>, body: &SpooledBody) -> Spooled {
    let mut reader = body.reader().await.unwrap();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 16 * KIB];
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Spooled {
        mode: mode.map(|m| format!("{m:?}")),
        spilled: body.is_spilled(),
        len: body.len(),
        sha256: hex::encode(hasher.finalize()),
    }
}

async fn spool(mode: Option<BodyMode>, body: SpooledBody) -> Json<Spooled> {
    Json(describe(mode, &body).await)
}

async fn spool_and_keep(
    State(kept): State<PathBuf>,
    body: SpooledBody,
) -> Result<Json<Spooled>, tower_memory_stream_body::SpoolError> {
    let seen = describe(None, &body).await;
    body.persist(kept.join(&seen.sha256)).await?;
    Ok(Json(seen))
}

async fn spool_then_panic(body: SpooledBody) -> &'static str {
    assert!(!body.is_empty());
    panic!("handler panics with a spooled body on purpose");
}

async fn mode_only(mode: BodyMode) -> String {
    format!("{mode:?}")
}

struct Fixture {
    addr: std::net::SocketAddr,
    budget: MemoryBudget,
    spool_dir: tempfile::TempDir,
    kept_dir: tempfile::TempDir,
}

/// 64 KiB threshold, 16 KiB chunks, 4 MiB max, idle 500 ms, spooling into a fresh directory.
async fn fixture() -> Fixture {
    // Under target/, on the build's disk: the spool refuses a tmpfs.
    let spool_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let kept_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let budget = MemoryBudget::new(1024 * KIB as u64);
    let layer = StreamBodyLayer::new()
        .max_body_size(4096 * KIB as u64)
        .buffer_threshold(64 * KIB as u64)
        .chunk_size(16 * KIB)
        .memory_budget(budget.clone())
        .idle_timeout(Duration::from_millis(500))
        .spool(SpoolConfig::new(spool_dir.path()).unwrap());
    let app = Router::new()
        .route("/spool", post(spool))
        .route("/keep", post(spool_and_keep))
        .route("/panic", post(spool_then_panic))
        .route("/mode", post(mode_only))
        .layer(layer)
        .route("/no-layer/spool", post(spool))
        .route("/no-layer/mode", post(mode_only))
        .with_state(kept_dir.path().to_owned());
    let addr = serve(app).await;
    Fixture {
        addr,
        budget,
        spool_dir,
        kept_dir,
    }
}

fn files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

async fn spool_dir_empties(dir: &Path) -> bool {
    wait_until(|| files(dir).is_empty()).await
}

#[tokio::test]
async fn buffered_bodies_stay_in_memory_streaming_ones_go_to_disk() {
    let f = fixture().await;
    let small = data(40 * KIB);
    let response = post_body(f.addr, "/spool", &small).await;
    let seen: Spooled = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(seen.mode.as_deref(), Some("Buffered { len: 40960 }"));
    assert!(!seen.spilled);
    assert_eq!(seen.sha256, sha256_hex(&small));

    let large = data(3000 * KIB + 7);
    let response = post_body(f.addr, "/spool", &large).await;
    let seen: Spooled = serde_json::from_slice(&response.body).unwrap();
    assert!(seen.mode.unwrap().starts_with("Streaming"));
    assert!(seen.spilled);
    assert_eq!(seen.len, large.len() as u64);
    assert_eq!(seen.sha256, sha256_hex(&large));

    // Unknown length crossing the threshold: the prefix read by the layer goes to disk first.
    let response = post_chunked(f.addr, "/spool", &large, 5 * KIB).await;
    let seen: Spooled = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(
        seen.mode.as_deref(),
        Some("Streaming { content_length: None }")
    );
    assert!(seen.spilled);
    assert_eq!(seen.sha256, sha256_hex(&large));

    // The temporary files went with the requests.
    assert!(spool_dir_empties(f.spool_dir.path()).await);
    assert!(budget_returns(&f.budget).await);
}

#[tokio::test]
async fn persist_keeps_the_upload_and_leaves_no_temporary_file() {
    let f = fixture().await;
    let large = data(2000 * KIB);
    let response = post_body(f.addr, "/keep", &large).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let kept = f.kept_dir.path().join(sha256_hex(&large));
    assert_eq!(std::fs::read(&kept).unwrap(), large);
    assert!(spool_dir_empties(f.spool_dir.path()).await);
}

#[tokio::test]
async fn client_disconnect_mid_upload_removes_the_temporary_file() {
    let f = fixture().await;
    let len = (4000 * KIB).to_string();
    let mut stream = send_head(f.addr, "/spool", &[("Content-Length", &len)]).await;
    stream.write_all(&data(1000 * KIB)).await.unwrap();
    // The temporary file exists while the upload runs...
    assert!(
        wait_until(|| files(f.spool_dir.path())
            .iter()
            .any(|n| n.starts_with(".spool-")))
        .await
    );
    drop(stream);
    // ...and is gone once the client is.
    assert!(
        spool_dir_empties(f.spool_dir.path()).await,
        "{:?}",
        files(f.spool_dir.path())
    );
    assert!(budget_returns(&f.budget).await);

    // Same with a chunked body whose first 64 KiB the layer read (and charged) before the switch.
    let mut stream = send_head(f.addr, "/spool", &[("Transfer-Encoding", "chunked")]).await;
    for piece in data(600 * KIB).chunks(8 * KIB) {
        stream.write_all(&chunk(piece)).await.unwrap();
    }
    assert!(wait_until(|| !files(f.spool_dir.path()).is_empty()).await);
    drop(stream);
    assert!(spool_dir_empties(f.spool_dir.path()).await);
    assert!(budget_returns(&f.budget).await);
}

#[tokio::test]
async fn failed_bodies_get_the_layers_status_and_leave_no_file() {
    let f = fixture().await;
    // Over the 4 MiB limit, chunked: 413.
    let response = post_chunked(f.addr, "/spool", &data(4200 * KIB), 64 * KIB).await;
    assert_eq!(response.status, 413, "{}", response.text());
    assert_eq!(response.header("connection"), Some("close"));
    assert!(spool_dir_empties(f.spool_dir.path()).await);

    // Shorter than declared, then silence: 408 after the idle timeout.
    let len = (1000 * KIB).to_string();
    let mut stream = send_head(f.addr, "/keep", &[("Content-Length", &len)]).await;
    stream.write_all(&data(500 * KIB)).await.unwrap();
    let response = read_response(&mut stream).await.unwrap();
    assert_eq!(response.status, 408, "{}", response.text());
    assert!(closed_by_server(&mut stream, Duration::from_secs(2)).await);
    assert!(spool_dir_empties(f.spool_dir.path()).await);
    assert!(files(f.kept_dir.path()).is_empty());

    // Shorter than declared, then the client closes its side: 400.
    let mut stream = send_head(f.addr, "/keep", &[("Content-Length", &len)]).await;
    stream.write_all(&data(500 * KIB)).await.unwrap();
    stream.shutdown().await.unwrap();
    let response = read_response(&mut stream).await.unwrap();
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(spool_dir_empties(f.spool_dir.path()).await);
    assert!(budget_returns(&f.budget).await);
}

#[tokio::test]
async fn a_panicking_handler_leaves_no_file_and_the_whole_budget() {
    let f = fixture().await;
    for body in [data(30 * KIB), data(700 * KIB)] {
        let len = body.len().to_string();
        let mut stream = send_head(f.addr, "/panic", &[("Content-Length", &len)]).await;
        stream.write_all(&body).await.unwrap();
        assert!(read_response(&mut stream).await.is_err());
        assert!(spool_dir_empties(f.spool_dir.path()).await);
        assert!(budget_returns(&f.budget).await);
    }
    assert_eq!(post_body(f.addr, "/mode", b"ok").await.status, 200);
}

#[tokio::test]
async fn body_mode_extractor_with_and_without_the_layer() {
    let f = fixture().await;
    let response = post_body(f.addr, "/mode", b"abc").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "Buffered { len: 3 }");
    let response = post_body(f.addr, "/no-layer/mode", b"abc").await;
    assert_eq!(response.status, 500);
    assert!(response.text().contains("StreamBodyLayer"));
    // Without the layer the spool uses its own threshold (1 MiB by default) in the system
    // temporary directory.
    let body = data(100 * KIB);
    let response = post_body(f.addr, "/no-layer/spool", &body).await;
    if tower_memory_stream_body::is_memory_backed(&std::env::temp_dir()).unwrap() {
        // A tmpfs temporary directory is refused: the route has no usable spool.
        assert_eq!(response.status, 500, "{}", response.text());
        assert!(response.text().contains("tmpfs"));
        return;
    }
    let seen: Spooled = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(seen.mode, None);
    assert!(!seen.spilled);
    assert_eq!(seen.sha256, sha256_hex(&body));
}
