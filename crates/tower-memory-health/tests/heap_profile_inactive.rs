//! `/debug/pprof/heap` on jemalloc started without `prof:true`: 501, after the token check.

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tower_memory_health::{HealthLayer, HeapProfileError, MemoryMonitor, heap_profiling_status};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::test]
async fn profiling_off_is_not_implemented() {
    assert!(matches!(
        heap_profiling_status(),
        Err(HeapProfileError::NotEnabled)
    ));
    let token = "inactive-profile-token-0123456789";
    let monitor = MemoryMonitor::builder().build().unwrap();
    let app = Router::new()
        .route("/api/hello", get(|| async { "hello" }))
        .layer(HealthLayer::new(&monitor).heap_profile_token(token));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let url = format!("http://{addr}/api/debug/pprof/heap");
    let client = reqwest::Client::new();

    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    let r = client.get(&url).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 501);
    let text = r.text().await.unwrap();
    assert!(text.contains("prof:true"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        tower_memory_health::write_heap_profile(dir.path().join("heap.pb.gz")),
        Err(HeapProfileError::NotEnabled)
    ));
    assert!(!dir.path().join("heap.pb.gz").exists());
    server.abort();
}
