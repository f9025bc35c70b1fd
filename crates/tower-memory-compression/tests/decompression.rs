//! RequestDecompressionLayer end to end: compressed request bodies sent by a real hyper client to a
//! real server whose handler reads the decoded body.

mod common;

use std::time::Instant;

use bytes::Bytes;
use common::*;
use test_support::{bounded, json_doc};
use tower::ServiceBuilder;
use tower_memory_compression::{Encoding, RequestDecompressionLayer, compress_to_vec};

async fn start(layer: RequestDecompressionLayer) -> (TestServer, Calls) {
    let calls = Calls::default();
    let counted = calls.clone();
    let epoch = Instant::now();
    let service = ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |request| handler(request, counted.clone(), epoch));
    (serve(service).await, calls)
}

async fn post(server: &TestServer, coding: &str, body: Vec<u8>) -> Raw {
    let headers: Vec<(&str, &str)> = if coding.is_empty() {
        vec![]
    } else {
        vec![("content-encoding", coding)]
    };
    request(server.addr, "POST", "/echo", &headers, Bytes::from(body)).await
}

#[tokio::test]
async fn every_coding_and_stacks_round_trip() {
    bounded("every_coding_and_stacks_round_trip", 30, async {
        let (server, _) = start(RequestDecompressionLayer::new()).await;
        let doc = json_doc(300_000);
        for encoding in [
            Encoding::Gzip,
            Encoding::Deflate,
            Encoding::Brotli,
            Encoding::Zstd,
        ] {
            let raw = post(&server, encoding.as_str(), compress_to_vec(encoding, &doc)).await;
            assert_eq!(
                raw.status,
                200,
                "{encoding}: {:?}",
                String::from_utf8_lossy(&raw.body())
            );
            assert_eq!(raw.body(), echo_answer(&doc).as_bytes(), "{encoding}");
            // tokens are case-insensitive
            let upper = encoding.as_str().to_ascii_uppercase();
            let raw = post(&server, &upper, compress_to_vec(encoding, &doc)).await;
            assert_eq!(raw.status, 200, "{upper}");
        }
        // Stacked: gzip applied first, then zstd.
        let stacked = compress_to_vec(Encoding::Zstd, &compress_to_vec(Encoding::Gzip, &doc));
        let raw = post(&server, "gzip, zstd", stacked).await;
        assert_eq!(raw.status, 200);
        assert_eq!(raw.body(), echo_answer(&doc).as_bytes());
        // As two header fields.
        let stacked = compress_to_vec(Encoding::Brotli, &compress_to_vec(Encoding::Deflate, &doc));
        let raw = request(
            server.addr,
            "POST",
            "/echo",
            &[("content-encoding", "deflate"), ("content-encoding", "br")],
            Bytes::from(stacked),
        )
        .await;
        assert_eq!(raw.status, 200);
        assert_eq!(raw.body(), echo_answer(&doc).as_bytes());
        // No coding, and identity: passed through.
        for coding in ["", "identity"] {
            let raw = post(&server, coding, doc.to_vec()).await;
            assert_eq!(raw.status, 200);
            assert_eq!(raw.body(), echo_answer(&doc).as_bytes());
        }
    })
    .await;
}

#[tokio::test]
async fn unsupported_codings_get_415_without_calling_the_handler() {
    bounded(
        "unsupported_codings_get_415_without_calling_the_handler",
        30,
        async {
            let (server, calls) = start(RequestDecompressionLayer::new()).await;
            for coding in ["compress", "gzip, x-unknown", "gzip, gzip, gzip", "bzip2"] {
                let raw = post(&server, coding, b"whatever".to_vec()).await;
                assert_eq!(raw.status, 415, "{coding}");
                assert_eq!(
                    raw.header("accept-encoding"),
                    Some("zstd, br, gzip, deflate"),
                    "{coding}"
                );
            }
            assert_eq!(calls.get(), 0);
            // A layer that accepts only gzip lists only gzip.
            let (server, calls) =
                start(RequestDecompressionLayer::new().accept(&[Encoding::Gzip])).await;
            let raw = post(&server, "br", compress_to_vec(Encoding::Brotli, b"hello")).await;
            assert_eq!(raw.status, 415);
            assert_eq!(raw.header("accept-encoding"), Some("gzip"));
            assert_eq!(calls.get(), 0);
        },
    )
    .await;
}

#[tokio::test]
async fn corrupt_and_truncated_bodies_get_400() {
    bounded("corrupt_and_truncated_bodies_get_400", 30, async {
        let (server, calls) = start(RequestDecompressionLayer::new()).await;
        let doc = json_doc(50_000);
        for encoding in [
            Encoding::Gzip,
            Encoding::Deflate,
            Encoding::Brotli,
            Encoding::Zstd,
        ] {
            let raw = post(
                &server,
                encoding.as_str(),
                b"not compressed at all".repeat(10),
            )
            .await;
            assert_eq!(raw.status, 400, "{encoding}");
            let good = compress_to_vec(encoding, &doc);
            let raw = post(&server, encoding.as_str(), good[..good.len() / 2].to_vec()).await;
            assert_eq!(raw.status, 400, "{encoding} truncated");
            assert!(
                String::from_utf8_lossy(&raw.body()).contains("ends early"),
                "{encoding}"
            );
        }
        // The handler ran (it read the body and answered 422); its answer was replaced.
        assert_eq!(calls.get(), 8);
        // And the server still serves.
        let raw = post(&server, "gzip", compress_to_vec(Encoding::Gzip, &doc)).await;
        assert_eq!(raw.status, 200);
    })
    .await;
}

#[tokio::test]
async fn caps_get_413() {
    bounded("caps_get_413", 30, async {
        let (server, _) = start(RequestDecompressionLayer::new().max_decoded_bytes(1 << 20)).await;
        // 2 MiB of zeros: over the cap and over 100:1.
        let zeros = vec![0u8; 2 << 20];
        for encoding in [
            Encoding::Gzip,
            Encoding::Deflate,
            Encoding::Brotli,
            Encoding::Zstd,
        ] {
            let raw = post(
                &server,
                encoding.as_str(),
                compress_to_vec(encoding, &zeros),
            )
            .await;
            assert_eq!(raw.status, 413, "{encoding}");
        }
        // Over the ratio, under the byte cap.
        let (server, _) = start(RequestDecompressionLayer::new().max_ratio(10)).await;
        let raw = post(&server, "gzip", compress_to_vec(Encoding::Gzip, &zeros)).await;
        assert_eq!(raw.status, 413);
        assert!(String::from_utf8_lossy(&raw.body()).contains("ratio"));
        // A zstd frame that declares a 128 MiB window.
        let frame = vec![
            0x28,
            0xB5,
            0x2F,
            0xFD,
            0x00,
            (27 - 10) << 3,
            0x01,
            0x00,
            0x00,
        ];
        let raw = post(&server, "zstd", frame).await;
        assert_eq!(raw.status, 413);
        assert!(String::from_utf8_lossy(&raw.body()).contains("window"));
        // A large-window brotli stream.
        let raw = post(&server, "br", vec![0x11, 0x1e, 0x00, 0x00]).await;
        assert_eq!(raw.status, 413);
        // The server still serves.
        let raw = post(&server, "zstd", compress_to_vec(Encoding::Zstd, b"fine")).await;
        assert_eq!(raw.status, 200);
        assert_eq!(raw.body(), echo_answer(b"fine").as_bytes());
    })
    .await;
}
