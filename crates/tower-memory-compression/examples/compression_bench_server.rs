//! The server the compression benchmarks drive: the same handler behind no compression,
//! tower-http 0.7's `CompressionLayer` (its defaults), or this crate's `CompressionLayer`.
//!
//! ```text
//! compression_bench_server --mode none|tower-http|layer [--port 0] [--workers 1]
//! ```
//!
//! tower-http's gzip and deflate run on whichever flate2 backend the build unified:
//! `benches/tower-http-server/` builds this same file outside the workspace, with flate2's
//! default miniz_oxide or with its `zlib-rs` feature.
//!
//! Routes:
//! - `GET /api/documents`: a 256 KiB JSON document (full body, known length).
//! - `GET /api/documents/stream?first=65536&known=0`: the first `first` bytes of the document,
//!   then the response stays open, mid-stream, until the client goes away (memory per
//!   in-flight response). `known=1` declares the document's full length up front.
//!
//! Prints `LISTENING <port> <pid>` once it accepts connections.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use test_support::json_doc;
use tower::ServiceBuilder;
use tower_memory_compression::BoxError;

const DOC_SIZE: usize = 256 * 1024;

/// Sends `first`, then stays pending until dropped: a response held open mid-stream.
struct HoldOpen {
    first: Option<Bytes>,
    declared: Option<u64>,
}

impl Body for HoldOpen {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.first.take() {
            Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
            // Never woken: the connection (and this body) is dropped when the client leaves.
            None => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.declared
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

type ResBody = UnsyncBoxBody<Bytes, BoxError>;

async fn handle(doc: Bytes, request: Request<Incoming>) -> Result<Response<ResBody>, Infallible> {
    let query = request.uri().query().unwrap_or("");
    let param = |key: &str| {
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| v.parse::<usize>().ok()).flatten()
        })
    };
    let body = match request.uri().path() {
        "/api/documents" => Full::new(doc).map_err(|e| match e {}).boxed_unsync(),
        "/api/documents/stream" => {
            let first = param("first").unwrap_or(64 * 1024).min(doc.len());
            HoldOpen {
                first: Some(doc.slice(..first)),
                declared: (param("known") == Some(1)).then_some(doc.len() as u64),
            }
            .map_err(|e| match e {})
            .boxed_unsync()
        }
        _ => {
            let mut response = Response::new(
                Full::new(Bytes::from_static(b"not found"))
                    .map_err(|e| match e {})
                    .boxed_unsync(),
            );
            *response.status_mut() = http::StatusCode::NOT_FOUND;
            return Ok(response);
        }
    };
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    Ok(response)
}

fn boxed<B>(response: Response<B>) -> Response<ResBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    response.map(|b| b.map_err(Into::into).boxed_unsync())
}

/// This crate's layer with its defaults, or with parameters from the environment (for tuning
/// runs): `CL_GZIP_LEVEL`, `CL_GZIP_MEM_LEVEL`, `CL_GZIP_WINDOW_BITS`, `CL_ZSTD_LEVEL`,
/// `CL_ZSTD_STREAM_WINDOW_LOG`, `CL_ZSTD_STREAM_HASH_LOG`, `CL_ZSTD_STREAM_CHAIN_LOG` (0 keeps
/// zstd's own), `CL_BR_QUALITY`, `CL_BR_STREAM_QUALITY`, `CL_BR_STREAM_WINDOW_BITS`.
fn layer_from_env() -> tower_memory_compression::CompressionLayer {
    use tower_memory_compression::{BrotliParams, DeflateParams, ZstdParams};
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.parse::<u32>().expect(name))
    };
    let mut gzip = DeflateParams::default();
    let mut zstd = ZstdParams::default();
    let mut br = BrotliParams::default();
    if let Some(v) = var("CL_GZIP_LEVEL") {
        gzip.level = v;
    }
    if let Some(v) = var("CL_GZIP_MEM_LEVEL") {
        gzip.mem_level = v as u8;
    }
    if let Some(v) = var("CL_GZIP_WINDOW_BITS") {
        gzip.window_bits = v as u8;
    }
    if let Some(v) = var("CL_ZSTD_LEVEL") {
        zstd.level = v as i32;
    }
    let zero_is_none = |v: u32| (v != 0).then_some(v);
    if let Some(v) = var("CL_ZSTD_STREAM_WINDOW_LOG") {
        zstd.stream_window_log = zero_is_none(v);
    }
    if let Some(v) = var("CL_ZSTD_STREAM_HASH_LOG") {
        zstd.stream_hash_log = zero_is_none(v);
    }
    if let Some(v) = var("CL_ZSTD_STREAM_CHAIN_LOG") {
        zstd.stream_chain_log = zero_is_none(v);
    }
    if let Some(v) = var("CL_BR_QUALITY") {
        br.quality = v;
    }
    if let Some(v) = var("CL_BR_STREAM_QUALITY") {
        br.stream_quality = v;
    }
    if let Some(v) = var("CL_BR_STREAM_WINDOW_BITS") {
        br.stream_window_bits = v;
    }
    tower_memory_compression::CompressionLayer::new()
        .gzip_params(gzip)
        .deflate_params(gzip)
        .zstd_params(zstd)
        .brotli_params(br)
}

fn main() {
    let mut mode = "layer".to_owned();
    let mut port = 0u16;
    let mut workers = 1usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("a value after the flag");
        match arg.as_str() {
            "--mode" => mode = value(),
            "--port" => port = value().parse().expect("--port N"),
            "--workers" => workers = value().parse().expect("--workers N"),
            other => panic!(
                "unknown argument {other:?} (--mode none|tower-http|layer, --port, --workers)"
            ),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let doc = json_doc(DOC_SIZE);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let handler = tower::service_fn(move |r| handle(doc.clone(), r));
        let service = match mode.as_str() {
            "none" => tower::util::BoxCloneService::new(handler),
            "tower-http" => tower::util::BoxCloneService::new(
                ServiceBuilder::new()
                    .map_response(boxed)
                    .layer(tower_http::compression::CompressionLayer::new())
                    .service(handler),
            ),
            "layer" => tower::util::BoxCloneService::new(
                ServiceBuilder::new()
                    .map_response(boxed)
                    .layer(layer_from_env())
                    .service(handler),
            ),
            other => panic!("unknown mode {other:?}"),
        };
        println!(
            "LISTENING {} {}",
            listener.local_addr().unwrap().port(),
            std::process::id()
        );
        // Serves until killed (the bench drivers stop it).
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
