//! Memory per in-flight compressed response (a bench driver, built as an example so that it sits
//! beside the server it starts in `target/release/examples`): starts a fresh `compression_bench_server` per case,
//! holds `--connections` responses open mid-stream (the server has sent the first 64 KiB of the
//! document into the encoder and waits), and reads the server's resident set (`VmRSS`, which
//! counts the Rust heap and the C heap of libzstd alike) before and after.
//!
//! Cases: no compression, then per encoding tower-http with flate2's miniz_oxide and with its
//! zlib-rs (the copies of the server `benches/e2e.sh` builds outside the workspace) and this
//! layer; every case once per rep.
//!
//! ```text
//! crates/tower-memory-compression/benches/e2e.sh   # builds all the servers (REPS=0: nothing else)
//! cargo build --release -p tower-memory-compression --features compression-full,decompression-full --example compression_bench_server --example compression_mem_bench
//! target/release/examples/compression_mem_bench [--connections 256] [--reps 3] [--known 0|1] [--first 65536] [--cases none:gzip,layer:zstd,...]
//! ```

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use test_support::ChildServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A fresh server in `mode` on a free port; killed on drop.
fn start(server: &std::path::Path, mode: &str) -> ChildServer {
    let mut cmd = Command::new(server);
    cmd.args(["--mode", mode, "--port", "0", "--workers", "1"])
        .stderr(Stdio::inherit());
    ChildServer::spawn(cmd, Duration::from_secs(60), |line| {
        let port = line.strip_prefix("LISTENING ")?.split(' ').next()?;
        Some(format!("127.0.0.1:{port}"))
    })
}

fn rss(pid: u32) -> u64 {
    tower_memory_probe::process_memory_of(pid)
        .unwrap()
        .rss_bytes
}

/// Opens a connection, sends the request, returns once the response head (and, when the server
/// sends one, a first body chunk) has arrived. The stream is kept open by the caller.
async fn hold(port: u16, path: &str, encoding: &str) -> (TcpStream, bool) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\naccept-encoding: {encoding}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 128 * 1024];
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    // Until the end of the head...
    let head_end = loop {
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf[got..]))
            .await
            .expect("response head in time")
            .unwrap();
        assert!(n > 0, "server closed the connection");
        got += n;
        if let Some(i) = buf[..got].windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    // ...and a first body chunk if one comes (the server has then compressed what it got).
    let mut body = got > head_end;
    if !body
        && let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf[got..])).await
    {
        body = n > 0;
    }
    (stream, body)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let mut connections = 256usize;
    let mut reps = 3usize;
    let mut known = 0u8;
    let mut first = 64 * 1024usize;
    let mut only: Option<Vec<String>> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().expect("a value after the flag");
        match arg.as_str() {
            "--connections" => connections = value().parse().unwrap(),
            "--reps" => reps = value().parse().unwrap(),
            "--known" => known = value().parse().unwrap(),
            "--first" => first = value().parse().unwrap(),
            // e.g. --cases none:gzip,layer:zstd
            "--cases" => only = Some(value().split(',').map(str::to_owned).collect()),
            other => panic!("unknown argument {other:?}"),
        }
    }
    let server = std::env::current_exe()
        .unwrap()
        .with_file_name("compression_bench_server");
    assert!(
        server.exists(),
        "build the server first: cargo build --release -p tower-memory-compression --example compression_bench_server"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let path = format!("/api/documents/stream?first={first}&known={known}");
    println!(
        "{connections} responses held open after {first} bytes of a 256 KiB JSON document (declared length: {}), {reps} reps, fresh server per run",
        known == 1
    );
    println!(
        "{:<18} {:<7} {:>10} {:>10} {:>14} {:>16}",
        "mode", "enc", "idle MiB", "held MiB", "KiB/response", "net of none KiB"
    );
    // Every case once per rep, reps outermost: A, B, C, A, B, C, ... so that drift over the
    // run spreads over all cases alike.
    let mut cases = vec![("none", "gzip")];
    for encoding in ["gzip", "deflate", "zstd", "br"] {
        for mode in ["tower-http-miniz", "tower-http-zlib-rs", "layer"] {
            cases.push((mode, encoding));
        }
    }
    cases.retain(|(mode, encoding)| {
        only.as_ref()
            .is_none_or(|o| o.iter().any(|c| *c == format!("{mode}:{encoding}")))
    });
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut idle: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut held: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    let mut flushed = vec![0; cases.len()];
    for _ in 0..reps {
        for (i, &(mode, encoding)) in cases.iter().enumerate() {
            let server = start(&binary(&server, mode), server_mode(mode));
            let port: u16 = server.addr().rsplit(':').next().unwrap().parse().unwrap();
            runtime.block_on(async {
                // Warm up: the runtime, the connection path and the codec once.
                for _ in 0..4 {
                    let (s, _) = hold(port, &path, encoding).await;
                    drop(s);
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                let before = rss(server.pid());
                let tasks: Vec<_> = (0..connections)
                    .map(|_| {
                        let path = path.clone();
                        tokio::spawn(async move { hold(port, &path, encoding).await })
                    })
                    .collect();
                let mut streams = Vec::with_capacity(connections);
                flushed[i] = 0;
                for t in tasks {
                    let (s, body) = t.await.unwrap();
                    flushed[i] += usize::from(body);
                    streams.push(s);
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                let after = rss(server.pid());
                idle[i].push(before as f64 / 1048576.0);
                held[i].push(after as f64 / 1048576.0);
                per[i].push(after.saturating_sub(before) as f64 / connections as f64 / 1024.0);
                drop(streams);
            });
        }
    }
    let mut none_per = 0.0;
    for (i, &(mode, encoding)) in cases.iter().enumerate() {
        let per = median(per[i].clone());
        if mode == "none" {
            none_per = per;
        }
        println!(
            "{mode:<18} {:<7} {:>10.1} {:>10.1} {:>14.1} {:>16.1}   (first chunk reached the client: {}/{connections})",
            if mode == "none" { "-" } else { encoding },
            median(idle[i].clone()),
            median(held[i].clone()),
            per,
            per - none_per,
            flushed[i],
        );
    }
}

/// The server binary for `mode`: tower-http's modes run the copies `benches/e2e.sh` builds
/// outside the workspace (flate2 with miniz_oxide or zlib-rs), beside this driver.
fn binary(server: &std::path::Path, mode: &str) -> std::path::PathBuf {
    match mode {
        "tower-http-miniz" | "tower-http-zlib-rs" => {
            let path = server.with_file_name(format!("compression_bench_server-{mode}"));
            assert!(
                path.exists(),
                "run benches/e2e.sh first: it builds {path:?}"
            );
            path
        }
        _ => server.to_path_buf(),
    }
}

/// The `--mode` the server takes for a bench mode.
fn server_mode(mode: &str) -> &str {
    if mode.starts_with("tower-http") {
        "tower-http"
    } else {
        mode
    }
}
