//! The example server's metrics as Prometheus sees them: a real scrape checked by promtool, every
//! metric the Grafana dashboard queries present, and a real Prometheus server scraping it.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Server, curl, dashboard_queries, dashboard_targets, legend_labels};
use test_support::MemoryCgroup;
use test_support::{free_port, wait_for};

/// Metric names a PromQL expression reads (histogram/summary series map to their family).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphabetic() || bytes[i] == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &expr[start..i];
            let prefixed = ["memory_", "process_", "http_"]
                .iter()
                .any(|p| word.starts_with(p));
            // A label name inside `{...}` or `by (...)` is never one of these prefixes here.
            if prefixed {
                names.insert(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Names of the series in a text exposition (`_sum`/`_count`/`_bucket` kept as they are).
fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect()
}

fn post_file(server: &Server, path: &str, bytes: usize) -> u16 {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.bin");
    std::fs::write(&file, vec![b'a'; bytes]).unwrap();
    curl(&[
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", file.display()),
        &server.url(path),
    ])
    .0
}

/// The settings under which [`exercise`] reaches every path that records a metric.
const EXERCISED: &[(&str, &str)] = &[
    ("MEMORY_CHECK_INTERVAL", "100"),
    ("MEMORY_RECLAIM_INTERVAL", "300"),
    ("STREAM_BUFFER_THRESHOLD", "1048576"),
    ("MAX_BODY_SIZE", "8388608"),
    ("MAX_REQUEST_MEMORY", "67108864"),
];

/// A server driven through every path that records a metric, and its scrape.
fn exercised_scrape() -> (String, serde_json::Value) {
    let server = Server::start("server", EXERCISED);
    exercise(&server)
}

/// Drives `server` (started with [`EXERCISED`]) through every path that records a metric and
/// waits for the metrics that take a while; returns its scrape and its health report.
fn exercise(server: &Server) -> (String, serde_json::Value) {
    assert_eq!(
        curl(&["-H", "Accept-Encoding: gzip", &server.url("/api/documents")]).0,
        200
    );
    assert_eq!(
        curl(&["-H", "Accept-Encoding: zstd", &server.url("/api/documents")]).0,
        200
    );
    assert_eq!(
        curl(&["-H", "Accept-Encoding: gzip", &server.url("/api/hello")]).0,
        200
    );
    assert_eq!(curl(&[&server.url("/api/reports/heavy?mib=55")]).0, 200);
    assert_eq!(curl(&[&server.url("/api/reports/heavy?mib=100")]).0, 503);
    let documents = [
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data-binary",
        "[1,2,3]",
    ];
    assert_eq!(
        curl(&[&documents[..], &[server.url("/api/documents").as_str()]].concat()).0,
        200
    );
    assert_eq!(post_file(server, "/api/uploads", 2 << 20), 200);
    assert_eq!(post_file(server, "/api/uploads", 9 << 20), 413);
    // Enough samples for a trend and at least one scheduled reclaim (the reclaimer allows one run
    // a second, so the schedule's first run may wait for the heavy request's one).
    let text = wait_for(Duration::from_secs(15), "trend and reclaim metrics", || {
        let (status, text) = curl(&[&server.url("/api/metrics")]);
        assert_eq!(status, 200);
        let names = exposed(&text);
        (names.contains("memory_reclaim_last_duration_seconds")
            && names.contains("memory_growth_rate_bytes_per_second"))
        .then_some(text)
    });
    let (_, health) = curl(&[&server.url("/api/health")]);
    (text, serde_json::from_str(&health).unwrap())
}

/// A server whose limit is far below its usage: critical pressure, requests shed.
fn shedding_scrape() -> String {
    let server = Server::start(
        "server",
        &[
            ("MEMORY_LIMIT_BYTES", "1048576"),
            ("MEMORY_CHECK_INTERVAL", "100"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = curl(&[&server.url("/api/hello")]);
        if status == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "never shed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, ready) = curl(&[&server.url("/api/health/ready")]);
    assert_eq!(status, 503, "{ready}");
    curl(&[&server.url("/api/metrics")]).1
}

#[test]
fn every_metric_the_dashboard_queries_is_emitted() {
    let (text, health) = exercised_scrape();
    let shed = shedding_scrape();
    let mut present = exposed(&text);
    present.extend(exposed(&shed));
    let mut wanted = BTreeSet::new();
    for expr in dashboard_queries() {
        wanted.extend(metric_names(&expr));
    }
    assert!(wanted.len() >= 25, "{wanted:?}");
    // Outside a memory cgroup there is nothing to report for it; everything else must be there.
    let cgroup = &health["cgroup"];
    let missing: Vec<_> = wanted
        .iter()
        .filter(|name| !present.contains(*name))
        .filter(|name| {
            !(cgroup.is_null() && name.starts_with("memory_cgroup_")
                || cgroup["oom_kills"].is_null() && *name == "memory_cgroup_oom_kills_total")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics nobody emits: {missing:?}"
    );
}

#[test]
fn a_full_scrape_passes_promtool_check_metrics() {
    let (text, _) = exercised_scrape();
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_dashboard_legend_names_labels_its_query_keeps() {
    // In a memory cgroup of its own where one can be made, so the cgroup panels have data too.
    let cgroup = MemoryCgroup::create_or_skip("dashboard legends", "legends", 2 << 30);
    let server = match &cgroup {
        Some(cgroup) => Server::start_in(cgroup, "server", EXERCISED),
        None => Server::start("server", EXERCISED),
    };
    exercise(&server);
    let (port, _prometheus, _dir) = prometheus_scraping(&server, 1, None);

    // Every target whose legend names labels: each series Prometheus answers carries them.
    let targets: Vec<_> = dashboard_targets()
        .into_iter()
        .map(|t| {
            let labels = legend_labels(&t.legend).unwrap();
            (t, labels)
        })
        .filter(|(_, labels)| !labels.is_empty())
        .filter(|(t, _)| cgroup.is_some() || !t.expr.contains("memory_cgroup_"))
        .collect();
    assert!(targets.len() >= 30, "{} targets with labels", targets.len());
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut pending: Vec<_> = targets.iter().collect();
    while !pending.is_empty() {
        pending.retain(|(t, labels)| {
            let Some(result) = query_all(port, &t.expr) else {
                return true;
            };
            if result.is_empty() {
                return true; // not scraped twice yet
            }
            for series in &result {
                for label in labels {
                    assert!(
                        series["metric"].get(label.as_str()).is_some(),
                        "{}: legend {:?} names {label}, which {} does not keep: {series}",
                        t.panel,
                        t.legend,
                        t.expr
                    );
                }
            }
            false
        });
        if !pending.is_empty() {
            let waiting: Vec<&str> = pending.iter().map(|(t, _)| t.expr.as_str()).collect();
            assert!(
                Instant::now() < deadline,
                "no data from Prometheus for {waiting:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Every series of an instant query (`None` when Prometheus does not answer yet).
fn query_all(port: u16, promql: &str) -> Option<Vec<serde_json::Value>> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-G", "--data-urlencode"])
        .arg(format!("query={promql}"))
        .arg(format!("http://127.0.0.1:{port}/api/v1/query"))
        .output()
        .ok()?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    assert_ne!(json["status"], "error", "{promql}: {json}");
    json["data"]["result"].as_array().cloned()
}

/// A real Prometheus scraping `server` every `interval_s` seconds, on a free port, evaluating
/// `rules` (a rule file copied into its directory) when given.
fn prometheus_scraping(
    server: &Server,
    interval_s: u32,
    rules: Option<&std::path::Path>,
) -> (u16, Prometheus, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let rule_files = match rules {
        Some(path) => {
            std::fs::copy(path, dir.path().join("rules.yml")).unwrap();
            "rule_files:\n  - rules.yml\n"
        }
        None => "",
    };
    let config = format!(
        "global:\n  scrape_interval: {interval_s}s\n  evaluation_interval: {interval_s}s\n\
         {rule_files}scrape_configs:\n  - job_name: tower-memory\n    metrics_path: /api/metrics\n    \
         static_configs:\n      - targets: ['{}']\n",
        server.addr
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let port = free_port();
    let prometheus = Prometheus(
        Command::new("prometheus")
            .current_dir(dir.path())
            .arg("--config.file=prometheus.yml")
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus)"),
    );
    (port, prometheus, dir)
}

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET` on Prometheus' HTTP API, as JSON.
fn api(port: u16, path: &str) -> Option<serde_json::Value> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-G"])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

fn query(port: u16, promql: &str) -> Option<f64> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-G", "--data-urlencode"])
        .arg(format!("query={promql}"))
        .arg(format!("http://127.0.0.1:{port}/api/v1/query"))
        .output()
        .ok()?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    json["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn a_real_prometheus_scrapes_the_server_and_loads_the_alert_rules() {
    let server = Server::start("server", &[("MEMORY_CHECK_INTERVAL", "200")]);
    let alerts =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/alerts.yml");
    let (port, prometheus, _dir) = prometheus_scraping(&server, 1, Some(&alerts));

    let deadline = Instant::now() + Duration::from_secs(60);
    let (pressure, rss) = loop {
        if let (Some(p), Some(r)) = (
            query(port, "memory_pressure_level{job=\"tower-memory\"}"),
            query(port, "process_resident_memory_bytes{job=\"tower-memory\"}"),
        ) {
            break (p, r);
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the server"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(pressure, 0.0);
    let actual = tower_memory_probe::process_memory_of(server.pid())
        .unwrap()
        .rss_bytes as f64;
    assert!(
        rss > 1e6 && (rss - actual).abs() < actual * 0.5,
        "{rss} vs {actual}"
    );

    let targets = api(port, "/api/v1/targets").unwrap();
    assert_eq!(
        targets["data"]["activeTargets"][0]["health"], "up",
        "{targets}"
    );
    let rules = api(port, "/api/v1/rules").unwrap();
    let loaded: usize = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rules"].as_array().unwrap().len())
        .sum();
    assert_eq!(loaded, 8, "{rules}");
    drop(prometheus);
}
