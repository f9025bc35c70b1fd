//! CompressionLayer end to end: a real hyper server on 127.0.0.1, real clients (reqwest, which
//! decodes with its own decoders, and a raw hyper client that shows the wire).
//!
//! (Over 400 lines: the end-to-end cases of one layer against one server harness, each short;
//! split, they would repeat the harness imports and setup in every file.)

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Empty;
use test_support::{bounded, json_doc};
use tower::ServiceBuilder;
use tower_memory_compression::{CompressionLayer, DecodeLimits, Decoder, Encoding, SkipRules};
use tower_memory_probe::{Pressure, PressureSignal};

#[tokio::test]
async fn round_trip_every_encoding_through_reqwest() {
    bounded("round_trip_every_encoding_through_reqwest", 60, async {
        let (server, _, _) = start_compression(CompressionLayer::new()).await;
        for encoding in CODINGS {
            let client = client_for(encoding);
            for (path, size) in [
                ("/doc?size=262144", 262_144),
                ("/stream?size=262144&chunk=8192", 262_144),
                ("/stream?size=300000&chunk=8192&delay_ms=1", 300_000),
                ("/stream?size=5000&chunk=100", 5000),
                ("/doc?size=1024", 1024),
            ] {
                let response = client.get(server.url(path)).send().await.unwrap();
                assert_eq!(response.status(), 200);
                let body = response.bytes().await.unwrap();
                assert_eq!(body, json_doc(size), "{encoding} {path}");
                // On the wire it was compressed with that coding, and smaller.
                let raw = get(server.addr, path, &[("accept-encoding", encoding.as_str())]).await;
                assert_eq!(raw.encoding(), Some(encoding.as_str()), "{path}");
                assert!(raw.body().len() < size, "{encoding} {path}");
                assert_eq!(raw.decoded(), json_doc(size));
            }
        }
    })
    .await;
}

#[tokio::test]
async fn compressed_size_and_exact_length_of_one_shot_bodies() {
    bounded(
        "compressed_size_and_exact_length_of_one_shot_bodies",
        30,
        async {
            let (server, _, _) = start_compression(CompressionLayer::new()).await;
            for encoding in CODINGS {
                let raw = get(
                    server.addr,
                    "/doc?size=262144",
                    &[("accept-encoding", encoding.as_str())],
                )
                .await;
                // The whole body arrived at once: compressed in one shot, exact length.
                let length: usize = raw.header("content-length").unwrap().parse().unwrap();
                assert_eq!(length, raw.body().len(), "{encoding}");
                // A realistic JSON document shrinks at least 4x with every coding.
                assert!(length * 4 < 262_144, "{encoding}: {length}");
                // Streamed (unknown length): no Content-Length.
                let raw = get(
                    server.addr,
                    "/stream?size=262144&chunk=8192&delay_ms=1",
                    &[("accept-encoding", encoding.as_str())],
                )
                .await;
                assert_eq!(raw.header("content-length"), None, "{encoding}");
                assert_eq!(raw.header("transfer-encoding"), Some("chunked"));
            }
        },
    )
    .await;
}

#[tokio::test]
async fn negotiation_over_the_wire() {
    bounded("negotiation_over_the_wire", 30, async {
        let (server, calls, _) = start_compression(CompressionLayer::new()).await;
        let path = "/doc?size=4096";
        for (accept, expected) in [
            ("gzip", Some("gzip")),
            ("x-gzip", Some("gzip")),
            ("gzip;q=0.5, br;q=0.9", Some("br")),
            ("GZIP;Q=0.5, ZSTD;Q=0.6", Some("zstd")),
            ("gzip, deflate, br, zstd", Some("zstd")),
            ("deflate", Some("deflate")),
            ("compress", None),
            ("gzip;q=0", None),
            ("*", Some("zstd")),
            ("gzip;q=garbage, br", Some("br")),
            ("", None),
        ] {
            let raw = get(server.addr, path, &[("accept-encoding", accept)]).await;
            assert_eq!(raw.status, 200, "{accept:?}");
            assert_eq!(raw.encoding(), expected, "{accept:?}");
            assert_eq!(raw.decoded(), json_doc(4096));
        }
        let raw = get(server.addr, path, &[]).await;
        assert_eq!(raw.encoding(), None);
        // Nothing acceptable: 406, and the handler is not called.
        for accept in ["identity;q=0", "*;q=0", "compress, identity;q=0"] {
            let before = calls.get();
            let raw = get(server.addr, path, &[("accept-encoding", accept)]).await;
            assert_eq!(raw.status, 406, "{accept:?}");
            assert_eq!(calls.get(), before, "{accept:?}: the handler was called");
            assert_eq!(raw.header("vary"), Some("accept-encoding"));
        }
        // A server offering only br refuses a client that wants only gzip and no identity.
        let (server, calls, _) =
            start_compression(CompressionLayer::new().preference(&[Encoding::Brotli])).await;
        let raw = get(
            server.addr,
            path,
            &[("accept-encoding", "gzip, identity;q=0")],
        )
        .await;
        assert_eq!(raw.status, 406);
        assert_eq!(calls.get(), 0);
        let raw = get(server.addr, path, &[("accept-encoding", "gzip, br")]).await;
        assert_eq!(raw.encoding(), Some("br"));
    })
    .await;
}

#[tokio::test]
async fn threshold_on_known_and_unknown_sizes() {
    bounded("threshold_on_known_and_unknown_sizes", 30, async {
        let (server, _, _) = start_compression(CompressionLayer::new()).await;
        let gzip = [("accept-encoding", "gzip")];
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            // known size
            ("/doc?size=1023", None, Some("1023")),
            ("/doc?size=1024", Some("gzip"), None),
            ("/doc?size=10", None, Some("10")),
            // unknown size, ends below the threshold: sent as it is, with its length
            ("/stream?size=1000&chunk=100", None, Some("1000")),
            ("/stream?size=1023&chunk=1", None, Some("1023")),
            // unknown size, reaches the threshold at once: compressed in one shot
            ("/stream?size=1100&chunk=100", Some("gzip"), None),
            // unknown size, pauses below the threshold (not a streaming type): sent as it is
            ("/stream?size=1000&chunk=300&delay_ms=40", None, None),
            // unknown size, pauses but crosses the threshold: compressed
            (
                "/stream?size=5000&chunk=2000&delay_ms=10",
                Some("gzip"),
                None,
            ),
        ];
        for (path, encoding, length) in cases {
            let raw = get(server.addr, path, &gzip).await;
            assert_eq!(raw.status, 200);
            assert_eq!(raw.encoding(), *encoding, "{path}");
            if let Some(length) = length {
                assert_eq!(raw.header("content-length"), Some(*length), "{path}");
            }
            let size: usize = path
                .split("size=")
                .nth(1)
                .unwrap()
                .split('&')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(raw.decoded(), json_doc(size), "{path}");
            if encoding.is_some() {
                assert_eq!(
                    raw.header("content-length")
                        .map(|l| l.parse::<usize>().unwrap()),
                    raw.header("content-length").map(|_| raw.body().len())
                );
            }
        }
        // A custom threshold.
        let (server, _, _) = start_compression(CompressionLayer::new().threshold(10_000)).await;
        assert_eq!(
            get(server.addr, "/doc?size=9999", &gzip).await.encoding(),
            None
        );
        assert_eq!(
            get(server.addr, "/stream?size=9999&chunk=1000", &gzip)
                .await
                .encoding(),
            None
        );
        assert_eq!(
            get(server.addr, "/doc?size=10000", &gzip).await.encoding(),
            Some("gzip")
        );
    })
    .await;
}

#[tokio::test]
async fn each_skip_rule() {
    bounded("each_skip_rule", 30, async {
        let (server, _, _) = start_compression(CompressionLayer::new()).await;
        let gzip = [("accept-encoding", "gzip")];
        // HEAD: no body, no coding.
        let raw = request(server.addr, "HEAD", "/doc?size=4096", &gzip, Bytes::new()).await;
        assert_eq!(raw.status, 200);
        assert_eq!(raw.encoding(), None);
        assert_eq!(raw.header("content-length"), Some("4096"));
        // Statuses without a body.
        for status in [204, 304] {
            let raw = get(server.addr, &format!("/status/{status}"), &gzip).await;
            assert_eq!(raw.status.as_u16(), status);
            assert_eq!(raw.encoding(), None);
        }
        // Already encoded: left as it is (still gzip, not double-compressed).
        let raw = get(
            server.addr,
            "/encoded?size=4096",
            &[("accept-encoding", "zstd, gzip")],
        )
        .await;
        assert_eq!(raw.encoding(), Some("gzip"));
        assert_eq!(raw.decoded(), json_doc(4096));
        // A range.
        let raw = get(server.addr, "/range", &gzip).await;
        assert_eq!(raw.status, 206);
        assert_eq!(raw.encoding(), None);
        assert_eq!(raw.body(), json_doc(4096));
        // no-transform.
        let raw = get(server.addr, "/no-transform?size=4096", &gzip).await;
        assert_eq!(raw.encoding(), None);
        // gRPC.
        let raw = get(server.addr, "/grpc?size=4096", &gzip).await;
        assert_eq!(raw.encoding(), None);
        // Content types.
        for (ct, compressed) in [
            ("image/png", false),
            ("IMAGE/JPEG", false),
            ("image/svg%2Bxml", true),
            ("Image/SVG%2BXML%3B%20charset=utf-8", true),
            ("audio/mpeg", false),
            ("video/mp4", false),
            ("font/woff2", false),
            ("font/woff", false),
            ("application/zip", false),
            ("application/gzip", false),
            ("application/zstd", false),
            ("application/x-brotli", false),
            ("application/octet-stream", false),
            ("text/html%3B%20charset=utf-8", true),
            ("application/javascript", true),
            ("text/event-stream", true),
        ] {
            let raw = get(server.addr, &format!("/type?size=4096&ct={ct}"), &gzip).await;
            assert_eq!(raw.encoding().is_some(), compressed, "{ct}");
        }
        // A configured list.
        let rules = SkipRules::default().skip("text/html").compress("image/png");
        let (server, _, _) = start_compression(CompressionLayer::new().skip_rules(rules)).await;
        for (ct, compressed) in [
            ("text/html", false),
            ("image/png", true),
            ("image/jpeg", false),
        ] {
            let raw = get(server.addr, &format!("/type?size=4096&ct={ct}"), &gzip).await;
            assert_eq!(raw.encoding().is_some(), compressed, "{ct}");
        }
    })
    .await;
}

#[tokio::test]
async fn skip_rules_in_process_informational_and_opt_out() {
    use tower::ServiceExt;
    let service = ServiceBuilder::new()
        .layer(CompressionLayer::new())
        .service_fn(|request: Request<Empty<Bytes>>| async move {
            let mut response = http::Response::new(http_body_util::Full::new(json_doc(8192)));
            match request.uri().path() {
                "/101" => *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS,
                "/opt-out" => {
                    response
                        .extensions_mut()
                        .insert(tower_memory_compression::SkipCompression);
                }
                _ => {}
            }
            Ok::<_, std::convert::Infallible>(response)
        });
    for (path, compressed) in [("/101", false), ("/opt-out", false), ("/", true)] {
        let request = Request::get(path)
            .header("accept-encoding", "gzip")
            .body(Empty::new())
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        assert_eq!(
            response.headers().contains_key("content-encoding"),
            compressed,
            "{path}"
        );
    }
}

#[tokio::test]
async fn header_rules() {
    bounded("header_rules", 30, async {
        let (server, _, _) = start_compression(CompressionLayer::new()).await;
        let raw = get(server.addr, "/doc?size=8192", &[("accept-encoding", "br")]).await;
        assert_eq!(raw.encoding(), Some("br"));
        let vary: Vec<&str> = raw
            .headers
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(vary, ["Origin", "accept-encoding"]);
        assert_eq!(raw.header("etag"), Some("W/\"v1\""));
        assert_eq!(raw.header("accept-ranges"), None);
        assert_eq!(
            raw.header("content-length")
                .unwrap()
                .parse::<usize>()
                .unwrap(),
            raw.body().len()
        );
        // Not compressed because of the client: the representation still varies by it.
        let raw = get(server.addr, "/doc?size=8192", &[]).await;
        assert_eq!(raw.encoding(), None);
        let vary: Vec<&str> = raw
            .headers
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(vary, ["Origin", "accept-encoding"]);
        assert_eq!(raw.header("etag"), Some("\"v1\""));
        assert_eq!(raw.header("accept-ranges"), Some("bytes"));
        assert_eq!(raw.header("content-length"), Some("8192"));
        // Not compressed because of the content: no Vary added.
        let raw = get(
            server.addr,
            "/type?size=8192&ct=image/png",
            &[("accept-encoding", "br")],
        )
        .await;
        assert_eq!(raw.header("vary"), None);
    })
    .await;
}

/// Output frames are coalesced to at least 16 KiB (checked in process: the wire re-chunks).
#[tokio::test]
async fn frames_are_coalesced() {
    use tower::ServiceExt;
    for encoding in CODINGS {
        let service = ServiceBuilder::new()
            .layer(CompressionLayer::new())
            .service_fn(|_: Request<Empty<Bytes>>| async {
                // 1 MiB in 4 KiB chunks, some ready, some not: a stream of unknown length.
                let (mut tx, body) = http_body_util::channel::Channel::<Bytes>::new(8);
                tokio::spawn(async move {
                    let doc = json_doc(1 << 20);
                    for (i, piece) in doc.chunks(4096).enumerate() {
                        if i % 16 == 0 {
                            tokio::task::yield_now().await;
                        }
                        if tx.send_data(doc.slice_ref(piece)).await.is_err() {
                            return;
                        }
                    }
                });
                Ok::<_, std::convert::Infallible>(http::Response::new(body))
            });
        let request = Request::get("/")
            .header("accept-encoding", encoding.as_str())
            .body(Empty::new())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        let mut body = response.into_body();
        let mut frames = Vec::new();
        while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
            frames.push(frame.unwrap().into_data().unwrap());
        }
        let (last, rest) = frames.split_last().unwrap();
        assert!(!last.is_empty());
        for f in rest {
            assert!(
                f.len() >= 16 * 1024,
                "{encoding}: a frame of {} bytes",
                f.len()
            );
        }
        let all = frames.concat();
        let limits = DecodeLimits::default().max_ratio(0);
        assert_eq!(
            Decoder::decode_all(&[encoding], &all, limits).unwrap(),
            json_doc(1 << 20)
        );
    }
}

#[tokio::test]
async fn flush_policy_override_per_response() {
    use tower::ServiceExt;
    use tower_memory_compression::FlushPolicy;
    for (policy, expect_early) in [
        (None, true),
        (Some(FlushPolicy::never()), false),
        (Some(FlushPolicy::immediate()), true),
    ] {
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes>::new(4);
        let mut body = Some(body);
        let service = ServiceBuilder::new()
            .layer(CompressionLayer::new())
            .service_fn(move |_: Request<Empty<Bytes>>| {
                let mut response = http::Response::new(body.take().unwrap());
                response
                    .headers_mut()
                    .insert("content-type", "application/x-ndjson".parse().unwrap());
                if let Some(p) = policy {
                    response.extensions_mut().insert(p);
                }
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
        tx.send_data(json_doc(2000)).await.unwrap();
        let request = Request::get("/")
            .header("accept-encoding", "zstd")
            .body(Empty::new())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.headers()["content-encoding"], "zstd");
        let mut body = response.into_body();
        let first = tokio::time::timeout(
            Duration::from_millis(300),
            http_body_util::BodyExt::frame(&mut body),
        )
        .await;
        assert_eq!(first.is_ok(), expect_early, "{policy:?}");
        drop(tx);
        let mut all = match first {
            Ok(Some(frame)) => frame.unwrap().into_data().unwrap().to_vec(),
            _ => Vec::new(),
        };
        while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
            all.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        assert_eq!(
            Decoder::decode_all(&[Encoding::Zstd], &all, DecodeLimits::default()).unwrap(),
            json_doc(2000)
        );
    }
}

/// The window a zstd frame declares (base-two logarithm), from its header.
fn zstd_window_log(frame: &[u8]) -> u32 {
    assert_eq!(&frame[..4], &[0x28, 0xB5, 0x2F, 0xFD]);
    let descriptor = frame[4];
    assert_eq!(
        descriptor & 0x20,
        0,
        "single-segment frames carry no window descriptor"
    );
    let window = frame[5];
    10 + u32::from(window >> 3)
}

#[tokio::test]
async fn pressure_transitions() {
    bounded("pressure_transitions", 30, async {
        let signal = PressureSignal::new();
        let (server, _, _) =
            start_compression(CompressionLayer::new().pressure(signal.clone())).await;
        // A stream of unknown length, delivered with pauses: compressed as it streams.
        let path = "/stream?size=200000&chunk=20000&delay_ms=2";
        let fetch = |encoding: &'static str| {
            let addr = server.addr;
            async move { get(addr, path, &[("accept-encoding", encoding)]).await }
        };
        let normal_gzip = fetch("gzip").await;
        let normal_zstd = fetch("zstd").await;
        assert_eq!(normal_gzip.encoding(), Some("gzip"));
        // gzip header byte 8 (XFL): 0 for the default level, 4 for the fastest.
        assert_eq!(normal_gzip.body()[8], 0);
        assert_eq!(zstd_window_log(&normal_zstd.body()), 18);

        signal.set(Pressure::Warning);
        let warn_gzip = fetch("gzip").await;
        let warn_zstd = fetch("zstd").await;
        assert_eq!(warn_gzip.encoding(), Some("gzip"));
        assert_eq!(warn_gzip.body()[8], 4, "fastest level under Warning");
        assert!(warn_gzip.body().len() > normal_gzip.body().len());
        assert_eq!(
            zstd_window_log(&warn_zstd.body()),
            17,
            "smaller window under Warning"
        );
        assert_eq!(warn_gzip.decoded(), json_doc(200_000));
        assert_eq!(warn_zstd.decoded(), json_doc(200_000));

        signal.set(Pressure::Critical);
        let critical = fetch("gzip").await;
        assert_eq!(critical.encoding(), None, "no compression under Critical");
        assert_eq!(critical.header("vary"), Some("accept-encoding"));
        assert_eq!(critical.body(), json_doc(200_000));

        signal.set(Pressure::Normal);
        let again = fetch("gzip").await;
        assert_eq!(again.encoding(), Some("gzip"));
        assert_eq!(again.body()[8], 0);
        // (Exact sizes depend on when time-based flushes fell; level 6 beats level 1 anyway.)
        assert!(again.body().len() < warn_gzip.body().len());
        assert_eq!(again.decoded(), json_doc(200_000));
    })
    .await;
}

#[test]
fn metrics_by_encoding_and_skip_reason() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use tower::ServiceExt;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut compressed_len = 0;
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let service = ServiceBuilder::new()
                .layer(CompressionLayer::new())
                .service_fn(|request: Request<Empty<Bytes>>| async move {
                    let (size, ct) = match request.uri().path() {
                        "/small" => (100, "application/json"),
                        "/png" => (5000, "image/png"),
                        _ => (50_000, "application/json"),
                    };
                    let mut response =
                        http::Response::new(http_body_util::Full::new(json_doc(size)));
                    response
                        .headers_mut()
                        .insert("content-type", ct.parse().unwrap());
                    Ok::<_, std::convert::Infallible>(response)
                });
            for path in ["/doc", "/small", "/png"] {
                let request = Request::get(path)
                    .header("accept-encoding", "gzip")
                    .body(Empty::new())
                    .unwrap();
                let response = service.clone().oneshot(request).await.unwrap();
                let body = http_body_util::BodyExt::collect(response.into_body())
                    .await
                    .unwrap()
                    .to_bytes();
                if path == "/doc" {
                    compressed_len = body.len() as u64;
                }
            }
        })
    });
    type Counter = (String, Vec<(String, String)>, u64);
    let counters: Vec<Counter> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => Some((
                key.key().name().to_owned(),
                key.key()
                    .labels()
                    .map(|l| (l.key().to_owned(), l.value().to_owned()))
                    .collect(),
                n,
            )),
            _ => None,
        })
        .collect();
    let find = |name: &str, label: (&str, &str)| {
        counters
            .iter()
            .find(|(n, labels, _)| {
                n == name && labels.iter().any(|(k, v)| k == label.0 && v == label.1)
            })
            .map(|c| c.2)
    };
    assert_eq!(
        find("http_compression_input_bytes_total", ("encoding", "gzip")),
        Some(50_000)
    );
    assert_eq!(
        find("http_compression_output_bytes_total", ("encoding", "gzip")),
        Some(compressed_len)
    );
    assert_eq!(
        find("http_compression_responses_total", ("encoding", "gzip")),
        Some(1)
    );
    assert_eq!(
        find(
            "http_compression_skipped_total",
            ("reason", "below_threshold")
        ),
        Some(1)
    );
    assert_eq!(
        find("http_compression_skipped_total", ("reason", "content_type")),
        Some(1)
    );
}
