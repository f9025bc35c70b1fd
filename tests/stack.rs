//! `MemoryStack` on a real axum server on 127.0.0.1, driven by curl: the light path (requests no
//! outer layer acts on) and the full path (health endpoints, encoded request bodies, shedding
//! under critical pressure) give the answers the six layers give.

mod support;

use std::io::Write;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use sha2::{Digest, Sha256};
use support::curl;
use tower_memory::health::MemoryConfig;
use tower_memory::interceptor::RequestMemory;
use tower_memory::probe::Pressure;
use tower_memory::stack::MemoryStack;
use tower_memory::stream_body::BodyMode;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn document() -> String {
    let items: Vec<String> = (0..2000)
        .map(|i| format!(r#"{{"id":{i},"name":"document {i}","tags":["a","b"]}}"#))
        .collect();
    format!("[{}]", items.join(","))
}

fn app(stack: &MemoryStack) -> Router {
    Router::new()
        .route("/api/hello", get(|| async { "hello" }))
        .route("/api/document", get(|| async { document() }))
        .route(
            "/api/mode",
            get(|mode: BodyMode, memory: RequestMemory| async move {
                format!("{mode:?} {}", memory.allocated() > 0)
            }),
        )
        .route(
            "/api/echo",
            post(|mode: BodyMode, body: Bytes| async move {
                let kind = if mode.is_buffered() {
                    "buffered"
                } else {
                    "streaming"
                };
                format!(
                    "{kind} {} {}",
                    body.len(),
                    hex::encode(Sha256::digest(&body))
                )
            }),
        )
        .layer(stack.layer())
}

/// Serves `stack` on a port of its own in a runtime of its own; returns the base URL.
fn serve(config: MemoryConfig) -> (String, std::sync::mpsc::Sender<()>, MemoryStack) {
    let (tx, rx) = std::sync::mpsc::channel::<(String, MemoryStack)>();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let runtime = test_support::runtime();
        runtime.block_on(async move {
            let stack = MemoryStack::builder(config).build().unwrap();
            stack.start().unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let router = app(&stack);
            tx.send((url, stack)).unwrap();
            let stop = tokio::task::spawn_blocking(move || {
                let _ = stop_rx.recv();
            });
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.await;
                })
                .await
                .unwrap();
        });
    });
    let (url, stack) = rx.recv().unwrap();
    (url, stop_tx, stack)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    // The stack's own decoder is tested elsewhere; encode with the system's gzip.
    let mut child = std::process::Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip runs");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

#[test]
fn light_and_full_paths_answer_as_the_six_layers_do() {
    let (url, stop, stack) = serve(MemoryConfig::default());
    assert_eq!(stack.monitor().pressure(), Pressure::Normal);

    // Light path: a plain GET.
    assert_eq!(curl(&[&format!("{url}/api/hello")]), (200, "hello".into()));
    // Light path: the extensions of the layers it skips nothing of.
    assert_eq!(
        curl(&[&format!("{url}/api/mode")]),
        (200, "Buffered { len: 0 } true".into())
    );
    // Light path: compression negotiated and applied.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-H",
            "Accept-Encoding: zstd",
        ])
        .arg(format!("{url}/api/document"))
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(headers.contains("content-encoding: zstd"), "{headers}");
    let (status, body) = curl(&["--compressed", &format!("{url}/api/document")]);
    assert_eq!((status, body.len()), (200, document().len()));

    // Light path: a plain body goes through the body layer.
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let plain = dir.path().join("plain.bin");
    std::fs::write(&plain, &data).unwrap();
    let expected = format!("buffered 4096 {}", hex::encode(Sha256::digest(&data)));
    let (status, body) = curl(&[
        "--data-binary",
        &format!("@{}", plain.display()),
        &format!("{url}/api/echo"),
    ]);
    assert_eq!((status, body), (200, expected.clone()));

    // Full path: an encoded body is decoded before the handler sees it (its length is then
    // unknown; the body layer reads up to its threshold and, finding the end, buffers it).
    let encoded = dir.path().join("body.gz");
    std::fs::write(&encoded, gzip(&data)).unwrap();
    let (status, body) = curl(&[
        "-H",
        "Content-Encoding: gzip",
        "--data-binary",
        &format!("@{}", encoded.display()),
        &format!("{url}/api/echo"),
    ]);
    assert_eq!((status, body), (200, expected));
    // Full path: an unknown coding is refused.
    let (status, _) = curl(&[
        "-H",
        "Content-Encoding: snappy",
        "--data-binary",
        "x",
        &format!("{url}/api/echo"),
    ]);
    assert_eq!(status, 415);
    // Full path: the health layer answers its own paths.
    let (status, body) = curl(&[&format!("{url}/api/health")]);
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    let routes: Vec<&str> = health["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["route"].as_str().unwrap())
        .collect();
    // Both paths report to the same ledger.
    for route in ["/api/hello", "/api/echo", "/api/document"] {
        assert!(routes.contains(&route), "{route} in {routes:?}");
    }
    assert_eq!(curl(&[&format!("{url}/api/health/live")]).0, 200);
    drop(stop);
}

#[test]
fn critical_pressure_sends_requests_through_the_shedding_layer() {
    // A limit far below what the process holds: the first sample is critical.
    let config = MemoryConfig::from_vars([
        ("MEMORY_LIMIT_BYTES", "4194304"),
        ("MEMORY_CHECK_INTERVAL", "1000"),
    ])
    .unwrap();
    let (url, stop, stack) = serve(config);
    for _ in 0..100 {
        if stack.monitor().pressure() == Pressure::Critical {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(stack.monitor().pressure(), Pressure::Critical);
    let out = std::process::Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null"])
        .arg(format!("{url}/api/hello"))
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(headers.starts_with("http/1.1 503"), "{headers}");
    assert!(headers.contains("retry-after:"), "{headers}");
    // Health paths are exempt: liveness answers, readiness says not ready.
    assert_eq!(curl(&[&format!("{url}/api/health/live")]).0, 200);
    assert_eq!(curl(&[&format!("{url}/api/health/ready")]).0, 503);
    drop(stop);
}
