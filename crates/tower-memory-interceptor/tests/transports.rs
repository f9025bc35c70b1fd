//! The same layer, unchanged, in axum, in a plain hyper service (hyper-util) and in tonic.

mod common;

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use bytes::Bytes;
use common::*;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use test_support::bounded;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::ServiceBuilder;
use tower_memory_interceptor::{MemoryInterceptorLayer, Outcome, RequestMemory, UNMATCHED_ROUTE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_routes_are_labelled_by_their_matched_path() {
    let reports = Reports::default();
    let router = Router::new()
        .route(
            "/items/{id}",
            get(|Path(id): Path<String>, memory: RequestMemory| async move {
                let block = vec![1u8; 512 * 1024];
                black_box(&block);
                format!("{id} {}", memory.allocated() >= 512 * 1024)
            }),
        )
        .route_layer(MemoryInterceptorLayer::new().on_report(reports.sink()))
        // Added after `route_layer`: not wrapped, so the extractor rejects.
        .route(
            "/bare",
            get(|memory: RequestMemory| async move { format!("{memory:?}") }),
        )
        .route(
            "/optional",
            get(|memory: Option<RequestMemory>| async move { format!("{}", memory.is_some()) }),
        );
    let (addr, _server) = serve_axum(router).await;
    let client = client();

    for i in 0..20 {
        let (head, body) = fetch(&client, addr, &format!("/items/random-{i}-{}", i * 7919)).await;
        assert_eq!(head.status(), 200);
        assert!(body.ends_with(b" true"), "{body:?}");
    }
    let all = reports
        .wait_for("/items/", 20, Duration::from_secs(10))
        .await;
    assert_eq!(all.len(), 20);
    for report in &all {
        // Twenty paths, one label.
        assert_eq!(report.route, "/items/{id}");
        assert_within(report.allocated, 512 * KIB, "axum item");
        assert_eq!(report.outcome, Outcome::Completed);
    }

    let (head, body) = fetch(&client, addr, "/bare").await;
    assert_eq!(head.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(String::from_utf8_lossy(&body).contains("MemoryInterceptorLayer is not installed"));
    let (head, body) = fetch(&client, addr, "/optional").await;
    assert_eq!(head.status(), 200);
    assert_eq!(body, "false");
}

/// A plain hyper service: `/known` is named by the classifier, `/custom/...` names itself, the
/// rest is unmatched.
async fn plain(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let size = size_param(req.uri().query());
    if req.uri().path().starts_with("/custom/") {
        let memory = req.extensions().get::<RequestMemory>().unwrap();
        assert!(memory.set_route("/custom/{name}"));
    }
    let block = vec![3u8; size];
    tokio::task::yield_now().await;
    Ok(Response::new(Full::new(Bytes::from(block))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_hyper_services_work_unchanged() {
    let reports = Reports::default();
    let service = ServiceBuilder::new()
        .layer(
            MemoryInterceptorLayer::new()
                .route_classifier(|method: &Method, uri: &Uri| {
                    (method == Method::GET && uri.path() == "/known").then_some("/known")
                })
                .on_report(reports.sink()),
        )
        .service_fn(plain);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _server = AbortOnDrop(tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }));
    let client = client();

    let cases = [
        ("/known?size=1048576", 1 << 20, "/known"),
        ("/custom/a?size=65536", 64 << 10, "/custom/{name}"),
        ("/x7f3a9?size=4096", 4 << 10, UNMATCHED_ROUTE),
        ("/other-random-path?size=2048", 2 << 10, UNMATCHED_ROUTE),
    ];
    for (path, n, route) in cases {
        let (head, body) = fetch(&client, addr, path).await;
        assert_eq!(head.status(), 200);
        assert_eq!(body.len() as u64, n);
        let report = reports
            .wait_for(path, 1, Duration::from_secs(10))
            .await
            .remove(0);
        assert_eq!(report.route, route, "{report:?}");
        assert_within(report.allocated, n, path);
        assert_eq!(report.body_bytes, n);
        assert_eq!(report.outcome, Outcome::Completed);
    }
}

fn grpc_route(_: &Method, uri: &Uri) -> Option<&'static str> {
    match uri.path() {
        "/grpc.health.v1.Health/Check" => Some("/grpc.health.v1.Health/Check"),
        "/grpc.health.v1.Health/Watch" => Some("/grpc.health.v1.Health/Watch"),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_services_keep_their_trailers() {
    let reports = Reports::default();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("demo.Service", tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let layer = MemoryInterceptorLayer::new()
        .route_classifier(grpc_route)
        .on_report(reports.sink());
    let _server = AbortOnDrop(tokio::spawn(async move {
        tonic::transport::Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    }));

    let channel = bounded(
        "connect",
        10,
        tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect(),
    )
    .await
    .unwrap();
    let mut client = HealthClient::new(channel);

    // Unary: grpc-status travels in the trailers, which the client needs to accept the answer.
    let answer = client
        .check(HealthCheckRequest {
            service: "demo.Service".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.status(), ServingStatus::Serving);
    let report = reports
        .wait_for("/grpc.health.v1.Health/Check", 1, Duration::from_secs(10))
        .await
        .remove(0);
    assert_eq!(report.route, "/grpc.health.v1.Health/Check");
    assert_eq!(report.status, Some(StatusCode::OK));
    assert_eq!(report.outcome, Outcome::Completed);
    assert!(report.allocated > 0 && report.polls >= 2, "{report:?}");

    // An error status (trailers-only response).
    let error = client
        .check(HealthCheckRequest {
            service: "unknown.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::NotFound);

    // Server streaming: the first update arrives; dropping the stream ends the request.
    let mut updates = client
        .watch(HealthCheckRequest {
            service: "demo.Service".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first: HealthCheckResponse = bounded("watch", 10, updates.message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    drop(updates);
    let watch = bounded(
        "watch report",
        10,
        reports.wait_for("/grpc.health.v1.Health/Watch", 1, Duration::from_secs(10)),
    )
    .await
    .remove(0);
    assert_eq!(watch.outcome, Outcome::BodyDropped, "{watch:?}");
    assert!(watch.body_bytes > 0);

    // The trailers themselves, read with a raw HTTP/2 client.
    let raw = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let message = b"\x0a\x0cdemo.Service";
    let mut frame = vec![0u8, 0, 0, 0, message.len() as u8];
    frame.extend_from_slice(message);
    let request = Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from(frame)))
        .unwrap();
    let response = bounded("raw grpc", 10, raw.request(request)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().expect("trailers preserved").clone();
    assert_eq!(trailers["grpc-status"], "0");
    // 5-byte gRPC header + HealthCheckResponse { status: SERVING } (2 bytes).
    assert_eq!(
        collected.to_bytes().as_ref(),
        b"\x00\x00\x00\x00\x02\x08\x01"
    );
}
