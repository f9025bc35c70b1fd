//! The layer on plain hyper (no axum), over HTTP/1.1 and HTTP/2 (h2c), with hyper's own client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower::ServiceBuilder;
use tower_memory_stream_body::{BodyMode, LimitedBody, MemoryBudget, StreamBodyLayer};

/// Reads the body; answers `<mode> <bytes>`, or 500 with the body error.
async fn handler(req: Request<LimitedBody<Incoming>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mode = req.extensions().get::<BodyMode>().copied();
    let text = match req.into_body().collect().await {
        Ok(body) => format!("{mode:?} {}", body.to_bytes().len()),
        Err(e) => {
            let mut response = Response::new(Full::new(Bytes::from(e.to_string())));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return Ok(response);
        }
    };
    Ok(Response::new(Full::new(Bytes::from(text))))
}

async fn serve(budget: MemoryBudget) -> SocketAddr {
    let layer = StreamBodyLayer::new()
        .max_body_size(512 * 1024)
        .buffer_threshold(64 * 1024)
        .memory_budget(budget)
        .idle_timeout(Duration::from_secs(2));
    let service = ServiceBuilder::new()
        .layer(layer)
        .service(tower::service_fn(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

type H2Sender = hyper::client::conn::http2::SendRequest<
    http_body_util::combinators::BoxBody<Bytes, std::io::Error>,
>;

async fn h2_client(addr: SocketAddr) -> H2Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

fn full(len: usize) -> http_body_util::combinators::BoxBody<Bytes, std::io::Error> {
    Full::new(Bytes::from(vec![b'a'; len]))
        .map_err(|never| match never {})
        .boxed()
}

/// A body of unknown length: `pieces` frames of `len` bytes.
fn unsized_body(
    pieces: usize,
    len: usize,
) -> http_body_util::combinators::BoxBody<Bytes, std::io::Error> {
    let frames = (0..pieces)
        .map(move |_| Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![b'b'; len]))));
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

async fn text(response: Response<Incoming>) -> (StatusCode, String, bool) {
    let status = response.status();
    let has_connection = response.headers().contains_key(http::header::CONNECTION);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        String::from_utf8_lossy(&body).into_owned(),
        has_connection,
    )
}

#[tokio::test]
async fn http2_requests_get_the_same_statuses_and_the_connection_survives() {
    let budget = MemoryBudget::new(1024 * 1024);
    let addr = serve(budget.clone()).await;
    let mut h2 = h2_client(addr).await;
    let post = |body| {
        Request::post(format!("http://{addr}/"))
            .version(Version::HTTP_2)
            .body(body)
            .unwrap()
    };

    let (status, body, _) = text(h2.send_request(post(full(1000))).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "Some(Buffered { len: 1000 }) 1000");

    let (status, body, _) = text(
        h2.send_request(post(unsized_body(10, 30_000)))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "Some(Streaming { content_length: None }) 300000");

    // Declared over the limit: 413, and no `Connection` header on HTTP/2.
    let (status, _, has_connection) =
        text(h2.send_request(post(full(600 * 1024))).await.unwrap()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!has_connection);

    // Unknown length crossing the limit while the handler reads: 413 over the handler's 500.
    let (status, body, has_connection) = text(
        h2.send_request(post(unsized_body(40, 16 * 1024)))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(!has_connection);

    // Only the streams were refused: the connection carries on.
    let (status, body, _) = text(h2.send_request(post(full(10))).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "Some(Buffered { len: 10 }) 10");
    assert_eq!(budget.available(), budget.total());
}

#[tokio::test]
async fn http1_with_hyper_client() {
    let budget = MemoryBudget::new(1024 * 1024);
    let addr = serve(budget.clone()).await;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::post("/")
        .header(http::header::HOST, addr.to_string())
        .body(full(200 * 1024))
        .unwrap();
    let (status, body, _) = text(sender.send_request(request).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        "Some(Streaming { content_length: Some(204800) }) 204800"
    );
    // A GET has no body: buffered, length 0, nothing reserved.
    let request = Request::get("/")
        .header(http::header::HOST, addr.to_string())
        .body(full(0))
        .unwrap();
    let (status, body, _) = text(sender.send_request(request).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "Some(Buffered { len: 0 }) 0");
    assert_eq!(budget.available(), budget.total());
}
