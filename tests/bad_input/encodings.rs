//! Encodings: hostile `Accept-Encoding` values, and request bodies that are bombs, nested,
//! declared with windows too large, of an unknown coding, or corrupt.

use std::time::Duration;

use tower_memory::compression::{Encoding, compress_to_vec};

use crate::support::invariants::{MIB, Watch};
use crate::support::raw::{Raw, RawResponse, head};
use crate::{matrix_server, run};

const T: Duration = Duration::from_secs(30);

async fn get_documents(addr: &str, accept: &str) -> RawResponse {
    let mut c = Raw::connect(addr).await;
    c.exchange(
        &head(
            "GET",
            "/api/documents?count=50",
            &[&format!("Accept-Encoding: {accept}")],
        ),
        T,
    )
    .await
    .expect("a response")
}

async fn post(addr: &str, path: &str, coding: &str, body: &[u8]) -> RawResponse {
    let mut c = Raw::connect(addr).await;
    let mut bytes = head(
        "POST",
        path,
        &[
            &format!("Content-Encoding: {coding}"),
            &format!("Content-Length: {}", body.len()),
            "Content-Type: application/json",
        ],
    );
    bytes.extend_from_slice(body);
    c.exchange(&bytes, T).await.expect("a response")
}

#[test]
fn accept_encoding() {
    let server = matrix_server(&[]);
    let watch = Watch::of(&server);
    let addr = server.addr.clone();
    run(Duration::from_secs(60), async {
        let long_token = format!("x-{};q=0.5, gzip", "a".repeat(10 * 1024));
        let thousands: String = (0..3000)
            .map(|i| format!("x-coding-{i};q=0.{}", i % 10))
            .chain(["zstd;q=0.9".to_string()])
            .collect::<Vec<_>>()
            .join(", ");
        let cases: [(&str, &str, u16, Option<&str>); 6] = [
            ("Accept-Encoding of 10 KiB", &long_token, 200, Some("gzip")),
            (
                "Accept-Encoding with 3,000 entries",
                &thousands,
                200,
                Some("zstd"),
            ),
            (
                "invalid q-values",
                "gzip;q=2, br;q=-1, zstd;q=abc, deflate;q=0.0001, *;q=",
                200,
                None,
            ),
            (
                "q-value of NaN and empty entries",
                ",,, ;q=nan, ,",
                200,
                None,
            ),
            (
                "identity refused, nothing else",
                "identity;q=0, *;q=0",
                406,
                None,
            ),
            // A control byte in a header value: a malformed request, hyper's 400.
            ("control bytes", "\u{1}gzip\u{2}", 400, None),
        ];
        for (name, accept, status, coding) in cases {
            let case = watch.case(name, 4 * MIB);
            let r = if accept.bytes().any(|b| b < 0x20 && b != b'\t') {
                // A control byte: raw, as no client library would send it.
                let mut c = Raw::connect(&addr).await;
                let mut bytes =
                    b"GET /api/documents?count=50 HTTP/1.1\r\nHost: x\r\nAccept-Encoding: "
                        .to_vec();
                bytes.extend_from_slice(accept.as_bytes());
                bytes.extend_from_slice(b"\r\n\r\n");
                c.exchange(&bytes, T).await.expect("a response")
            } else {
                get_documents(&addr, accept).await
            };
            assert_eq!(r.status, status, "{name}: {}", r.text());
            if let Some(coding) = coding {
                assert_eq!(r.header("content-encoding"), Some(coding), "{name}");
            }
            case.finish(
                format!(
                    "{}{}",
                    r.status,
                    r.header("content-encoding")
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default()
                ),
                0,
            )
            .await;
        }
    });
}

/// A JSON array of `n` small objects.
fn json_array(n: usize) -> Vec<u8> {
    let items: Vec<String> = (0..n).map(|i| format!("{{\"i\":{i}}}")).collect();
    format!("[{}]", items.join(",")).into_bytes()
}

#[test]
fn request_bodies() {
    let server = matrix_server(&[]);
    let watch = Watch::of(&server);
    let addr = server.addr.clone();
    // 64 MiB of zeros: each bomb is a few KiB to a few hundred.
    let zeros = vec![0u8; 64 << 20];
    let gzip_bomb = compress_to_vec(Encoding::Gzip, &zeros);
    let bombs = [
        ("gzip bomb", "gzip", gzip_bomb.clone()),
        (
            "deflate bomb",
            "deflate",
            compress_to_vec(Encoding::Deflate, &zeros),
        ),
        ("br bomb", "br", compress_to_vec(Encoding::Brotli, &zeros)),
        ("zstd bomb", "zstd", compress_to_vec(Encoding::Zstd, &zeros)),
        (
            "gzip bomb inside gzip",
            "gzip, gzip",
            compress_to_vec(Encoding::Gzip, &gzip_bomb),
        ),
        (
            "zstd frame declaring a 128 MiB window",
            "zstd",
            huge_window(),
        ),
    ];
    drop(zeros);
    run(Duration::from_secs(120), async {
        for (name, coding, body) in &bombs {
            // Bounded by the 4 MiB buffering threshold, the decoder's output chunk and codec
            // state (a zstd window of at most 8 MiB), never by what the bomb inflates to.
            let case = watch.case(name, 16 * MIB);
            let r = post(&addr, "/api/uploads", coding, body).await;
            assert_eq!(r.status, 413, "{name}: {}", r.text());
            case.finish(format!("413 ({} bytes sent)", body.len()), 0)
                .await;
        }

        // A legitimate body compressed twice decodes twice.
        let case = watch.case("gzip inside gzip (legitimate)", 4 * MIB);
        let doc = json_array(2000);
        let twice = compress_to_vec(Encoding::Gzip, &compress_to_vec(Encoding::Gzip, &doc));
        let r = post(&addr, "/api/documents", "gzip, gzip", &twice).await;
        assert_eq!((r.status, r.text().as_str()), (200, r#"{"received":2000}"#));
        case.finish("200, decoded twice", 0).await;

        let case = watch.case("unknown Content-Encoding", 4 * MIB);
        let r = post(&addr, "/api/uploads", "compress", b"whatever").await;
        assert_eq!(r.status, 415, "{}", r.text());
        case.finish("415", 0).await;

        let corrupt = {
            let mut b = compress_to_vec(Encoding::Gzip, &json_array(5000));
            let mid = b.len() / 2;
            for byte in &mut b[mid..mid + 64] {
                *byte ^= 0x5a;
            }
            b
        };
        let truncated = {
            let b = compress_to_vec(Encoding::Zstd, &json_array(5000));
            b[..b.len() / 2].to_vec()
        };
        for (name, coding, body) in [
            ("corrupt gzip data", "gzip", corrupt),
            ("truncated zstd data", "zstd", truncated),
            ("br that is not br", "br", b"definitely not brotli".to_vec()),
        ] {
            let case = watch.case(name, 4 * MIB);
            let r = post(&addr, "/api/uploads", coding, &body).await;
            assert_eq!(r.status, 400, "{name}: {}", r.text());
            case.finish("400", 0).await;
        }
    });
}

/// A zstd frame whose header declares a 2^27-byte window (RFC 8878 asks decoders to support
/// 8 MiB): refused from the header alone.
fn huge_window() -> Vec<u8> {
    let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, (27 - 10) << 3];
    // A raw block of size 0, not last; then a last raw block of size 0.
    frame.extend_from_slice(&[0x00, 0x00, 0x00, 0x01, 0x00, 0x00]);
    frame
}
