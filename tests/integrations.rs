//! The hyper and tonic examples as black boxes: curl for HTTP, a tonic health client for gRPC.

mod support;

use std::time::Duration;

use support::{Server, curl};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[test]
fn hyper_server_serves_the_stack_over_http1_and_h2c() {
    let mut server = Server::start("hyper_server", &[]);
    let (status, body) = curl(&[&server.url("/api/hello")]);
    assert_eq!((status, body.as_str()), (200, "hello"));
    let (status, body) = curl(&[
        "--http2-prior-knowledge",
        "--compressed",
        &server.url("/api/documents"),
    ]);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(&body)
            .unwrap()
            .len(),
        1000
    );

    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-H",
            "Accept-Encoding: zstd",
        ])
        .arg(server.url("/api/documents"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .to_lowercase()
            .contains("content-encoding: zstd")
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.bin");
    let data = vec![42u8; 3 << 20];
    std::fs::write(&file, &data).unwrap();
    let (status, body) = curl(&[
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", file.display()),
        &server.url("/api/echo-size"),
    ]);
    assert_eq!(status, 200);
    use sha2::Digest;
    assert!(
        body.contains(&hex::encode(sha2::Sha256::digest(&data))),
        "{body}"
    );

    let (status, health) = curl(&[&server.url("/api/health")]);
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    let routes: Vec<&str> = health["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["route"].as_str().unwrap())
        .collect();
    assert!(
        routes.contains(&"/api/echo-size") && routes.contains(&"/api/documents"),
        "{routes:?}"
    );
    // Random paths do not become route labels.
    for i in 0..5 {
        curl(&[&server.url(&format!("/random/{i}"))]);
    }
    let (_, metrics) = curl(&[&server.url("/api/metrics")]);
    assert!(
        !metrics.contains("/random/"),
        "raw paths leaked into labels"
    );
    let exit = server.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(exit.success(), "exit status {exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_server_answers_grpc_health_and_http_health_on_one_port() {
    let mut server = Server::start("tonic_server", &[]);
    let channel = tonic::transport::Channel::from_shared(server.url(""))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        client.check(HealthCheckRequest {
            service: String::new(),
        }),
    )
    .await
    .unwrap()
    .unwrap()
    .into_inner();
    assert_eq!(answer.status(), ServingStatus::Serving);
    let unknown = client
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let url = server.url("/api/health/ready");
    let (status, _) = tokio::task::spawn_blocking(move || curl(&[&url]))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let url = server.url("/api/health");
    let (status, health) = tokio::task::spawn_blocking(move || curl(&[&url]))
        .await
        .unwrap();
    assert_eq!(status, 200);
    // The interceptor measured the gRPC calls under their method names.
    assert!(health.contains("/grpc.health.v1.Health/Check"), "{health}");

    let exit = tokio::task::spawn_blocking(move || {
        server.signal_and_wait("TERM", Duration::from_secs(10))
    })
    .await
    .unwrap();
    assert!(exit.success(), "exit status {exit}");
}
