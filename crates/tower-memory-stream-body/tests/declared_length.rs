//! A body that disagrees with its `Content-Length` is refused with 400 on every path: buffered,
//! streaming, and a declared length of 0. hyper enforces the length of its own bodies; a body
//! type that does not (one made by another layer, a test) is checked by the layer, which reads
//! the header itself when the body gives no exact size. Found by the body-limit fuzz harness
//! (fuzz/harness/body_limits.rs), which checks the same for any frames and settings.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use tower::{Layer, ServiceExt, service_fn};
use tower_memory_stream_body::{LimitedBody, MemoryBudget, StreamBodyLayer};

type Frames =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// A body of `sent` bytes (in 1 KiB frames) declared as `declared`, with no exact size hint.
fn lying_body(declared: u64, sent: usize) -> Request<Frames> {
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![b'x'; sent]
        .chunks(1024)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    Request::post("/")
        .header(http::header::CONTENT_LENGTH, declared)
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap()
}

/// The status the layer answers for `request`, the handler reading the whole body.
async fn status(request: Request<Frames>) -> u16 {
    let budget = MemoryBudget::new(1 << 20);
    let service = StreamBodyLayer::new()
        .buffer_threshold(8 << 10)
        .max_body_size(1 << 20)
        .memory_budget(budget.clone())
        .layer(service_fn(|req: Request<LimitedBody<Frames>>| async move {
            let status = match req.into_body().collect().await {
                Ok(_) => 200,
                Err(_) => 500,
            };
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
            Ok::<_, Infallible>(response)
        }));
    let response = service.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    drop(response.into_body().collect().await);
    assert_eq!(budget.in_use(), 0, "every byte back");
    status
}

#[tokio::test]
async fn bodies_unlike_their_length_are_400_on_every_path() {
    for (declared, sent, path) in [
        (4096, 1000, "buffered, shorter"),
        (4096, 5000, "buffered, longer"),
        (64 << 10, 1000, "streaming, shorter"),
        (64 << 10, 70 << 10, "streaming, longer"),
        (0, 5, "declared empty, with a body"),
    ] {
        assert_eq!(status(lying_body(declared, sent)).await, 400, "{path}");
    }
    // And those that agree pass.
    for (len, path) in [(4096, "buffered"), (64 << 10, "streaming"), (0, "empty")] {
        assert_eq!(status(lying_body(len, len as usize)).await, 200, "{path}");
    }
}
