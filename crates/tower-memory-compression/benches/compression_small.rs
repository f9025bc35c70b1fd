//! In-process cost of compressing a response, this layer against tower-http 0.7's
//! `CompressionLayer` in the same group: 1 KiB JSON (where per-response setup dominates: zstd
//! context reuse and a pledged size) and 256 KiB JSON (where the codec dominates). In this
//! binary tower-http's gzip and deflate run on flate2's zlib-rs backend (this crate's gzip and
//! deflate decoders turn it on, and Cargo unifies features), hence the bench's name.
//!
//! `cargo bench -p tower-memory-compression --features compression-full,decompression-full --bench compression_small`

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use test_support::json_doc;
use tower::{Service, ServiceBuilder, ServiceExt};

/// Runs `iters` requests through `service` and returns the time taken.
async fn drive<S, B>(service: &S, encoding: &'static str, iters: u64) -> Duration
where
    S: Service<Request<Empty<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let start = Instant::now();
    for _ in 0..iters {
        let request = Request::get("/api/documents")
            .header("accept-encoding", encoding)
            .body(Empty::new())
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        assert!(response.headers().contains_key("content-encoding"));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        std::hint::black_box(body);
    }
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (label, size, encodings) in [
        ("1KiB", 1024usize, &["zstd", "gzip", "br", "deflate"][..]),
        ("256KiB", 256 * 1024, &["zstd", "gzip", "br", "deflate"][..]),
    ] {
        let doc = json_doc(size);
        let handler = tower::service_fn(move |_: Request<Empty<Bytes>>| {
            let mut response = Response::new(Full::new(doc.clone()));
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            async move { Ok::<_, std::convert::Infallible>(response) }
        });
        let ours = ServiceBuilder::new()
            .layer(tower_memory_compression::CompressionLayer::new())
            .service(handler.clone());
        let theirs = ServiceBuilder::new()
            .layer(tower_http::compression::CompressionLayer::new())
            .service(handler);
        let mut group = c.benchmark_group(format!("compress_{label}"));
        group.throughput(Throughput::Bytes(size as u64));
        for &encoding in encodings {
            group.bench_function(BenchmarkId::new("tower-http-zlib-rs", encoding), |b| {
                b.iter_custom(|iters| runtime.block_on(drive(&theirs, encoding, iters)))
            });
            group.bench_function(BenchmarkId::new("layer", encoding), |b| {
                b.iter_custom(|iters| runtime.block_on(drive(&ours, encoding, iters)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
