//! Critical memory pressure, forced for real: the example server runs in a 384 MiB memory cgroup
//! and a second process in the same cgroup (python3) takes 320 MiB, so the cgroup's working set
//! crosses the critical threshold (0.85). Readiness turns 503, new work is refused with 503 and
//! `Retry-After` before it runs, health and liveness still answer; when the other process exits
//! everything recovers.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::run;
use crate::support::Server;
use crate::support::health::{budget_back_to_full, health};
use crate::support::load::send;
use test_support::MemoryCgroup;
use test_support::wait_for_async;

const LIMIT: u64 = 384 << 20;
const HOG: u64 = 320 << 20;

/// python3 in `cgroup` holding `bytes`, every page written; killed on drop.
struct Hog(Child);

impl Hog {
    fn start(cgroup: &MemoryCgroup, bytes: u64) -> Hog {
        let mut child = cgroup
            .command("python3")
            .arg("-c")
            .arg(format!(
                "import sys, time\nb = b'\\x01' * {bytes}\nprint('held', flush=True)\ntime.sleep(120)"
            ))
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "held", "the hog took its memory");
        Hog(child)
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn status(addr: &str, path: &str) -> (u16, Option<String>) {
    let a = send(addr, "GET", path, None, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    (a.status, a.retry_after)
}

#[test]
fn critical_pressure_refuses_new_work_and_recovers() {
    const TEST: &str = "critical_pressure_refuses_new_work_and_recovers";
    let Some(cgroup) = MemoryCgroup::create_or_skip(TEST, "faults-pressure", LIMIT) else {
        return;
    };
    // Samples every 250 ms, so that the test sees each change quickly.
    let server = Server::start_in(&cgroup, "server", &[("MEMORY_CHECK_INTERVAL", "250")]);
    let addr = server.addr.clone();
    run(Duration::from_secs(90), async {
        assert_eq!(status(&addr, "/api/health/ready").await.0, 200);
        assert_eq!(status(&addr, "/api/hello").await.0, 200);

        let hog = tokio::task::block_in_place(|| Hog::start(&cgroup, HOG));
        let critical = wait_for_async(Duration::from_secs(10), "critical pressure", || async {
            let h = health(&addr).await;
            (h["status"] == "critical").then_some(h)
        })
        .await;
        println!(
            "critical: usage {} MiB of {} MiB",
            critical["usage_bytes"].as_u64().unwrap_or(0) >> 20,
            LIMIT >> 20
        );
        let (ready, _) = status(&addr, "/api/health/ready").await;
        assert_eq!(ready, 503, "readiness under critical pressure");
        for path in [
            "/api/hello",
            "/api/documents?count=10",
            "/api/reports/heavy?mib=8",
        ] {
            let (code, retry) = status(&addr, path).await;
            assert_eq!(code, 503, "{path} under critical pressure");
            assert!(retry.is_some(), "{path}: 503 without Retry-After");
        }
        // The probes still answer: liveness 200, health with its report (503 while critical).
        assert_eq!(status(&addr, "/api/health/live").await.0, 200);
        assert_eq!(status(&addr, "/api/health").await.0, 503);
        assert_eq!(cgroup.oom_kills(), 0);

        drop(hog);
        wait_for_async(
            Duration::from_secs(10),
            "pressure back to normal",
            || async { (status(&addr, "/api/health/ready").await.0 == 200).then_some(()) },
        )
        .await;
        assert_eq!(status(&addr, "/api/hello").await.0, 200);
        assert_eq!(status(&addr, "/api/reports/heavy?mib=8").await.0, 200);
        budget_back_to_full(&addr).await;
    });
    assert_eq!(cgroup.oom_kills(), 0, "nothing was OOM-killed");
    drop(server);
}
