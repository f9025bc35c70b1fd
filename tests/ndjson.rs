//! Large JSON payloads stream: `POST /api/documents/stream` takes 200 MiB of NDJSON, far above
//! the 10 MiB buffer threshold, and processes it record by record. The server's peak resident
//! set (`VmHWM`) grows by a small fraction of the body.

mod support;

use std::io::{BufWriter, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{Server, curl};

const MIB: u64 = 1 << 20;
/// Every record is padded to this many bytes, newline included.
const LINE: usize = 256;

/// Record `id` as one NDJSON line of exactly [`LINE`] bytes.
fn record(id: u64, out: &mut Vec<u8>) {
    let head = format!(r#"{{"id":{id},"name":"record {id}","score":1.5,"tags":["a","b"],"pad":""#);
    out.extend_from_slice(head.as_bytes());
    out.resize(out.len() + LINE - head.len() - 3, b'x');
    out.extend_from_slice(b"\"}\n");
}

fn peak_rss(pid: u32) -> u64 {
    tower_memory_probe::process_memory_of(pid)
        .unwrap()
        .peak_rss_bytes
}

/// POSTs `records` records generated on the fly (never held whole by the test either), with a
/// Content-Length; returns the status line and the body.
fn post_generated(addr: &str, records: u64) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let length = records * LINE as u64;
    let mut out = BufWriter::with_capacity(256 << 10, stream.try_clone().unwrap());
    write!(
        out,
        "POST /api/documents/stream HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-ndjson\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut line = Vec::with_capacity(LINE);
    for id in 0..records {
        line.clear();
        record(id, &mut line);
        assert_eq!(line.len(), LINE);
        out.write_all(&line).unwrap();
    }
    out.flush().unwrap();
    drop(out);
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

#[test]
fn a_200_mib_ndjson_body_is_processed_record_by_record_in_bounded_memory() {
    let server = Server::start("server", &[]);
    // Warm up the route (and its first-request path) with a small body.
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/x-ndjson",
        "--data-binary",
        "{\"id\":7,\"score\":2}\n{\"id\":3}",
        &server.url("/api/documents/stream"),
    ]);
    assert_eq!(status, 200, "{body}");
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["records"], 2);
    assert_eq!(summary["max_id"], 7);
    assert_eq!(summary["score_sum"], 2.0);
    let before = peak_rss(server.pid());

    let records = 200 * MIB / LINE as u64;
    let (status, body) = post_generated(&server.addr, records);
    assert!(status.contains(" 200 "), "{status}: {body}");
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["records"], records);
    assert_eq!(summary["bytes"], 200 * MIB);
    assert_eq!(summary["max_id"], records - 1);
    assert_eq!(summary["score_sum"], 1.5 * records as f64);

    let grown = peak_rss(server.pid()).saturating_sub(before);
    eprintln!("peak RSS grew by {} KiB for a 200 MiB body", grown >> 10);
    assert!(
        grown < 24 * MIB,
        "peak RSS grew by {} MiB: the body was buffered",
        grown / MIB
    );
}

#[test]
fn bad_records_get_a_clear_answer_and_the_server_serves_on() {
    let server = Server::start("server", &[]);
    let url = server.url("/api/documents/stream");
    let post = |data: &str| {
        curl(&[
            "-X",
            "POST",
            "-H",
            "content-type: application/x-ndjson",
            "--data-binary",
            data,
            &url,
        ])
    };
    // A broken third line: 400 naming it.
    let (status, body) = post("{\"id\":1}\r\n\n{\"id\":2}\n{\"id\":\n");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("line 4"), "{body}");
    // Not an object.
    let (status, body) = post("[1,2,3]\n");
    assert_eq!(status, 400, "{body}");
    // A record over 1 MiB: 413, whatever the frames it arrives in.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("long.ndjson");
    let mut long = b"{\"id\":1,\"pad\":\"".to_vec();
    long.resize(long.len() + (1 << 20) + 10, b'x');
    long.extend_from_slice(b"\"}\n");
    std::fs::write(&file, &long).unwrap();
    let (status, body) = curl(&[
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", file.display()),
        &url,
    ]);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("line 1"), "{body}");
    // Chunked (no length), in several frames: the same summary.
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        "{\"id\":5,\"score\":0.5}\n{\"id\":9,\"score\":0.25}\n",
        &url,
    ]);
    assert_eq!(status, 200, "{body}");
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (summary["records"].clone(), summary["max_id"].clone()),
        (2.into(), 9.into())
    );
    assert_eq!(curl(&[&server.url("/api/health/live")]).0, 200);
}
