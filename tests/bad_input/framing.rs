//! HTTP/1.1 framing: lengths that lie, conflict or overflow, chunk-size lines that never end, a
//! body that never ends, headers one byte at a time, header blocks too large.

use std::time::Duration;

use crate::support::invariants::{MIB, Watch};
use crate::support::raw::{NoResponse, Raw, head};
use crate::{matrix_server, run};
use test_support::chunk;

const T: Duration = Duration::from_secs(10);

/// Uploads answer `{"bytes": n, ...}`.
fn uploaded_bytes(body: &[u8]) -> u64 {
    let json: serde_json::Value = serde_json::from_slice(body).expect("upload answer is JSON");
    json["bytes"].as_u64().expect("bytes")
}

#[test]
fn framing() {
    let server = matrix_server(&[]);
    let watch = Watch::of(&server);
    let addr = server.addr.clone();
    run(Duration::from_secs(120), async {
        // The declared length wins: the first 5 bytes are the body, the rest is read as the next
        // request, which is not one.
        let case = watch.case("Content-Length shorter than the body", 4 * MIB);
        let mut c = Raw::connect(&addr).await;
        let mut bytes = head("POST", "/api/uploads", &["Content-Length: 5"]);
        bytes.extend_from_slice(b"helloGARBAGE IN THE PIPE\r\n\r\n");
        let first = c.exchange(&bytes, T).await.expect("a response");
        assert_eq!(first.status, 200, "{}", first.text());
        assert_eq!(uploaded_bytes(&first.body), 5);
        let second = c.response(T).await.expect("a response to the leftover");
        assert_eq!(second.status, 400);
        case.finish("200 for the 5 declared bytes, then 400", 1)
            .await;

        // The client ends its side before the declared length: the body broke off.
        let case = watch.case("Content-Length longer than the body", 4 * MIB);
        let mut c = Raw::connect(&addr).await;
        c.send(&head("POST", "/api/uploads", &["Content-Length: 100"]))
            .await
            .unwrap();
        c.send(b"only ten b").await.unwrap();
        c.shutdown_write().await;
        let status = match c.response(T).await {
            Ok(r) => r.status.to_string(),
            Err(NoResponse::Closed(_)) => "closed".to_string(),
            Err(NoResponse::Timeout) => panic!("no answer to a body cut short"),
        };
        assert_eq!(status, "400");
        case.finish("400", 0).await;

        let case = watch.case("two different Content-Lengths", 4 * MIB);
        let mut c = Raw::connect(&addr).await;
        let mut bytes = head(
            "POST",
            "/api/uploads",
            &["Content-Length: 5", "Content-Length: 6"],
        );
        bytes.extend_from_slice(b"hello!");
        let r = c.exchange(&bytes, T).await.expect("a response");
        assert_eq!(r.status, 400);
        assert!(c.reader.closed(T).await, "the connection closes");
        case.finish("400, connection closed", 0).await;

        // RFC 9112 6.3: Transfer-Encoding overrides Content-Length.
        let case = watch.case("Content-Length with Transfer-Encoding", 4 * MIB);
        let mut c = Raw::connect(&addr).await;
        let mut bytes = head(
            "POST",
            "/api/uploads",
            &["Content-Length: 3", "Transfer-Encoding: chunked"],
        );
        bytes.extend(chunk(b"0123456789"));
        bytes.extend_from_slice(b"0\r\n\r\n");
        let r = c.exchange(&bytes, T).await.expect("a response");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(uploaded_bytes(&r.body), 10, "the chunked body, not 3 bytes");
        case.finish("200, the chunked body (TE overrides CL)", 1)
            .await;

        for (name, value) in [
            ("non-numeric Content-Length", "12abc"),
            ("negative Content-Length", "-1"),
            ("overflowing Content-Length", "99999999999999999999999"),
        ] {
            let case = watch.case(name, 4 * MIB);
            let mut c = Raw::connect(&addr).await;
            let r = c
                .exchange(
                    &head(
                        "POST",
                        "/api/uploads",
                        &[&format!("Content-Length: {value}")],
                    ),
                    T,
                )
                .await
                .expect("a response");
            assert_eq!(r.status, 400, "{name}");
            case.finish("400", 0).await;
        }

        // The largest lengths: hyper refuses above 2^64 - 3 itself (a 431, as its "too large"
        // parse error); the largest it accepts is refused by the body layer before reading.
        for (name, value, status, answer) in [
            (
                "Content-Length of 2^64 - 1",
                "18446744073709551615",
                431,
                "431 (hyper)",
            ),
            (
                "Content-Length of 2^64 - 3",
                "18446744073709551613",
                413,
                "413 before reading",
            ),
        ] {
            let case = watch.case(name, 4 * MIB);
            let mut c = Raw::connect(&addr).await;
            let r = c
                .exchange(
                    &head(
                        "POST",
                        "/api/uploads",
                        &[&format!("Content-Length: {value}")],
                    ),
                    T,
                )
                .await
                .expect("a response");
            assert_eq!(r.status, status, "{name}");
            case.finish(answer, 0).await;
        }

        // An overflowing size and an endless extension are hyper's parse errors (400). An
        // endless run of leading zeros is a size hyper keeps reading without a byte of data:
        // the body layer's rate guard ends it (408 once its 5 s grace has passed).
        for (name, line, status) in [
            (
                "chunk size that overflows",
                b"ffffffffffffffffffffffff\r\n".to_vec(),
                400,
            ),
            (
                "chunk-size line of 1 MiB (extension)",
                {
                    let mut l = b"5;ext=".to_vec();
                    l.extend(std::iter::repeat_n(b'a', 1 << 20));
                    l.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
                    l
                },
                400,
            ),
            (
                "chunk-size line of 1 MiB (leading zeros)",
                std::iter::repeat_n(b'0', 1 << 20).collect(),
                408,
            ),
        ] {
            let case = watch.case(name, 4 * MIB);
            let mut c = Raw::connect(&addr).await;
            let mut bytes = head("POST", "/api/uploads", &["Transfer-Encoding: chunked"]);
            bytes.extend(line);
            let r = c.exchange(&bytes, T).await.expect("a response");
            assert_eq!(r.status, status, "{name}: {}", r.text());
            case.finish(status.to_string(), 0).await;
        }

        // Chunks for as long as the server takes them: 413 at MAX_BODY_SIZE (16 MiB), having held
        // at most the buffering threshold (4 MiB) in memory.
        let case = watch.case(
            "chunked body over the limit (one that never ends)",
            12 * MIB,
        );
        let Raw {
            mut reader,
            mut writer,
        } = Raw::connect(&addr).await;
        let writing = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let block = chunk(&vec![b'x'; 64 << 10]);
            let mut sent = 0u64;
            if writer
                .write_all(&head(
                    "POST",
                    "/api/uploads",
                    &["Transfer-Encoding: chunked"],
                ))
                .await
                .is_err()
            {
                return sent;
            }
            // Bounded: 64 MiB is four times the limit.
            for _ in 0..1024 {
                if writer.write_all(&block).await.is_err() {
                    break;
                }
                sent += 64 << 10;
            }
            sent
        });
        let r = reader
            .response(Duration::from_secs(30))
            .await
            .expect("a response");
        assert_eq!(r.status, 413, "{}", r.text());
        drop(reader);
        let sent = writing.await.unwrap();
        assert!(
            sent < 64 << 20,
            "the server stopped reading: {sent} bytes sent"
        );
        case.finish("413 at the 16 MiB limit", 0).await;

        // One byte per write, 2 ms apart: parsed across some 60 reads.
        let case = watch.case("headers byte by byte", 4 * MIB);
        let mut c = Raw::connect(&addr).await;
        c.send_paced(
            &head("GET", "/api/hello", &["Accept: */*", "User-Agent: slow"]),
            1,
            Duration::from_millis(2),
        )
        .await
        .unwrap();
        let r = c.response(T).await.expect("a response");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"hello"[..]));
        case.finish("200", 0).await;

        // The head is capped at 64 KiB (MAX_HEADER_BYTES; hyper alone allows about 400 KiB).
        let case = watch.case("header block of 100 KiB", 4 * MIB);
        let mut c = Raw::connect(&addr).await;
        let big = format!("X-Big: {}", "a".repeat(100 << 10));
        let r = c
            .exchange(&head("GET", "/api/hello", &[&big]), T)
            .await
            .expect("a response");
        assert_eq!(r.status, 431);
        case.finish("431", 0).await;

        let case = watch.case("oversized header block (1 MiB)", 4 * MIB);
        let mut c = Raw::connect(&addr).await;
        let big = format!("X-Big: {}", "a".repeat(1 << 20));
        let r = c
            .exchange(&head("GET", "/api/hello", &[&big]), T)
            .await
            .expect("a response");
        assert_eq!(r.status, 431);
        case.finish("431", 0).await;

        let case = watch.case("10,000 header lines", 4 * MIB);
        let mut c = Raw::connect(&addr).await;
        let lines: Vec<String> = (0..10_000).map(|i| format!("X-H{i}: v")).collect();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let r = c
            .exchange(&head("GET", "/api/hello", &refs), T)
            .await
            .expect("a response");
        assert_eq!(r.status, 431);
        case.finish("431", 0).await;
    });
}
