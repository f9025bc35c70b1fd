//! In-process cost of StreamBodyLayer: a handler that reads its whole body, called directly and
//! through the layer, in the same group.
//!
//! `cargo bench -p tower-memory-stream-body --bench stream_body`
//!
//! - `small_4k`: a 4 KiB body of known length (the layer's buffered path: budget reservation,
//!   one frame).
//! - `stream_1m`: a 1 MiB body in one frame (the streaming path: cut into 64 KiB frames).

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};
use tower_memory_stream_body::{MemoryBudget, StreamBodyLayer};

/// Reads the body frame by frame, answers with the byte count.
async fn handler<B>(req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let mut body = std::pin::pin!(req.into_body());
    let mut total = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("body").into_data() {
            total += data.len();
        }
    }
    Ok(Response::new(Full::new(Bytes::from(total.to_string()))))
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let layer = StreamBodyLayer::new()
        .buffer_threshold(64 * 1024)
        .memory_budget(MemoryBudget::new(256 * 1024 * 1024));

    for (name, len) in [("small_4k", 4 * 1024), ("stream_1m", 1024 * 1024)] {
        let payload = Bytes::from(vec![b'x'; len]);
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function("direct", |b| {
            let service = service_fn(handler::<Full<Bytes>>);
            b.iter(|| {
                let req = Request::post("/").body(Full::new(payload.clone())).unwrap();
                black_box(runtime.block_on(service.oneshot(req)).unwrap())
            })
        });
        group.bench_function("layer", |b| {
            let service = layer.layer(service_fn(
                handler::<tower_memory_stream_body::LimitedBody<Full<Bytes>>>,
            ));
            b.iter(|| {
                let req = Request::post("/").body(Full::new(payload.clone())).unwrap();
                black_box(runtime.block_on(service.clone().oneshot(req)).unwrap())
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
