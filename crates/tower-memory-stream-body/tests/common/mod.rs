//! Real servers on 127.0.0.1 and hand-written HTTP/1 clients for the layer's tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use test_support::chunk;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_memory_stream_body::{BodyMode, MemoryBudget, StreamBodyLayer};

/// What `/inspect` saw of its body.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub(crate) struct Seen {
    pub mode: String,
    pub frames: usize,
    pub max_frame: usize,
    pub total: u64,
    pub sha256: String,
    /// Budget bytes in use when the handler started.
    pub budget_in_use: u64,
}

#[derive(Clone)]
struct AppState {
    budget: MemoryBudget,
}

/// `/inspect` reads its body frame by frame and reports it (500 on a body error);
/// `/ignore-errors` reads and answers 200 whatever happened; `/panic` panics;
/// `/hang` never answers.
pub(crate) fn app(layer: StreamBodyLayer) -> Router {
    let state = AppState {
        budget: layer.budget().clone(),
    };
    Router::new()
        .route("/inspect", post(inspect))
        .route("/ignore-errors", post(ignore_errors))
        .route("/panic", post(panic_handler))
        .route("/hang", post(hang))
        .route("/swallow-and-sleep", post(swallow_and_sleep))
        .layer(layer)
        .with_state(state)
}

async fn inspect(State(state): State<AppState>, req: Request) -> Response {
    let budget_in_use = state.budget.in_use();
    let mode = format!("{:?}", req.extensions().get::<BodyMode>());
    let mut body = req.into_body();
    let mut hasher = Sha256::new();
    let (mut frames, mut max_frame, mut total) = (0, 0, 0u64);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    frames += 1;
                    max_frame = max_frame.max(data.len());
                    total += data.len() as u64;
                    hasher.update(data);
                }
            }
            Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }
    axum::Json(Seen {
        mode,
        frames,
        max_frame,
        total,
        sha256: hex::encode(hasher.finalize()),
        budget_in_use,
    })
    .into_response()
}

async fn ignore_errors(body: Body) -> &'static str {
    let _ = body.collect().await;
    "ok"
}

async fn panic_handler(body: Body) -> &'static str {
    let _ = body.collect().await;
    panic!("handler panics on purpose");
}

async fn swallow_and_sleep(body: Body) -> &'static str {
    let _ = body.collect().await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    "late"
}

async fn hang(_body: Body) -> &'static str {
    std::future::pending::<()>().await;
    "never"
}

/// Serves `app` on 127.0.0.1 with a free port; the server stops when the test's runtime does.
pub(crate) async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A parsed HTTP/1 response.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn seen(&self) -> Seen {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {} {}", self.status, self.text()))
    }
}

/// Reads one response (head, then a `Content-Length` body or everything up to EOF), within 10 s.
pub(crate) async fn read_response<R: AsyncRead + Unpin>(
    stream: &mut R,
) -> std::io::Result<RawResponse> {
    tokio::time::timeout(Duration::from_secs(10), read_response_inner(stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no response in 10 s"))?
}

async fn read_response_inner<R: AsyncRead + Unpin>(stream: &mut R) -> std::io::Result<RawResponse> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte up to the blank line: the rest of the stream belongs to the body or to the
    // next response.
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed after {} bytes of head", buf.len()),
            ));
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>().unwrap());
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            stream.read_exact(&mut body).await?;
        }
        None if (100..200).contains(&status) => {}
        None => {
            stream.read_to_end(&mut body).await?;
        }
    }
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

/// Whether the server closed the connection (EOF or reset) within `within`.
pub(crate) async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Connects and writes a request head.
pub(crate) async fn send_head(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Sends a complete request with a `Content-Length` body and reads the response.
pub(crate) async fn post_body(addr: SocketAddr, path: &str, body: &[u8]) -> RawResponse {
    let len = body.len().to_string();
    let mut stream = send_head(addr, path, &[("Content-Length", &len)]).await;
    stream.write_all(body).await.unwrap();
    read_response(&mut stream).await.unwrap()
}

/// Sends a chunked body in chunks of `chunk_len` and reads the response, reading while writing
/// (the server may answer before the body is done and close).
pub(crate) async fn post_chunked(
    addr: SocketAddr,
    path: &str,
    body: &[u8],
    chunk_len: usize,
) -> RawResponse {
    let stream = send_head(addr, path, &[("Transfer-Encoding", "chunked")]).await;
    let (mut read, mut write) = stream.into_split();
    let body = body.to_vec();
    let writer = tokio::spawn(async move {
        for piece in body.chunks(chunk_len) {
            if write.write_all(&chunk(piece)).await.is_err() {
                return;
            }
        }
        let _ = write.write_all(b"0\r\n\r\n").await;
        // Keep the write half open until the response is read.
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let response = read_response(&mut read).await.unwrap();
    writer.abort();
    response
}

/// Deterministic test data.
pub(crate) fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Waits (at most 5 s) until `budget` is whole again; false if it never is.
pub(crate) async fn budget_returns(budget: &MemoryBudget) -> bool {
    wait_until(|| budget.available() == budget.total()).await
}

/// Polls `cond` every 10 ms for at most 5 s.
pub(crate) async fn wait_until(cond: impl FnMut() -> bool) -> bool {
    test_support::eventually(Duration::from_secs(5), cond).await
}
