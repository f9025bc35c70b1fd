//! Starting the example programs as real processes for black-box tests, and running programs in
//! a memory cgroup of their own (`cgroup`). Also: a load client (`load`), raw HTTP/1 over TCP
//! (`raw`), the server's own health and metrics (`health`), what every reliability case must
//! leave behind (`invariants`), the per-request reports in its logs (`reports`) and a small
//! tmpfs for disk-full tests (`smallfs`).
#![allow(dead_code)]

pub mod cgroup;
pub mod health;
pub mod invariants;
pub mod load;
pub mod raw;
pub mod reports;
pub mod smallfs;
pub mod workload;

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
    /// Standard output lines, all but the listening line (start-up warnings included).
    pub output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The server's `UPLOAD_DIR`.
    pub upload_dir: tempfile::TempDir,
}

/// Variables the examples read: the tests set what they need and nothing leaks in from the
/// environment the tests run in.
const SERVER_VARIABLES: &[&str] = &[
    "BIND",
    "PORT",
    "LOG_FORMAT",
    "MAX_BODY_SIZE",
    "MAX_REQUEST_MEMORY",
    "UPLOAD_DIR",
    "UPLOAD_DIR_ALLOW_TMPFS",
    "FAULT_ROUTES",
    "HEADER_READ_TIMEOUT_MS",
    "MAX_HEADER_BYTES",
    "WRITE_TIMEOUT_MS",
    "DRAIN_DELAY_MS",
    "DRAIN_TIMEOUT_MS",
    "HEAP_PROFILE_TOKEN",
    "HEAP_PROFILE_DIR",
    "HEAP_PROFILE_ON_EXIT",
    "ADMIN_BIND",
    "ADMIN_PORT",
    "MEMORY_MONITORING_ENABLED",
    "MEMORY_WARNING_THRESHOLD",
    "MEMORY_CRITICAL_THRESHOLD",
    "MEMORY_CHECK_INTERVAL",
    "MEMORY_RECLAIM_ENABLED",
    "MEMORY_RECLAIM_INTERVAL",
    "MEMORY_RECLAIM_AGGRESSIVE",
    "MEMORY_CLEANUP_ENABLED",
    "MEMORY_CLEANUP_INTERVAL",
    "MEMORY_CLEANUP_AGGRESSIVE",
    "MEMORY_LIMIT_BYTES",
    "MEMORY_ALLOCATOR_PROFILE",
    "STREAM_BUFFER_THRESHOLD",
    "STREAM_FILE_THRESHOLD",
    "STREAM_CHUNK_SIZE",
    "COMPRESSION_ENABLED",
    "COMPRESSION_LEVEL",
    "COMPRESSION_THRESHOLD",
    "MEMORY_GOVERNOR_ENABLED",
    "MEMORY_REQUEST_BUDGET",
    "MEMORY_ADMISSION_QUEUE",
    "MEMORY_ADMISSION_TIMEOUT",
    "MEMORY_ADMISSION_FLOOR",
    "MEMORY_PARK_TIMEOUT",
    "MEMORY_LOG_QUERY",
    "MALLOC_CONF",
    "_RJEM_MALLOC_CONF",
];

impl Server {
    /// Starts the example with `PORT=0` plus `env`, and waits for its `listening on http://…` line.
    ///
    /// The memory limit defaults to 1 TiB: the host's cgroup (shared with the build and with the
    /// other tests' servers) must not put a test server under pressure unless the test asks for
    /// it by setting `MEMORY_LIMIT_BYTES` itself.
    pub fn start(name: &str, env: &[(&str, &str)]) -> Server {
        Self::spawn(Command::new(example_path(name)), env, Some("1099511627776"))
    }

    /// Starts the example inside `cgroup` (it never allocates outside it), with the limit the
    /// monitor finds there: no `MEMORY_LIMIT_BYTES` unless `env` sets one.
    pub fn start_in(cgroup: &cgroup::MemoryCgroup, name: &str, env: &[(&str, &str)]) -> Server {
        Self::spawn(cgroup.command(example_path(name)), env, None)
    }

    /// Starts `cmd` (a wrapper that ends by exec'ing an example) like [`start`](Self::start).
    pub fn start_command(cmd: Command, env: &[(&str, &str)]) -> Server {
        Self::spawn(cmd, env, Some("1099511627776"))
    }

    fn spawn(mut cmd: Command, env: &[(&str, &str)], limit: Option<&str>) -> Server {
        // Each server spools into its own directory under the target dir (never a tmpfs /tmp,
        // which the server refuses), removed when the server is dropped.
        let upload_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("upload dir");
        for var in SERVER_VARIABLES {
            cmd.env_remove(var);
        }
        if let Some(limit) = limit {
            cmd.env("MEMORY_LIMIT_BYTES", limit);
        }
        cmd.env("PORT", "0")
            .env("UPLOAD_DIR", upload_dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start example");
        let mut server = Server {
            child,
            addr: String::new(),
            output: std::sync::Arc::new(std::sync::Mutex::new(Vec::new())),
            upload_dir,
        };
        // Lines are read on a thread: a child that hangs silently fails the test after 30 s
        // instead of blocking it forever. The thread keeps reading after the listening line so
        // the child never blocks on a full pipe, and keeps the lines for tests that read logs.
        let stdout = server.child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let sink = std::sync::Arc::clone(&server.output);
        std::thread::spawn(move || {
            let mut announced = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if announced {
                    sink.lock().unwrap().push(line);
                } else if let Some(rest) = line.split("listening on http://").nth(1) {
                    // Text logs print the address alone; JSON logs carry it inside the message.
                    let addr: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
                        .collect();
                    announced = true;
                    let _ = tx.send(addr);
                } else {
                    sink.lock().unwrap().push(line);
                }
            }
        });
        server.addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the example announced no address within 30 s (or exited)");
        server
    }

    /// The output lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for an output line that satisfies `f`, and returns it.
    pub fn wait_for_line(&self, timeout: Duration, what: &str, f: impl Fn(&str) -> bool) -> String {
        wait_for(timeout, what, || self.lines().into_iter().find(|l| f(l)))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (for example `"TERM"`) and waits up to `timeout` for the exit status.
    pub fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> std::process::ExitStatus {
        send_signal(self.pid(), signal);
        self.wait_exit(timeout)
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within {timeout:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Sends `signal` (`"TERM"`, `"INT"`) to `pid`.
pub fn send_signal(pid: u32, signal: &str) {
    let number = match signal {
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "KILL" => libc::SIGKILL,
        other => panic!("unknown signal {other}"),
    };
    // SAFETY: kill has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid as libc::pid_t, number) };
    assert_eq!(rc, 0, "kill -{signal} {pid} failed");
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Awaits `f` every 50 ms until it returns `Some`, for at most `timeout`.
pub async fn wait_for_async<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A two-worker multi-thread runtime, as the load drivers and black-box tests use.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
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

/// One query of the Grafana dashboard, with Grafana's variables filled in.
pub struct DashboardTarget {
    pub panel: String,
    pub expr: String,
    pub legend: String,
}

/// Every query of the Grafana dashboard, with Grafana's variables filled in.
pub fn dashboard_targets() -> Vec<DashboardTarget> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/dashboard.json");
    let text = std::fs::read_to_string(path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut targets = Vec::new();
    for panel in json["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            targets.push(DashboardTarget {
                panel: panel["title"].as_str().unwrap().to_string(),
                expr: target["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$__rate_interval", "5m")
                    .replace("$job", ".*")
                    .replace("$instance", ".*"),
                legend: target["legendFormat"].as_str().unwrap_or("").to_string(),
            });
        }
    }
    targets
}

/// The PromQL expressions of the Grafana dashboard, with Grafana's variables filled in.
pub fn dashboard_queries() -> Vec<String> {
    dashboard_targets().into_iter().map(|t| t.expr).collect()
}

/// The label names a Grafana legend format refers to (`{{route}}` -> `route`); `Err` with the
/// offending text when the format has anything else in braces (`{{{{instance}}}}`, `{x}`).
pub fn legend_labels(legend: &str) -> Result<Vec<String>, String> {
    let mut labels = Vec::new();
    let mut rest = legend;
    while let Some(open) = rest.find(['{', '}']) {
        let tail = &rest[open..];
        let Some(inner) = tail.strip_prefix("{{") else {
            return Err(format!("stray brace in {legend:?}"));
        };
        let close = inner
            .find("}}")
            .ok_or_else(|| format!("unclosed placeholder in {legend:?}"))?;
        let name = inner[..close].trim();
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "{{{{{name}}}}} is not a label placeholder in {legend:?}"
            ));
        }
        labels.push(name.to_string());
        rest = &inner[close + 2..];
    }
    Ok(labels)
}

/// A port that was free a moment ago (for programs that cannot report the port they bound).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
