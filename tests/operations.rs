//! The operator's view of the running example server, as the original guide's workflow uses it:
//! `/api/health` fresh and saying how old it is, every reclaim counted with its trigger, what the
//! requests in flight hold, queries kept out of the logs, the memory-first mode, the aggressive
//! preset, a limit clamped to the cgroup's, warnings for variables this server does not read, and
//! the admin listener.
//!
//! (Over 400 lines: the operator's workflow step by step against one running example server.)

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Server, curl};
use test_support::MemoryCgroup;
use test_support::wait_for;

const MIB: u64 = 1 << 20;

fn health(server: &Server) -> Value {
    let (status, body) = curl(&[&server.url("/api/health")]);
    assert!(status == 200 || status == 503, "{status}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn metrics(url: &str) -> String {
    let (status, text) = curl(&[url]);
    assert_eq!(status, 200, "{text}");
    text
}

/// The value of the series `name{labels}` (labels as written in the exposition), if present.
fn series(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
}

#[test]
fn health_is_fresh_says_how_old_and_where_the_limit_comes_from() {
    // The default check interval (30 s): only the freshness rule can show the peak below.
    let server = Server::start("server", &[]);
    let before = health(&server);
    let peak_before = before["process"]["peak_rss_bytes"].as_u64().unwrap();
    assert_eq!(before["limit_source"], "configured", "{before}");
    assert_eq!(before["configured_limit_bytes"], 1u64 << 40);
    let sampled_before = before["sampled_at"].as_str().unwrap().to_string();
    assert!(
        sampled_before.ends_with('Z') && sampled_before.len() == 24,
        "{sampled_before}"
    );

    let (status, _) = curl(&[&server.url("/api/reports/heavy?mib=100")]);
    assert_eq!(status, 200);
    // Within a second a request gets the same sample (rate-limited)...
    let again = health(&server);
    if again["sample_age_seconds"].as_f64().unwrap() < 0.5 {
        assert_eq!(again["sampled_at"], before["sampled_at"]);
    }
    // ... after it, a fresh one that shows the 100 MiB peak, as /api/metrics does.
    std::thread::sleep(Duration::from_millis(1100));
    let after = health(&server);
    let peak_after = after["process"]["peak_rss_bytes"].as_u64().unwrap();
    assert!(
        peak_after >= peak_before + 90 * MIB,
        "peak {peak_before} -> {peak_after}: /api/health did not sample again"
    );
    assert!(after["sampled_at"].as_str().unwrap() > sampled_before.as_str());
    assert!(
        after["sample_age_seconds"].as_f64().unwrap() < 1.0,
        "{after}"
    );
    let scraped = series(
        &metrics(&server.url("/api/metrics")),
        "memory_process_peak_resident_bytes",
    )
    .unwrap() as u64;
    assert!(scraped >= peak_after - MIB, "{scraped} vs {peak_after}");
}

#[test]
fn every_reclaim_is_counted_with_its_trigger() {
    let server = Server::start(
        "server",
        &[
            ("MEMORY_CHECK_INTERVAL", "200"),
            ("MEMORY_RECLAIM_INTERVAL", "1500"),
        ],
    );
    assert_eq!(curl(&[&server.url("/api/reports/heavy?mib=60")]).0, 200);
    let h = wait_for(
        Duration::from_secs(20),
        "a heavy-request and a scheduled reclaim",
        || {
            let h = health(&server);
            let t = &h["reclaim"]["by_trigger"];
            (t["heavy_request"].as_u64()? >= 1 && t["scheduled"].as_u64()? >= 1).then_some(h)
        },
    );
    let reclaim = &h["reclaim"];
    let by_trigger: u64 = reclaim["by_trigger"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(reclaim["runs"].as_u64().unwrap(), by_trigger, "{reclaim}");
    assert!(reclaim["last"]["trigger"].is_string(), "{reclaim}");

    let text = metrics(&server.url("/api/metrics"));
    for trigger in ["heavy_request", "scheduled"] {
        let runs = series(
            &text,
            &format!("memory_reclaim_runs_total{{trigger=\"{trigger}\"}}"),
        )
        .unwrap_or_else(|| panic!("no {trigger} runs series"));
        assert!(runs >= 1.0, "{trigger}: {runs}");
        let timed = series(
            &text,
            &format!("memory_reclaim_duration_seconds_count{{trigger=\"{trigger}\"}}"),
        )
        .unwrap_or_else(|| panic!("no {trigger} duration histogram"));
        assert!(timed >= 1.0);
    }
    // Every trigger has its series from the start.
    for trigger in ["critical", "warning", "api"] {
        assert!(
            series(
                &text,
                &format!("memory_reclaim_runs_total{{trigger=\"{trigger}\"}}")
            )
            .is_some(),
            "{trigger}"
        );
    }
}

#[test]
fn critical_pressure_reclaims_are_counted_too() {
    // A limit far below the process's usage: critical at the first sample.
    let server = Server::start(
        "server",
        &[
            ("MEMORY_LIMIT_BYTES", "1048576"),
            ("MEMORY_CHECK_INTERVAL", "100"),
        ],
    );
    wait_for(Duration::from_secs(10), "a critical reclaim", || {
        health(&server)["reclaim"]["by_trigger"]["critical"]
            .as_u64()
            .filter(|n| *n >= 1)
    });
}

#[test]
fn the_largest_requests_in_flight_are_listed_logged_and_exported() {
    let server = Server::start("server", &[]);
    let url = server.url("/api/reports/heavy?mib=80&hold_ms=4000");
    let request = std::thread::spawn(move || curl(&[&url]).0);

    let listed = wait_for(
        Duration::from_secs(10),
        "the heavy request in flight",
        || {
            let h = health(&server);
            h["in_flight"].as_array()?.iter().find(|r| {
                r["route"] == "/api/reports/heavy" && r["held_bytes"].as_u64() >= Some(80 * MIB)
            })?;
            Some(h)
        },
    );
    let entry = listed["in_flight"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "/api/reports/heavy")
        .unwrap();
    assert_eq!(entry["method"], "GET");
    assert!(entry["peak_bytes"].as_u64() >= entry["held_bytes"].as_u64());
    assert!(entry["age_seconds"].as_f64().unwrap() > 0.0);
    assert!(listed["in_flight_min_bytes"].as_u64().unwrap() <= MIB);
    // The warning came while the request still runs, not only at its end.
    let line = server.wait_for_line(Duration::from_secs(5), "the in-flight heavy warning", |l| {
        l.contains("crossed the heavy threshold while running")
    });
    assert!(line.contains("/api/reports/heavy"), "{line}");
    let text = metrics(&server.url("/api/metrics"));
    let held = series(
        &text,
        "http_in_flight_held_bytes{route=\"/api/reports/heavy\"}",
    )
    .expect("the in-flight gauge");
    assert!(held >= (80 * MIB) as f64, "{held}");
    assert!(
        !server
            .lines()
            .iter()
            .any(|l| l.contains("heavy request") && !l.contains("while running")),
        "the request has not ended yet"
    );

    assert_eq!(request.join().unwrap(), 200);
    // Ended: gone from the listing, the gauge back to zero, the route's retained bytes exported.
    let after = health(&server);
    assert!(
        !after["in_flight"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["route"] == "/api/reports/heavy"),
        "{after}"
    );
    let route = after["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "/api/reports/heavy")
        .unwrap();
    assert!(route["retained_bytes"].is_i64(), "{route}");
    let text = metrics(&server.url("/api/metrics"));
    assert_eq!(
        series(
            &text,
            "http_in_flight_held_bytes{route=\"/api/reports/heavy\"}"
        ),
        Some(0.0)
    );
    assert!(
        series(
            &text,
            "http_route_retained_bytes{route=\"/api/reports/heavy\"}"
        )
        .is_some()
    );
}

#[test]
fn entering_critical_logs_what_holds_the_memory() {
    // In a 512 MiB cgroup of its own (usage is the server's alone), critical at half of it: a
    // request holding 300 MiB takes the process there, far from the kernel's limit. Without the
    // governor nothing parks it first; the pressure aborter then aborts it (an event of its own).
    let Some(cgroup) = MemoryCgroup::create_or_skip("critical event", "critical", 512 * MIB) else {
        return;
    };
    let server = Server::start_in(
        &cgroup,
        "server",
        &[
            ("MEMORY_WARNING_THRESHOLD", "0.4"),
            ("MEMORY_CRITICAL_THRESHOLD", "0.5"),
            ("MEMORY_CHECK_INTERVAL", "100"),
            ("MEMORY_GOVERNOR_ENABLED", "false"),
        ],
    );
    assert_eq!(health(&server)["status"], "healthy");
    let url = server.url("/api/reports/heavy?mib=300&hold_ms=3000");
    let request = std::thread::spawn(move || curl(&[&url]).0);
    let line = server.wait_for_line(Duration::from_secs(15), "the critical event", |l| {
        l.contains("memory pressure rose") && l.contains("to=critical")
    });
    assert!(
        line.contains("largest_in_flight") && line.contains("GET /api/reports/heavy held="),
        "{line}"
    );
    let status = request.join().unwrap();
    assert!(status == 200 || status == 503, "{status}");
    assert_eq!(cgroup.oom_kills(), 0);
}

#[test]
fn query_strings_stay_out_of_the_logs_unless_asked_for() {
    for (log_query, shown) in [("false", false), ("true", true)] {
        let server = Server::start("server", &[("MEMORY_LOG_QUERY", log_query)]);
        let (status, _) = curl(&[&server.url("/api/reports/heavy?mib=60&token=s3cr3t-value")]);
        assert_eq!(status, 200);
        let line = server.wait_for_line(Duration::from_secs(5), "the heavy warning", |l| {
            l.contains("heavy request") && !l.contains("while running")
        });
        assert!(line.contains("/api/reports/heavy"), "{line}");
        let leaked = server.lines().iter().any(|l| l.contains("s3cr3t-value"));
        assert_eq!(leaked, shown, "MEMORY_LOG_QUERY={log_query}: {line}");
    }
}

#[test]
fn variables_this_server_does_not_read_get_one_warning_each() {
    let server = Server::start(
        "server",
        &[
            ("MEMORY_CHECK_INTERVALL", "5000"),
            ("NODE_MAX_OLD_SPACE_SIZE", "2048"),
            ("NODE_ENV", "production"),
            ("MEMORY_RECLAIM_ENABLED", "true"),
        ],
    );
    let lines = server.lines();
    let warnings = |variable: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.contains("WARN") && l.contains(&format!("{variable} is not read")))
            .cloned()
            .collect()
    };
    for (variable, counterpart) in [
        ("MEMORY_CHECK_INTERVALL", "MEMORY_CHECK_INTERVAL"),
        ("NODE_MAX_OLD_SPACE_SIZE", "MEMORY_LIMIT_BYTES"),
        ("NODE_ENV", "LOG_FORMAT"),
    ] {
        let found = warnings(variable);
        assert_eq!(found.len(), 1, "{variable}: {lines:?}");
        assert!(found[0].contains(counterpart), "{}", found[0]);
    }
    assert!(warnings("MEMORY_RECLAIM_ENABLED").is_empty());
}

/// The allocator profile `/api/metrics` reports as applied. The gauge comes with a sample: with
/// the monitor running, the first one may land just after the server announced its address.
fn applied_profile(server: &Server) -> String {
    wait_for(Duration::from_secs(10), "memory_allocator_info", || {
        let text = metrics(&server.url("/api/metrics"));
        text.lines()
            .filter(|l| l.starts_with("memory_allocator_info{") && l.ends_with(" 1"))
            .find_map(|l| l.split("profile=\"").nth(1)?.split('"').next())
            .map(str::to_string)
    })
}

#[test]
fn memory_first_applies_without_the_monitor_and_the_aggressive_preset_is_real() {
    // The profile is applied when the configuration is read, monitor or not.
    let server = Server::start(
        "server",
        &[
            ("MEMORY_ALLOCATOR_PROFILE", "memory-first"),
            ("MEMORY_MONITORING_ENABLED", "false"),
            ("RUST_LOG", "info"),
        ],
    );
    health(&server); // without a monitor, a sample is taken on request
    assert_eq!(applied_profile(&server), "memory-first");
    assert!(
        server
            .lines()
            .iter()
            .any(|l| l.contains("allocator profile applied")),
        "{:?}",
        server.lines()
    );
    drop(server);

    // The aggressive preset: memory-first, a shorter cleanup interval, reclaim on warning.
    let server = Server::start("server", &[("MEMORY_RECLAIM_AGGRESSIVE", "true")]);
    assert_eq!(applied_profile(&server), "memory-first");
    let config = server
        .lines()
        .into_iter()
        .find(|l| l.starts_with("configuration "))
        .unwrap();
    let config: Value = serde_json::from_str(config.trim_start_matches("configuration ")).unwrap();
    assert_eq!(config["memory_reclaim_interval_ms"], 60_000);
    assert_eq!(config["memory_reclaim_on_warning"], true);
    drop(server);

    // Warning pressure from the start (usage between 2% and 99% of its cgroup's 512 MiB, the
    // server's alone): a reclaim on entering warning.
    if let Some(cgroup) = MemoryCgroup::create_or_skip("aggressive preset", "aggressive", 512 * MIB)
    {
        let server = Server::start_in(
            &cgroup,
            "server",
            &[
                ("MEMORY_RECLAIM_AGGRESSIVE", "true"),
                ("MEMORY_WARNING_THRESHOLD", "0.02"),
                ("MEMORY_CRITICAL_THRESHOLD", "0.99"),
                ("MEMORY_CHECK_INTERVAL", "100"),
            ],
        );
        wait_for(Duration::from_secs(10), "a reclaim on warning", || {
            health(&server)["reclaim"]["by_trigger"]["warning"]
                .as_u64()
                .filter(|n| *n >= 1)
        });
    }

    // Contradicting the preset is refused with both variables named, never ignored.
    let out = std::process::Command::new(test_support::example_path("server"))
        .env("PORT", "0")
        .env("MEMORY_RECLAIM_AGGRESSIVE", "true")
        .env("MEMORY_ALLOCATOR_PROFILE", "throughput")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("MEMORY_RECLAIM_AGGRESSIVE") && stderr.contains("MEMORY_ALLOCATOR_PROFILE"),
        "{stderr}"
    );
}

#[test]
fn a_configured_limit_above_the_cgroup_limit_is_clamped_with_a_warning() {
    let Some(cgroup) = MemoryCgroup::create_or_skip("limit clamp", "clamp", 256 * MIB) else {
        return;
    };
    let server = Server::start_in(
        &cgroup,
        "server",
        &[("MEMORY_LIMIT_BYTES", &(4096 * MIB).to_string())],
    );
    let h = health(&server);
    assert_eq!(h["limit_bytes"], 256 * MIB, "{h}");
    assert_eq!(h["limit_source"], "cgroup_max");
    assert_eq!(h["configured_limit_bytes"], 4096 * MIB);
    let line = server.wait_for_line(Duration::from_secs(5), "the clamp warning", |l| {
        l.contains("MEMORY_LIMIT_BYTES is above the cgroup")
    });
    assert!(line.contains("WARN"), "{line}");
    assert_eq!(
        server
            .lines()
            .iter()
            .filter(|l| l.contains("MEMORY_LIMIT_BYTES is above the cgroup"))
            .count(),
        1,
        "warned once"
    );
}

#[test]
fn the_admin_listener_serves_metrics_and_profiles_off_the_public_port() {
    let token = "admin-listener-token-0123456789";
    let server = Server::start(
        "server",
        &[("ADMIN_PORT", "0"), ("HEAP_PROFILE_TOKEN", token)],
    );
    let line = server.wait_for_line(Duration::from_secs(5), "the admin address", |l| {
        l.starts_with("admin listening on http://127.0.0.1:")
    });
    let admin = line.trim_start_matches("admin listening on ").trim();
    // Off the public port...
    assert_eq!(curl(&[&server.url("/api/metrics")]).0, 404);
    let bearer = format!("Authorization: Bearer {token}");
    assert_eq!(
        curl(&["-H", &bearer, &server.url("/api/debug/pprof/heap")]).0,
        404
    );
    assert_eq!(curl(&[&server.url("/api/health/ready")]).0, 200);
    // ... on the admin one, the profile still behind its token.
    let text = metrics(&format!("{admin}/metrics"));
    assert!(text.contains("memory_pressure_level"), "{text}");
    assert_eq!(curl(&[&format!("{admin}/debug/pprof/heap")]).0, 401);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("heap.pb.gz");
    let (status, _) = curl(&[
        "-H",
        &bearer,
        "-o",
        file.to_str().unwrap(),
        &format!("{admin}/debug/pprof/heap"),
    ]);
    assert_eq!(status, 200);
    assert_eq!(&std::fs::read(&file).unwrap()[..2], &[0x1f, 0x8b]);
    assert_eq!(curl(&[&format!("{admin}/health/live")]).0, 200);
    assert_eq!(curl(&[&format!("{admin}/api/hello")]).0, 404);

    // ADMIN_BIND alone is a mistake, said at start.
    let out = std::process::Command::new(test_support::example_path("server"))
        .env("PORT", "0")
        .env("ADMIN_BIND", "127.0.0.1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ADMIN_PORT"));
}
