//! HTTP/2 (h2c, prior knowledge) with the h2 crate: many concurrent streams each uploading,
//! streams reset in the middle of their bodies, and a flood of streams reset as soon as they
//! are opened (the "rapid reset" pattern).

use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;
use http::Request;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

use crate::support::invariants::{MIB, Watch};
use crate::{matrix_server, run};

async fn connect(addr: &str) -> SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

fn upload_request(addr: &str, len: usize) -> Request<()> {
    Request::post(format!("http://{addr}/api/uploads"))
        .header("content-length", len)
        .body(())
        .unwrap()
}

/// Sends `body` on a new stream and reads the answer: (status, body).
async fn upload(client: SendRequest<Bytes>, addr: &str, body: Bytes) -> (u16, Vec<u8>) {
    let mut client = client.ready().await.expect("h2 ready");
    let (response, mut stream) = client
        .send_request(upload_request(addr, body.len()), false)
        .expect("send_request");
    stream.send_data(body, true).expect("send_data");
    let response = response.await.expect("response");
    let status = response.status().as_u16();
    let mut recv = response.into_body();
    let mut out = Vec::new();
    while let Some(data) = recv.data().await {
        let data = data.expect("response body");
        let _ = recv.flow_control().release_capacity(data.len());
        out.extend_from_slice(&data);
    }
    (status, out)
}

fn body_for(i: usize, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|j| (j.wrapping_mul(31) ^ i) as u8)
            .collect::<Vec<u8>>(),
    )
}

#[test]
fn http2_streams() {
    // Room for all 64 bodies and their admissions at once: this group is about streams and
    // resets, not about an exhausted budget (the limits group has that), and on a busy machine
    // the matrix's 64 MiB could run out while the streams are still being read.
    let server = matrix_server(&[("MEMORY_REQUEST_BUDGET", "268435456")]);
    let watch = Watch::of(&server);
    let addr = server.addr.clone();
    run(Duration::from_secs(120), async {
        const STREAMS: usize = 64;
        const LEN: usize = 256 << 10;
        // 64 x 256 KiB buffered at once is 16 MiB of bodies.
        let case = watch.case("64 concurrent HTTP/2 streams each uploading", 48 * MIB);
        let client = connect(&addr).await;
        let tasks: Vec<_> = (0..STREAMS)
            .map(|i| {
                let (client, addr) = (client.clone(), addr.clone());
                tokio::spawn(async move {
                    let body = body_for(i, LEN);
                    let expected = hex::encode(Sha256::digest(&body));
                    let (status, answer) = upload(client, &addr, body).await;
                    (status, answer, expected)
                })
            })
            .collect();
        for t in tasks {
            let (status, answer, expected) = t.await.unwrap();
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
            let json: serde_json::Value = serde_json::from_slice(&answer).unwrap();
            assert_eq!(json["sha256"], expected.as_str());
        }
        drop(client);
        case.finish(format!("200 on all {STREAMS}, stored whole"), STREAMS)
            .await;

        // Each stream announces 1 MiB, sends 128 KiB and resets.
        let case = watch.case("32 HTTP/2 streams reset mid-body", 16 * MIB);
        let mut client = connect(&addr).await;
        let mut streams = Vec::new();
        for i in 0..32 {
            client = client.ready().await.expect("h2 ready");
            let (response, mut stream) = client
                .send_request(upload_request(&addr, 1 << 20), false)
                .expect("send_request");
            stream
                .send_data(body_for(i, 128 << 10), false)
                .expect("send_data");
            streams.push((response, stream));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        for (_, stream) in &mut streams {
            stream.send_reset(h2::Reason::CANCEL);
        }
        drop(streams);
        // The connection stays usable.
        let (status, _) = upload(client.clone(), &addr, body_for(99, 1000)).await;
        assert_eq!(status, 200);
        drop(client);
        case.finish("reset streams leave nothing; the connection serves on", 1)
            .await;

        // Open and reset at once, as fast as possible, for at most 10 s or 20,000 streams.
        let case = watch.case("flood of RST_STREAM", 16 * MIB);
        let mut client = connect(&addr).await;
        let started = Instant::now();
        let mut opened = 0u32;
        let mut refused = None;
        while opened < 20_000 && started.elapsed() < Duration::from_secs(10) {
            client = match client.clone().ready().await {
                Ok(c) => c,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            };
            let request = Request::get(format!("http://{addr}/api/hello"))
                .body(())
                .unwrap();
            match client.send_request(request, true) {
                Ok((_response, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
            opened += 1;
        }
        drop(client);
        let answer = match &refused {
            Some(e) => format!("connection closed by the server after {opened} streams ({e})"),
            None => format!("{opened} streams opened and reset"),
        };
        case.finish(answer, 0).await;
    });
}
