//! The HTTP framing paths of the whole stack: arbitrary bytes from a client into hyper's
//! HTTP/1.1 and HTTP/2 server (auto-detected) over an in-memory connection, through
//! `MemoryStack` (health, shedding, interceptor and governor, compression, decompression, body
//! limits) to a few axum routes. No panic anywhere; whatever comes back to an HTTP/1 client is an
//! HTTP/1 response; the connection ends once the client has; every budget byte is back.
//!
//! Time is paused (Tokio's test clock): timers fire as soon as nothing else can run, so slow-body
//! guards and budget waits cost no real time.

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use futures_util::StreamExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_memory::config::Config;
use tower_memory::probe::MemoryBudget;
use tower_memory::stack::MemoryStack;

/// Most response bytes read per case: enough for every route's answers to a few requests.
const MAX_OUTPUT: usize = 4 << 20;

struct Fixture {
    app: Router,
    budget: MemoryBudget,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // Small limits, so that short inputs reach them: bodies over 16 KiB stream, over 64 KiB
        // are refused, one 8 MiB budget (a route's first request reserves 1 MiB by itself).
        let config = Config::from_vars([
            ("MEMORY_REQUEST_BUDGET", "8388608"),
            ("STREAM_BUFFER_THRESHOLD", "16384"),
            ("STREAM_CHUNK_SIZE", "4096"),
            ("MEMORY_MONITORING_ENABLED", "false"),
        ])
        .expect("fixture configuration");
        let stack = MemoryStack::builder(config)
            .max_body_size(64 << 10)
            .max_request_memory(64 << 20)
            .build()
            .expect("fixture stack");
        let document: String = (0..200)
            .map(|i| format!("{{\"id\":{i},\"name\":\"record {i}\"}},"))
            .collect();
        let app = Router::new()
            .route("/hello", get(|| async { "hello" }))
            .route(
                "/docs",
                get(move || {
                    let doc = document.clone();
                    async move { ([("content-type", "application/json")], doc) }
                }),
            )
            .route(
                "/echo",
                post(|body: Bytes| async move { body.len().to_string() }),
            )
            .route(
                "/stream",
                post(|body: axum::body::Body| async move {
                    let mut total = 0usize;
                    let mut frames = body.into_data_stream();
                    while let Some(frame) = frames.next().await {
                        match frame {
                            Ok(data) => total += data.len(),
                            Err(_) => break,
                        }
                    }
                    total.to_string()
                }),
            )
            .layer(DefaultBodyLimit::max(16 << 10))
            .layer(stack.layer());
        Fixture {
            app,
            budget: stack.budget().clone(),
        }
    })
}

pub(crate) fn check(data: &[u8]) {
    crate::paused_runtime::block_on(run(data));
}

async fn run(data: &[u8]) {
    let fixture = fixture();
    let (mut client, server_io) = tokio::io::duplex(64 << 10);
    let service = TowerToHyperService::new(fixture.app.clone());
    let connection = tokio::spawn(async move {
        let _ = auto::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(server_io), service)
            .await;
    });
    let (mut read, mut write) = tokio::io::split(&mut client);
    let input = data.to_vec();
    let writing = async move {
        // The server may stop reading (an answer with `Connection: close`): not an error here.
        let _ = write.write_all(&input).await;
        // Then stay, as a client waiting for its answers would: hyper (like axum::serve) closes a
        // connection at once when the client half-closes. Two virtual minutes: past every
        // timeout of the stack (the body layer's idle timeout is 30 s).
        tokio::time::sleep(Duration::from_secs(120)).await;
        let _ = write.shutdown().await;
    };
    let reading = async move {
        let mut out = Vec::new();
        let mut buf = [0u8; 16 << 10];
        while out.len() < MAX_OUTPUT {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        out
    };
    let ((), output) = tokio::join!(writing, reading);
    drop(client);
    // The client is gone: the connection ends (virtual time, so a timer cannot stall it).
    match tokio::time::timeout(Duration::from_secs(600), connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(e)) => panic!("connection task: {e}"),
        Err(_) => panic!("the connection outlived its client by 600 s"),
    }
    let h2 = data.starts_with(b"PRI * HTTP/2.0");
    if !h2 && !output.is_empty() {
        assert!(
            output.starts_with(b"HTTP/1.1 ") || output.starts_with(b"HTTP/1.0 "),
            "not an HTTP/1 response: {:?}",
            String::from_utf8_lossy(&output[..output.len().min(64)])
        );
    }
    // Handlers' futures and bodies are dropped with the connection: nothing stays charged.
    for _ in 0..100 {
        if fixture.budget.in_use() == 0 && fixture.budget.queue_len() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "budget not back to full: {} bytes in use, {} queued",
        fixture.budget.in_use(),
        fixture.budget.queue_len()
    );
}
