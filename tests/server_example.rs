//! The main job as a black box: start `examples/server` as a process, use it with curl, stop it.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Server, curl};
use test_support::{example_path, send_signal, wait_for};

#[test]
fn serves_hello_and_stops_cleanly_on_sigterm() {
    let mut server = Server::start("server", &[]);
    let (status, body) = curl(&[&server.url("/api/hello")]);
    assert_eq!((status, body.as_str()), (200, "hello"));
    let exit = server.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(exit.success(), "exit status {exit}");
}

#[test]
fn stops_cleanly_on_sigint() {
    let mut server = Server::start("server", &[]);
    let exit = server.signal_and_wait("INT", Duration::from_secs(10));
    assert!(exit.success(), "exit status {exit}");
}

#[test]
fn documents_are_realistic_json_and_compressed_on_request() {
    let server = Server::start("server", &[]);
    let url = server.url("/api/documents");
    let (status, body) = curl(&[&url]);
    assert_eq!(status, 200);
    let docs: serde_json::Value = serde_json::from_str(&body).unwrap();
    let docs = docs.as_array().unwrap();
    assert_eq!(docs.len(), 1000);
    assert!(
        (240 << 10..272 << 10).contains(&body.len()),
        "about 256 KiB: {}",
        body.len()
    );
    for key in ["id", "name", "email", "created_at", "tags", "address"] {
        assert!(docs[0].get(key).is_some(), "{key} missing: {}", docs[0]);
    }
    assert!(docs[0]["tags"].as_array().is_some_and(|t| !t.is_empty()));

    // Each encoding round-trips through curl's own decoders, and the wire bytes are smaller.
    for encoding in ["gzip", "br", "zstd", "deflate"] {
        let out = Command::new("curl")
            .args(["-sS", "-D", "-", "-o", "/dev/null", "-H"])
            .arg(format!("Accept-Encoding: {encoding}"))
            .arg(&url)
            .output()
            .unwrap();
        let headers = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(
            headers.contains(&format!("content-encoding: {encoding}")),
            "{encoding}: {headers}"
        );
        assert!(headers.contains("vary: accept-encoding"), "{headers}");
    }
    let (status, decoded) = curl(&["--compressed", &url]);
    assert_eq!((status, decoded.len()), (200, body.len()));
    assert_eq!(decoded, body);

    let (status, small) = curl(&[&server.url("/api/documents?count=3")]);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Vec<serde_json::Value>>(&small)
            .unwrap()
            .len(),
        3
    );
    let (status, _) = curl(&[&server.url("/api/documents?count=100001")]);
    assert_eq!(status, 400);
}

#[test]
fn documents_post_and_uploads_stream_to_disk() {
    let server = Server::start(
        "server",
        &[
            ("STREAM_BUFFER_THRESHOLD", "1048576"),
            ("MAX_BODY_SIZE", "33554432"),
        ],
    );
    let (status, body) = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data-binary",
        r#"[{"a":1},{"b":2},3,"four"]"#,
        &server.url("/api/documents"),
    ]);
    assert_eq!((status, body.as_str()), (200, r#"{"received":4}"#));
    let (status, _) = curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data-binary",
        "[1, 2",
        &server.url("/api/documents"),
    ]);
    assert_eq!(status, 400);

    // 8 MiB, over the 1 MiB threshold: streamed into UPLOAD_DIR and kept there.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("upload.bin");
    let data: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let (status, body) = curl(&[
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", file.display()),
        &server.url("/api/uploads"),
    ]);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    use sha2::Digest;
    assert_eq!(answer["bytes"], 8 << 20);
    assert_eq!(answer["sha256"], hex::encode(sha2::Sha256::digest(&data)));
    let kept: Vec<_> = std::fs::read_dir(server.upload_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read(&kept[0]).unwrap(), data);

    // Over MAX_BODY_SIZE: 413 before reading, nothing left in the directory.
    let big = dir.path().join("big.bin");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    let (status, _) = curl(&[
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", big.display()),
        &server.url("/api/uploads"),
    ]);
    assert_eq!(status, 413);
    assert_eq!(
        std::fs::read_dir(server.upload_dir.path()).unwrap().count(),
        1
    );
}

#[test]
fn events_arrive_one_by_one() {
    let server = Server::start("server", &[]);
    let start = Instant::now();
    let (status, body) = curl(&["-N", &server.url("/api/events?count=4&interval_ms=150")]);
    assert_eq!(status, 200);
    let data: Vec<&str> = body.lines().filter(|l| l.starts_with("data:")).collect();
    assert_eq!(data.len(), 4, "{body}");
    assert!(data[3].contains(r#""seq":3"#));
    assert!(start.elapsed() >= Duration::from_millis(450));
    let (status, _) = curl(&[&server.url("/api/events?count=100000")]);
    assert_eq!(status, 400);
}

#[test]
fn heavy_reports_are_measured_and_the_quota_aborts_the_largest() {
    let server = Server::start("server", &[("MAX_REQUEST_MEMORY", "104857600")]);
    let (status, body) = curl(&[&server.url("/api/reports/heavy?mib=60")]);
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["bytes"], 60 << 20);
    let charged = report["allocated_bytes"].as_u64().unwrap();
    assert!((60 << 20..66 << 20).contains(&charged), "charged {charged}");

    // Over the 100 MiB quota: aborted at a poll boundary with 503, the server lives on.
    let (status, body) = curl(&[&server.url("/api/reports/heavy?mib=400")]);
    assert_eq!(status, 503, "{body}");
    let (status, _) = curl(&[&server.url("/api/hello")]);
    assert_eq!(status, 200);
    let (status, _) = curl(&[&server.url("/api/reports/heavy?mib=4097")]);
    assert_eq!(status, 400);

    let (_, metrics) = curl(&[&server.url("/api/metrics")]);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("http_heavy_requests_total{")
                && l.contains(r#"route="/api/reports/heavy""#)),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("http_requests_aborted_total{") && l.contains("quota")),
        "{metrics}"
    );
    let (_, health) = curl(&[&server.url("/api/health")]);
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert_eq!(
        health["routes"][0]["route"], "/api/reports/heavy",
        "{health}"
    );
    // The peak stays near the quota, not near the 400 MiB that was asked for.
    let peak = tower_memory_probe::process_memory_of(server.pid())
        .unwrap()
        .peak_rss_bytes;
    assert!(peak < 250 << 20, "peak RSS {} MiB", peak >> 20);
}

#[test]
fn readiness_turns_503_while_draining_and_in_flight_requests_finish() {
    let mut server = Server::start("server", &[("DRAIN_DELAY_MS", "3000")]);
    let events = server.url("/api/events?count=8&interval_ms=400");
    let in_flight = std::thread::spawn(move || curl(&["-N", &events]));
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = curl(&[&server.url("/api/health/ready")]);
    assert_eq!(status, 200);

    send_signal(server.pid(), "TERM");
    let ready = server.url("/api/health/ready");
    let body = wait_for(
        Duration::from_secs(2),
        "readiness 503 after SIGTERM",
        || {
            let (status, body) = curl(&[&ready]);
            (status == 503).then_some(body)
        },
    );
    assert!(body.contains("draining"), "{body}");

    // The stream that was running when the signal came is served to its end.
    let (status, body) = in_flight.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        body.lines().filter(|l| l.starts_with("data:")).count(),
        8,
        "{body}"
    );
    let exit = server.wait_exit(Duration::from_secs(10));
    assert!(exit.success(), "exit status {exit}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut server = Server::start("server", &[("LOG_FORMAT", "json"), ("RUST_LOG", "info")]);
    let (status, _) = curl(&[&server.url("/api/reports/heavy?mib=60")]);
    assert_eq!(status, 200);
    let exit = server.signal_and_wait("TERM", Duration::from_secs(10));
    assert!(exit.success());
    std::thread::sleep(Duration::from_millis(100));
    let lines = server.lines();
    assert!(lines.len() >= 2, "{lines:?}");
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value.get("level").is_some(), "{line}");
    }
    // The heavy request's warning is among them, with its figures as fields.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"WARN\"") && l.contains("/api/reports/heavy")),
        "{lines:?}"
    );
}

#[test]
fn metrics_prefix_renames_this_workspace_s_metrics_only() {
    let server = Server::start("server", &[("METRICS_PREFIX", "myapp")]);
    let (status, _) = curl(&[&server.url("/api/hello")]);
    assert_eq!(status, 200);
    let (status, metrics) = curl(&[&server.url("/api/metrics")]);
    assert_eq!(status, 200);
    let names: Vec<&str> = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap())
        .collect();
    for expected in [
        "myapp_memory_usage_bytes",
        "myapp_http_request_allocated_bytes_count",
    ] {
        assert!(names.contains(&expected), "{expected} missing: {metrics}");
    }
    let unprefixed: Vec<&&str> = names.iter().filter(|n| !n.starts_with("myapp_")).collect();
    assert!(
        unprefixed.is_empty(),
        "emitted without the prefix: {unprefixed:?}"
    );
}

#[test]
fn bad_configuration_stops_the_server_naming_the_variable() {
    for (name, value) in [
        ("PORT", "eighty"),
        ("MEMORY_WARNING_THRESHOLD", "75%"),
        ("MAX_REQUEST_MEMORY", "-1"),
        ("METRICS_PREFIX", "my-app"),
        ("LOG_FORMAT", "xml"),
        ("MAX_HEADER_BYTES", "100"),
        ("WRITE_TIMEOUT_MS", "soon"),
        ("FAULT_ROUTES", "maybe"),
    ] {
        let out = Command::new(example_path("server"))
            .env("PORT", "0")
            .env(name, value)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(name) && stderr.contains(value), "{stderr}");
    }
}

#[test]
fn heap_profile_needs_the_token_and_is_a_gzipped_profile() {
    let token = "0123456789abcdef-test";
    let server = Server::start("server", &[("HEAP_PROFILE_TOKEN", token)]);
    let url = server.url("/api/debug/pprof/heap");
    let (status, _) = curl(&[&url]);
    assert_eq!(status, 401);
    let (status, _) = curl(&["-H", "Authorization: Bearer wrong-token-0123456", &url]);
    assert_eq!(status, 401);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("heap.pb.gz");
    let (status, _) = curl(&[
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-o",
        file.to_str().unwrap(),
        &url,
    ]);
    assert_eq!(status, 200);
    let profile = std::fs::read(&file).unwrap();
    assert_eq!(&profile[..2], &[0x1f, 0x8b], "gzip magic");
    assert!(profile.len() > 100);

    let plain = Server::start("server", &[]);
    let (status, _) = curl(&[&plain.url("/api/debug/pprof/heap")]);
    assert_eq!(status, 404);
}

#[test]
fn uploads_of_unknown_length_and_slow_clients_get_their_statuses() {
    let server = Server::start("server", &[("MAX_BODY_SIZE", "1048576")]);
    // A chunked body over the limit: 413 even though no length was declared.
    let mut child = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args(["-H", "Transfer-Encoding: chunked", "--data-binary", "@-"])
        .arg(server.url("/api/uploads"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        // 1.25 MiB against a 1 MiB limit: little is left unread when the server answers.
        let block = vec![b'x'; 64 << 10];
        for _ in 0..20 {
            if stdin.write_all(&block).is_err() {
                break;
            }
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "413");
    let (status, _) = curl(&[&server.url("/api/hello")]);
    assert_eq!(status, 200);
}

#[test]
fn deprecated_variable_names_still_work_with_a_warning() {
    let server = Server::start(
        "server",
        &[
            ("STREAM_FILE_THRESHOLD", "1048576"),
            ("MEMORY_CLEANUP_INTERVAL", "60000"),
        ],
    );
    // Printed after the address Server::start waits for.
    let config = server.wait_for_line(Duration::from_secs(10), "the configuration line", |l| {
        l.starts_with("configuration ")
    });
    let lines = server.lines();
    let config: serde_json::Value =
        serde_json::from_str(config.trim_start_matches("configuration ")).unwrap();
    assert_eq!(config["stream_buffer_threshold"], 1_048_576, "{config}");
    assert_eq!(config["memory_reclaim_interval_ms"], 60_000, "{config}");
    for (old, new) in [
        ("STREAM_FILE_THRESHOLD", "STREAM_BUFFER_THRESHOLD"),
        ("MEMORY_CLEANUP_INTERVAL", "MEMORY_RECLAIM_INTERVAL"),
    ] {
        let warned = lines
            .iter()
            .filter(|l| {
                l.contains("WARN") && l.contains(&format!("{old} is deprecated: use {new}"))
            })
            .count();
        assert_eq!(warned, 1, "{old}: {lines:?}");
    }
}
