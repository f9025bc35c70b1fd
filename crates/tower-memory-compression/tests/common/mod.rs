//! Shared by the integration tests: a real hyper server on 127.0.0.1 (port 0), a raw hyper
//! client that shows the bytes on the wire, reqwest clients that decode, and a handler with
//! the routes the tests need.
#![allow(dead_code)] // each test binary uses a different part

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use test_support::json_doc;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceBuilder;
use tower_memory_compression::{BoxError, CompressionLayer, Encoding, RequestDecompressionLayer};
use tower_service::Service;

pub(crate) type ResBody = UnsyncBoxBody<Bytes, BoxError>;

/// Every coding the crate compresses with.
pub(crate) const CODINGS: [Encoding; 4] = [
    Encoding::Gzip,
    Encoding::Deflate,
    Encoding::Brotli,
    Encoding::Zstd,
];

/// Serves [`handler`] behind `layer` (and request decompression); returns the server, its call
/// counter and the epoch its event streams stamp times against.
pub(crate) async fn start_compression(layer: CompressionLayer) -> (TestServer, Calls, Instant) {
    let calls = Calls::default();
    let epoch = Instant::now();
    let counted = calls.clone();
    let service = ServiceBuilder::new()
        .layer(layer)
        .layer(RequestDecompressionLayer::new())
        .service_fn(move |request| handler(request, counted.clone(), epoch));
    (serve(service).await, calls, epoch)
}

/// A server that stops when dropped.
pub(crate) struct TestServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

pub(crate) async fn serve<S, B>(service: S) -> TestServer
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Runs until the TestServer is dropped (aborted).
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    TestServer { addr, task }
}

/// Sends one request on a fresh connection and returns the response as it arrives.
pub(crate) async fn open<B>(addr: SocketAddr, request: Request<B>) -> Response<Incoming>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender.send_request(request).await.unwrap()
}

/// A response read to the end, with its data frames as they came.
pub(crate) struct Raw {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub frames: Vec<Bytes>,
}

impl Raw {
    pub(crate) fn body(&self) -> Vec<u8> {
        self.frames.concat()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub(crate) fn encoding(&self) -> Option<&str> {
        self.header("content-encoding")
    }

    /// The body decoded per its `Content-Encoding` (with the crate's own decoder, no caps that
    /// matter here).
    pub(crate) fn decoded(&self) -> Vec<u8> {
        let codings: Vec<Encoding> = self
            .encoding()
            .map(|e| vec![Encoding::from_token(e).unwrap()])
            .unwrap_or_default();
        let limits = tower_memory_compression::DecodeLimits::default().max_ratio(0);
        tower_memory_compression::Decoder::decode_all(&codings, &self.body(), limits).unwrap()
    }
}

pub(crate) async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Raw {
    request(addr, "GET", path, headers, Bytes::new()).await
}

pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Raw {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string());
    for (k, v) in headers {
        builder = builder.header(k.to_string(), v.to_string());
    }
    let response = open(addr, builder.body(Full::new(body)).unwrap()).await;
    let (parts, mut body) = response.into_parts();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            frames.push(data);
        }
    }
    Raw {
        status: parts.status,
        headers: parts.headers,
        frames,
    }
}

/// A reqwest client that accepts (and decodes) exactly one coding.
pub(crate) fn client_for(encoding: Encoding) -> reqwest::Client {
    let b = reqwest::Client::builder();
    let b = match encoding {
        Encoding::Gzip => b.no_brotli().no_deflate().no_zstd(),
        Encoding::Deflate => b.no_brotli().no_gzip().no_zstd(),
        Encoding::Brotli => b.no_gzip().no_deflate().no_zstd(),
        Encoding::Zstd => b.no_brotli().no_deflate().no_gzip(),
        Encoding::Identity => b.no_brotli().no_deflate().no_gzip().no_zstd(),
        other => panic!("no client for {other}"),
    };
    b.build().unwrap()
}

fn query(request_uri: &http::Uri, key: &str) -> Option<String> {
    request_uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_owned())
    })
}

fn query_num(request_uri: &http::Uri, key: &str, default: u64) -> u64 {
    query(request_uri, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Counts calls of the handler.
#[derive(Clone, Default)]
pub(crate) struct Calls(pub Arc<AtomicUsize>);

impl Calls {
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// The handler. Routes:
/// - `/doc?size=N&ct=T` a JSON document (full body, known length), ETag `"v1"`,
///   `Accept-Ranges: bytes`, `Vary: Origin`
/// - `/stream?size=N&chunk=M&delay_ms=D&ct=T` the document in chunks of unknown total length
/// - `/sse?n=N&interval_ms=I&pad=P` Server-Sent Events stamped with microseconds since `epoch`
/// - `/status/CODE` an empty response with that status
/// - `/encoded` already gzip-encoded; `/range` a 206; `/no-transform`; `/grpc`; `/type?ct=T`
/// - `/echo` (POST) reads the whole body; answers its length and a checksum, or 422 with the
///   body error
pub(crate) async fn handler<B>(
    request: Request<B>,
    calls: Calls,
    epoch: Instant,
) -> Result<Response<ResBody>, Infallible>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Display,
{
    calls.0.fetch_add(1, Ordering::SeqCst);
    let uri = request.uri().clone();
    let size = query_num(&uri, "size", 256 * 1024) as usize;
    let ct = query(&uri, "ct")
        .map(|c| {
            c.replace("%2F", "/")
                .replace("%2B", "+")
                .replace("%3B", ";")
                .replace("%20", " ")
        })
        .unwrap_or_else(|| "application/json".to_owned());
    let full = |status: StatusCode, headers: &[(&str, &str)], body: Bytes| {
        let mut response = Response::new(Full::new(body).map_err(|e| match e {}).boxed_unsync());
        *response.status_mut() = status;
        for (k, v) in headers {
            response.headers_mut().append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        response
    };
    let path = uri.path().to_owned();
    let response = match path.as_str() {
        "/doc" => full(
            StatusCode::OK,
            &[
                ("content-type", &ct),
                ("etag", "\"v1\""),
                ("accept-ranges", "bytes"),
                ("vary", "Origin"),
            ],
            json_doc(size),
        ),
        "/stream" => {
            let chunk = query_num(&uri, "chunk", 8192).max(1) as usize;
            let delay = Duration::from_millis(query_num(&uri, "delay_ms", 0));
            let doc = json_doc(size);
            let (mut tx, body) = http_body_util::channel::Channel::<Bytes, BoxError>::new(4);
            tokio::spawn(async move {
                for piece in doc.chunks(chunk) {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    if tx.send_data(doc.slice_ref(piece)).await.is_err() {
                        return;
                    }
                }
            });
            let mut response = Response::new(body.boxed_unsync());
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_str(&ct).unwrap());
            response
        }
        "/sse" => {
            let n = query_num(&uri, "n", 10);
            let interval = Duration::from_millis(query_num(&uri, "interval_ms", 100));
            let pad = query_num(&uri, "pad", 200) as usize;
            let (mut tx, body) = http_body_util::channel::Channel::<Bytes, BoxError>::new(4);
            tokio::spawn(async move {
                for seq in 0..n {
                    if seq > 0 {
                        tokio::time::sleep(interval).await;
                    }
                    let sent = epoch.elapsed().as_micros();
                    let filler =
                        "{\"kind\":\"tick\",\"payload\":\"abcabcabc\"}".repeat(pad / 10 + 1);
                    let event = format!("id: {seq}\ndata: {sent} {}\n\n", &filler[..pad]);
                    if tx.send_data(Bytes::from(event)).await.is_err() {
                        return;
                    }
                }
            });
            let mut response = Response::new(body.boxed_unsync());
            response.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/event-stream"),
            );
            response
        }
        "/encoded" => full(
            StatusCode::OK,
            &[
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
            Bytes::from(tower_memory_compression::compress_to_vec(
                Encoding::Gzip,
                &json_doc(size),
            )),
        ),
        "/range" => full(
            StatusCode::PARTIAL_CONTENT,
            &[
                ("content-type", "application/json"),
                ("content-range", "bytes 0-4095/8192"),
            ],
            json_doc(4096),
        ),
        "/no-transform" => full(
            StatusCode::OK,
            &[
                ("content-type", "application/json"),
                ("cache-control", "public, no-transform"),
            ],
            json_doc(size),
        ),
        "/grpc" => full(
            StatusCode::OK,
            &[("content-type", "application/grpc+proto")],
            json_doc(size),
        ),
        "/type" => full(StatusCode::OK, &[("content-type", &ct)], json_doc(size)),
        "/echo" => {
            let body = request.into_body();
            match body.collect().await {
                Ok(collected) => {
                    let bytes = collected.to_bytes();
                    let sum = bytes
                        .iter()
                        .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(*b)));
                    full(
                        StatusCode::OK,
                        &[("content-type", "text/plain")],
                        Bytes::from(format!("len={} sum={sum}", bytes.len())),
                    )
                }
                Err(e) => full(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &[("content-type", "text/plain")],
                    Bytes::from(format!("body error: {e}")),
                ),
            }
        }
        p if p.starts_with("/status/") => {
            let code: u16 = p["/status/".len()..].parse().unwrap();
            let mut response = Response::new(Empty::new().map_err(|e| match e {}).boxed_unsync());
            *response.status_mut() = StatusCode::from_u16(code).unwrap();
            response
        }
        _ => full(StatusCode::NOT_FOUND, &[], Bytes::from_static(b"not found")),
    };
    Ok(response)
}

/// The checksum `/echo` answers for `data`.
pub(crate) fn echo_answer(data: &[u8]) -> String {
    let sum = data
        .iter()
        .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(*b)));
    format!("len={} sum={sum}", data.len())
}
