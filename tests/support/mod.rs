//! Starting the example programs as real processes for black-box tests (on the generic harnesses
//! of the `test-support` crate: child processes, polling, memory cgroups). Also: a load client (`load`), raw HTTP/1 over TCP
//! (`raw`), the server's own health and metrics (`health`), what every reliability case must
//! leave behind (`invariants`), the per-request reports in its logs (`reports`) and a small
//! tmpfs for disk-full tests (`smallfs`).
#![allow(dead_code)]

pub(crate) mod health;
pub(crate) mod invariants;
pub(crate) mod load;
pub(crate) mod raw;
pub(crate) mod reports;
pub(crate) mod smallfs;
pub(crate) mod workload;

use std::process::{Command, Stdio};
use std::time::Duration;

use test_support::{ChildServer, MemoryCgroup, example_path};

/// A running example; killed on drop if the test did not stop it.
pub(crate) struct Server {
    pub process: ChildServer,
    pub addr: String,
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
    "METRICS_PREFIX",
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
    pub(crate) fn start(name: &str, env: &[(&str, &str)]) -> Server {
        Self::spawn(Command::new(example_path(name)), env, Some("1099511627776"))
    }

    /// Starts the example inside `cgroup` (it never allocates outside it), with the limit the
    /// monitor finds there: no `MEMORY_LIMIT_BYTES` unless `env` sets one.
    pub(crate) fn start_in(cgroup: &MemoryCgroup, name: &str, env: &[(&str, &str)]) -> Server {
        Self::spawn(cgroup.command(example_path(name)), env, None)
    }

    /// Starts `cmd` (a wrapper that ends by exec'ing an example) like [`start`](Self::start).
    pub(crate) fn start_command(cmd: Command, env: &[(&str, &str)]) -> Server {
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
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let process = ChildServer::spawn(
            cmd,
            Duration::from_secs(30),
            test_support::listening_on_http,
        );
        Server {
            addr: process.addr().to_string(),
            process,
            upload_dir,
        }
    }

    /// The output lines so far (all but the listening line, start-up warnings included).
    pub(crate) fn lines(&self) -> Vec<String> {
        self.process.lines()
    }

    /// Waits up to `timeout` for an output line that satisfies `f`, and returns it.
    pub(crate) fn wait_for_line(
        &self,
        timeout: Duration,
        what: &str,
        f: impl Fn(&str) -> bool,
    ) -> String {
        self.process.wait_for_line(timeout, what, f)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        self.process.url(path)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Sends `signal` (for example `"TERM"`) and waits up to `timeout` for the exit status.
    pub(crate) fn signal_and_wait(
        &mut self,
        signal: &str,
        timeout: Duration,
    ) -> std::process::ExitStatus {
        self.process.signal_and_wait(signal, timeout)
    }

    /// Waits up to `timeout` for the process to exit.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.process.wait_exit(timeout)
    }
}

/// `curl -sS` with `args`; returns (status code, body).
pub(crate) fn curl(args: &[&str]) -> (u16, String) {
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
pub(crate) struct DashboardTarget {
    pub panel: String,
    pub expr: String,
    pub legend: String,
}

/// Every query of the Grafana dashboard, with Grafana's variables filled in.
pub(crate) fn dashboard_targets() -> Vec<DashboardTarget> {
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
pub(crate) fn dashboard_queries() -> Vec<String> {
    dashboard_targets().into_iter().map(|t| t.expr).collect()
}

/// The label names a Grafana legend format refers to (`{{route}}` -> `route`); `Err` with the
/// offending text when the format has anything else in braces (`{{{{instance}}}}`, `{x}`).
pub(crate) fn legend_labels(legend: &str) -> Result<Vec<String>, String> {
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
