//! The response future dropped by its caller (a timeout, a cancelled task) at each stage gives
//! every reserved byte back. The body is fed through a channel so the test decides when frames
//! arrive.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::sync::mpsc;
use tokio_stream_shim::ReceiverStream;
use tower::{Layer, ServiceExt, service_fn};
use tower_memory_stream_body::{LimitedBody, MemoryBudget, StreamBodyLayer};

/// A minimal `Stream` over an mpsc receiver (tokio-stream is not a dependency).
mod tokio_stream_shim {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub(crate) struct ReceiverStream<T>(pub(crate) tokio::sync::mpsc::Receiver<T>);

    impl<T> futures_util::Stream for ReceiverStream<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}

type ChannelBody = StreamBody<ReceiverStream<Result<Frame<Bytes>, Infallible>>>;

fn channel_body() -> (mpsc::Sender<Result<Frame<Bytes>, Infallible>>, ChannelBody) {
    let (tx, rx) = mpsc::channel(16);
    (tx, StreamBody::new(ReceiverStream(rx)))
}

#[tokio::test]
async fn dropping_the_future_while_buffering_or_handling_returns_the_budget() {
    let budget = MemoryBudget::new(1 << 20);
    let layer = StreamBodyLayer::new()
        .buffer_threshold(64 * 1024)
        .memory_budget(budget.clone())
        .idle_timeout(Duration::from_secs(60));
    // A handler that reads its body and then never answers.
    let service = layer.layer(service_fn(
        |req: Request<LimitedBody<ChannelBody>>| async move {
            let _ = req.into_body().collect().await;
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        },
    ));

    // Unknown length, dropped while the layer buffers: 30 KB read and charged.
    let (tx, body) = channel_body();
    tx.send(Ok(Frame::data(Bytes::from(vec![0u8; 30_000]))))
        .await
        .unwrap();
    let call = service
        .clone()
        .oneshot(Request::post("/").body(body).unwrap());
    let timed_out = tokio::time::timeout(Duration::from_millis(100), call).await;
    assert!(timed_out.is_err());
    assert_eq!(budget.available(), budget.total());

    // Whole body buffered, handler running and holding the reservation; then dropped.
    let (tx, body) = channel_body();
    tx.send(Ok(Frame::data(Bytes::from(vec![0u8; 20_000]))))
        .await
        .unwrap();
    drop(tx);
    let call = tokio::spawn(
        service
            .clone()
            .oneshot(Request::post("/").body(body).unwrap()),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while budget.in_use() != 20_000 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(budget.in_use(), 20_000);
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    assert_eq!(budget.available(), budget.total());

    // Crossed the threshold: the prefix's reservation moved into the body the handler holds;
    // dropping the future drops the body too.
    let (tx, body) = channel_body();
    for _ in 0..5 {
        tx.send(Ok(Frame::data(Bytes::from(vec![0u8; 20_000]))))
            .await
            .unwrap();
    }
    let call = service
        .clone()
        .oneshot(Request::post("/").body(body).unwrap());
    let timed_out = tokio::time::timeout(Duration::from_millis(100), call).await;
    assert!(timed_out.is_err());
    assert_eq!(budget.available(), budget.total());
    drop(tx);
}
