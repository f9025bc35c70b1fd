//! Black-box tests of `examples/health_server.rs` as a separate process: configuration from the
//! environment, the endpoints, drain on SIGTERM with a graceful exit, a bad variable refusing to
//! start, and the resident set of the server process after a burst under `memory-first`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use test_support::{ChildServer, example_path, send_signal};

fn example() -> std::path::PathBuf {
    example_path("health_server")
}

fn start(env: &[(&str, &str)]) -> ChildServer {
    let mut cmd = Command::new(example());
    cmd.env("ADDR", "127.0.0.1:0")
        .env("DRAIN_SECONDS", "3")
        // The host's cgroup (shared with the build and the other tests) must not put the server
        // under pressure unless a test asks for it.
        .env("MEMORY_LIMIT_BYTES", "1099511627776")
        .envs(env.iter().copied())
        .stderr(Stdio::piped());
    // The first line must be the address; anything else fails the start.
    ChildServer::spawn(cmd, Duration::from_secs(30), |line| {
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Some(addr.to_string())
    })
}

async fn status(client: &reqwest::Client, addr: &str, path: &str) -> u16 {
    client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn serves_the_endpoints_and_drains_on_sigterm() {
    let mut server = start(&[("MEMORY_CHECK_INTERVAL", "200")]);
    let client = reqwest::Client::new();
    let addr = server.addr().to_string();
    assert_eq!(status(&client, &addr, "/api/hello").await, 200);
    assert_eq!(status(&client, &addr, "/api/health").await, 200);
    assert_eq!(status(&client, &addr, "/api/health/live").await, 200);
    assert_eq!(status(&client, &addr, "/api/health/ready").await, 200);
    let metrics = client
        .get(format!("http://{addr}/api/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("memory_allocator_info{allocator=\"jemalloc\""),
        "{metrics}"
    );
    // No token configured: the profile endpoint does not exist.
    assert_eq!(status(&client, &addr, "/api/debug/pprof/heap").await, 404);

    send_signal(server.pid(), "TERM");
    // During the grace period: not ready, still serving.
    let deadline = Instant::now() + Duration::from_secs(2);
    while status(&client, &addr, "/api/health/ready").await != 503 {
        assert!(
            Instant::now() < deadline,
            "readiness still 200 after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status(&client, &addr, "/api/hello").await, 200);
    assert_eq!(status(&client, &addr, "/api/health/live").await, 200);
    // Then it exits on its own, cleanly.
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = server.child_mut().try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "server did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn a_bad_variable_stops_the_start() {
    let out = Command::new(example())
        .env("ADDR", "127.0.0.1:0")
        .env("MEMORY_CRITICAL_THRESHOLD", "85")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("MEMORY_CRITICAL_THRESHOLD=\"85\" is invalid"),
        "{stderr}"
    );
}

/// The server's own resident set (read from /proc/<pid>/status) after a burst of 64 MiB
/// requests: with `MEMORY_ALLOCATOR_PROFILE=memory-first` it returns to near its idle size.
#[tokio::test]
async fn memory_first_server_gives_a_burst_back() {
    let server = start(&[("MEMORY_ALLOCATOR_PROFILE", "memory-first")]);
    let pid = server.pid();
    let client = reqwest::Client::new();
    let addr = server.addr().to_string();
    assert_eq!(status(&client, &addr, "/api/hello").await, 200);
    let idle = tower_memory_probe::process_memory_of(pid)
        .unwrap()
        .rss_bytes;
    let burst: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            let url = format!("http://{addr}/api/work?kib=65536");
            tokio::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
        })
        .collect();
    for request in burst {
        assert_eq!(request.await.unwrap(), 200);
    }
    let peak = tower_memory_probe::process_memory_of(pid)
        .unwrap()
        .peak_rss_bytes;
    assert!(
        peak >= idle + (64 << 20),
        "the burst was resident: idle {idle} peak {peak}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let settled = loop {
        let rss = tower_memory_probe::process_memory_of(pid)
            .unwrap()
            .rss_bytes;
        if rss <= idle + (32 << 20) || Instant::now() > deadline {
            break rss;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "memory-first server: idle {} MiB, peak {} MiB, settled {} MiB",
        idle >> 20,
        peak >> 20,
        settled >> 20
    );
    assert!(
        settled <= idle + (32 << 20),
        "idle {idle} peak {peak} settled {settled}"
    );
}
