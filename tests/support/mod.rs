//! Starting the example programs as real processes for black-box tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>/examples/<name>`, next to this test binary's `deps` directory. `cargo test`
/// builds the examples before it runs the tests.
pub fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let path = profile_dir.join("examples").join(name);
    assert!(path.is_file(), "{} is not built", path.display());
    path
}

/// A running example; killed on drop if the test did not stop it.
pub struct Server {
    pub child: Child,
    pub addr: String,
    /// Standard output lines after the listening line.
    pub output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The server's `UPLOAD_DIR`.
    pub upload_dir: tempfile::TempDir,
}

impl Server {
    /// Starts the example with `PORT=0` plus `env`, and waits for its `listening on http://…` line.
    pub fn start(name: &str, env: &[(&str, &str)]) -> Server {
        // Each server spools into its own directory, removed when the server is dropped.
        let upload_dir = tempfile::tempdir().expect("upload dir");
        let mut cmd = Command::new(example_path(name));
        cmd.env("PORT", "0")
            .env("UPLOAD_DIR", upload_dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start example");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            assert!(Instant::now() < deadline, "no listening line within 30 s");
            let line = lines
                .next()
                .expect("example exited before listening")
                .unwrap();
            // Text logs print the address alone; JSON logs carry it inside the message.
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let addr: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
                    .collect();
                break addr;
            }
        };
        // Keep reading stdout so the child never blocks on a full pipe; the lines are kept for
        // tests that look at the logs.
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&output);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Server {
            child,
            addr,
            output,
            upload_dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (for example `"TERM"`) and waits up to `timeout` for the exit status.
    pub fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{signal} failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within {timeout:?} of SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl -sS` with `args`; returns (status code, body).
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "curl {:?}: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("status line");
    (code.trim().parse().expect("status code"), body.to_string())
}

/// The PromQL expressions of the Grafana dashboard, with Grafana's variables filled in.
pub fn dashboard_queries() -> Vec<String> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/dashboard.json");
    let text = std::fs::read_to_string(path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut exprs = Vec::new();
    for panel in json["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(
                target["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$__rate_interval", "5m")
                    .replace("$job", ".*")
                    .replace("$instance", ".*"),
            );
        }
    }
    exprs
}

/// A port that was free a moment ago (for programs that cannot report the port they bound).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
