//! `/debug/pprof/heap` with jemalloc profiling on: the auth cases, a profile that decodes as a
//! pprof protobuf and accounts for a buffer the test holds, `write_heap_profile`, and 501 while
//! profiling is paused. This binary runs on jemalloc with `prof:true,prof_active:true`.

use std::hint::black_box;
use std::io::Read;
use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tower_memory_health::{HealthLayer, MemoryMonitor, heap_profiling_status, write_heap_profile};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads its options from this symbol at start-up (the `_rjem_` prefix of
/// tikv-jemalloc-sys). Sampling every 512 KiB on average.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 45] = b"prof:true,prof_active:true,lg_prof_sample:19\0";

const TOKEN: &str = "heap-profile-test-token-0123456789";

/// The pprof messages and fields this test reads (profile.proto of google/pprof).
mod pprof {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
        #[prost(message, optional, tag = "11")]
        pub period_type: Option<ValueType>,
        #[prost(int64, tag = "12")]
        pub period: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct ValueType {
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Sample {
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub memory_start: u64,
        #[prost(uint64, tag = "3")]
        pub memory_limit: u64,
        #[prost(int64, tag = "5")]
        pub filename: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
    }
}

fn decode(gzipped: &[u8]) -> pprof::Profile {
    use prost::Message;
    assert_eq!(&gzipped[..2], &[0x1f, 0x8b], "gzip magic");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gzipped)
        .read_to_end(&mut raw)
        .unwrap();
    pprof::Profile::decode(raw.as_slice()).expect("a pprof Profile message")
}

async fn serve(layer: HealthLayer) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route("/api/hello", get(|| async { "hello" }))
        .layer(layer);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, task)
}

fn set_active(active: bool) {
    tower_memory_probe::jemalloc_ctl::set_prof_active(active).unwrap();
}

#[tokio::test]
async fn heap_profile_endpoint() {
    heap_profiling_status().expect("this binary starts jemalloc with profiling");
    // A 64 MiB buffer held across the dump: the profile must account for it.
    let held = black_box(vec![1u8; 64 << 20]);

    let monitor = MemoryMonitor::builder().build().unwrap();
    let (addr, server) = serve(HealthLayer::new(&monitor).heap_profile_token(TOKEN)).await;
    let url = format!("http://{addr}/api/debug/pprof/heap");
    let client = reqwest::Client::new();

    // No header, another scheme, a wrong token, a prefix of the token, an empty one: 401.
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"heap-profile\""
    );
    for auth in [
        format!("Basic {TOKEN}"),
        "Bearer wrong-token".to_string(),
        format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
        format!("Bearer {TOKEN}x"),
        "Bearer ".to_string(),
        TOKEN.to_string(),
    ] {
        let r = client
            .get(&url)
            .header("authorization", &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
    }
    let r = client
        .get(&url)
        .header("authorization", "Bearer wrong-token")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    // The right token (scheme in any case): the profile.
    let r = client
        .get(&url)
        .header("authorization", format!("bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let body = r.bytes().await.unwrap();
    let profile = decode(&body);
    let strings = &profile.string_table;
    assert_eq!(strings[0], "", "string 0 is always empty");
    let st = &profile.sample_type[0];
    assert_eq!(
        (
            strings[st.r#type as usize].as_str(),
            strings[st.unit as usize].as_str()
        ),
        ("inuse_space", "bytes")
    );
    assert!(!profile.sample.is_empty());
    assert!(!profile.location.is_empty());
    assert!(!profile.mapping.is_empty());
    let inuse: i64 = profile.sample.iter().map(|s| s.value[0]).sum();
    assert!(
        inuse >= 60 << 20,
        "profile accounts for {inuse} bytes in use while 64 MiB are held"
    );
    // Every sample's stack points at known locations.
    let ids: std::collections::HashSet<u64> = profile.location.iter().map(|l| l.id).collect();
    assert!(
        profile
            .sample
            .iter()
            .all(|s| !s.location_id.is_empty() && s.location_id.iter().all(|id| ids.contains(id)))
    );

    // The same profile for programs, written to a file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("heap.pb.gz");
    let written = tokio::task::spawn_blocking({
        let path = path.clone();
        move || write_heap_profile(&path)
    })
    .await
    .unwrap()
    .unwrap();
    let file = std::fs::read(&path).unwrap();
    assert_eq!(file.len() as u64, written);
    assert!(!decode(&file).sample.is_empty());

    // Paused profiling: 501, with the reason.
    set_active(false);
    let r = client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 501);
    let text = r.text().await.unwrap();
    assert!(text.contains("not active"), "{text}");
    // Even then, a wrong token learns nothing about the profiler's state.
    let r = client.get(&url).bearer_auth("nope").send().await.unwrap();
    assert_eq!(r.status(), 401);
    set_active(true);
    let r = client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Other paths are untouched.
    let hello = client
        .get(format!("http://{addr}/api/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(hello.text().await.unwrap(), "hello");

    drop(held);
    server.abort();
}

#[tokio::test]
async fn no_token_configured_is_404() {
    let monitor = MemoryMonitor::builder().build().unwrap();
    let (addr, server) = serve(HealthLayer::new(&monitor)).await;
    let r = reqwest::Client::new()
        .get(format!("http://{addr}/api/debug/pprof/heap"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    server.abort();
}
