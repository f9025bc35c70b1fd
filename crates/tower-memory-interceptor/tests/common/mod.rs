// Shared by the test binaries: the counting allocator, a report collector, real servers on
// 127.0.0.1 and a real HTTP client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower_memory_interceptor::MemoryReport;

// Without a counting allocator every figure reads zero.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

pub(crate) const KIB: u64 = 1 << 10;
pub(crate) const MIB: u64 = 1 << 20;

/// The accuracy bound of the issue: allocated in [n, 1.1 n + 64 KiB].
pub(crate) fn assert_within(allocated: u64, n: u64, what: &str) {
    let upper = n + n / 10 + 64 * KIB;
    assert!(
        allocated >= n && allocated <= upper,
        "{what}: allocated {allocated} not in [{n}, {upper}]"
    );
}

/// Collects the reports the layer emits.
#[derive(Clone, Default)]
pub(crate) struct Reports {
    inner: Arc<Mutex<Vec<MemoryReport>>>,
}

impl Reports {
    pub(crate) fn sink(&self) -> impl Fn(&MemoryReport) + Send + Sync + 'static {
        let inner = Arc::clone(&self.inner);
        move |r: &MemoryReport| inner.lock().unwrap().push(r.clone())
    }

    pub(crate) fn all(&self) -> Vec<MemoryReport> {
        self.inner.lock().unwrap().clone()
    }

    /// Reports whose path and query contain `needle`.
    pub(crate) fn matching(&self, needle: &str) -> Vec<MemoryReport> {
        self.all()
            .into_iter()
            .filter(|r| r.path_and_query.as_str().contains(needle))
            .collect()
    }

    /// Waits (bounded) until `n` reports match `needle`, and returns them.
    pub(crate) async fn wait_for(
        &self,
        needle: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<MemoryReport> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.matching(needle);
            if found.len() >= n {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} reports of {needle}: have {found:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A task that is aborted when dropped (servers die with their test).
pub(crate) struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves an axum router on 127.0.0.1 (port 0), with connect info.
pub(crate) async fn serve_axum(router: axum::Router) -> (SocketAddr, AbortOnDrop) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (addr, AbortOnDrop(task))
}

pub(crate) type HttpClient = Client<HttpConnector, Empty<Bytes>>;

pub(crate) fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET `http://addr{path}`; returns the response head and the whole body.
pub(crate) async fn fetch(
    client: &HttpClient,
    addr: SocketAddr,
    path: &str,
) -> (Response<()>, Bytes) {
    let req = Request::get(format!("http://{addr}{path}"))
        .body(Empty::new())
        .unwrap();
    let response = client.request(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (Response::from_parts(parts, ()), bytes)
}

pub(crate) async fn get_status(client: &HttpClient, addr: SocketAddr, path: &str) -> StatusCode {
    fetch(client, addr, path).await.0.status()
}

/// Reads a `size=` query parameter.
pub(crate) fn size_param(query: Option<&str>) -> usize {
    query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("size="))
        .and_then(|v| v.parse().ok())
        .expect("size= parameter")
}
