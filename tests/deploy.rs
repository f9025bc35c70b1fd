//! The deployment files are checked by the tools that will consume them: kubernetes-validate
//! (offline OpenAPI schemas, from PyPI) for the manifests, promtool for the Prometheus
//! configuration, alert rules and their unit tests.
//!
//! (Over 400 lines: each deployment file checked by its own tool, one short case each, sharing the
//! tool-finding harness.)

use std::path::{Path, PathBuf};
use std::process::Command;

mod support;

use support::{dashboard_queries, dashboard_targets, legend_labels};

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(rel)
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} does not run ({e}); .ci/run installs it"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

const KUBERNETES_VERSION: &str = "1.33.0";

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy("kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn kubernetes_manifests_validate_strictly() {
    let files = manifests();
    assert!(files.len() >= 4, "{files:?}");
    let (ok, text) = run(Command::new("kubernetes-validate")
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .args(&files));
    assert!(ok, "{text}");
    for kind in [
        "deployment",
        "horizontalpodautoscaler",
        "service",
        "configmap",
    ] {
        assert!(
            text.contains(&format!("for resource {kind}/")),
            "{kind} not validated: {text}"
        );
    }
}

#[test]
fn the_validator_rejects_a_broken_manifest() {
    // A control: the same validation must fail on a field the schema does not have, so a pass
    // above means something.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let text = std::fs::read_to_string(deploy("kubernetes/deployment.yaml"))
        .unwrap()
        .replace("readinessProbe:", "readinesProbe:");
    std::fs::write(&broken, text).unwrap();
    let (ok, text) = run(Command::new("kubernetes-validate")
        .args(["--strict", "-k", KUBERNETES_VERSION])
        .arg(&broken));
    assert!(!ok, "a misspelt field passed: {text}");
}

#[test]
fn probes_and_memory_sizing_match_the_server() {
    let deployment = std::fs::read_to_string(deploy("kubernetes/deployment.yaml")).unwrap();
    assert!(deployment.contains("path: /api/health/live"));
    assert!(deployment.contains("path: /api/health/ready"));
    let config = std::fs::read_to_string(deploy("kubernetes/configmap.yaml")).unwrap();
    let value = |key: &str| -> String {
        config
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("{key} missing"))
            .trim_matches('"')
            .to_string()
    };
    // Every variable the ConfigMap sets is one the server reads (the README's table).
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let data = config
        .lines()
        .skip_while(|l| *l != "data:")
        .skip(1)
        .filter(|l| l.starts_with("  ") && !l.trim_start().starts_with('#'));
    for line in data {
        let key = line.trim().split(':').next().unwrap();
        assert!(
            readme.contains(&format!("`{key}`")),
            "{key} is not in the README's table"
        );
    }
    let warning: f64 = value("MEMORY_WARNING_THRESHOLD").parse().unwrap();
    let critical: f64 = value("MEMORY_CRITICAL_THRESHOLD").parse().unwrap();
    let quota: u64 = value("MAX_REQUEST_MEMORY").parse().unwrap();
    let limit = 512u64 << 20;
    let request = 320u64 << 20;
    assert!(deployment.contains("memory: 512Mi") && deployment.contains("memory: 320Mi"));
    let hpa = std::fs::read_to_string(deploy("kubernetes/hpa.yaml")).unwrap();
    let utilization: u64 = hpa
        .lines()
        .find_map(|l| l.trim().strip_prefix("averageUtilization: "))
        .unwrap()
        .parse()
        .unwrap();
    // The HPA adds pods before any pod reaches its warning threshold, and the request sits below
    // the warning threshold too.
    assert!((request * utilization / 100) < (limit as f64 * warning) as u64);
    assert!(request < (limit as f64 * warning) as u64);
    assert!(warning < critical && critical < 1.0);
    // A request at its quota, started just below critical, still fits under the limit.
    assert!((limit as f64 * critical) as u64 + quota <= limit);
    // Grace period covers the preStop sleep plus the drain timeout.
    let grace: u64 = deployment
        .lines()
        .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds: "))
        .unwrap()
        .parse()
        .unwrap();
    let drain_ms: u64 = deployment
        .lines()
        .skip_while(|l| !l.contains("DRAIN_TIMEOUT_MS"))
        .nth(1)
        .and_then(|l| l.trim().strip_prefix("value: "))
        .unwrap()
        .trim_matches('"')
        .parse()
        .unwrap();
    assert!(grace * 1000 > 5_000 + drain_ms);
}

#[test]
fn prometheus_config_and_rules_pass_promtool() {
    let (ok, text) = run(Command::new("promtool")
        .arg("check")
        .arg("config")
        .arg(deploy("prometheus/prometheus.yml")));
    assert!(ok, "{text}");
    let (ok, text) = run(Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(deploy("prometheus/alerts.yml")));
    assert!(ok, "{text}");
    assert!(text.contains("SUCCESS: 8 rules found"), "{text}");
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    let (ok, text) = run(Command::new("promtool")
        .arg("test")
        .arg("rules")
        .arg(deploy("prometheus/alerts_test.yml")));
    assert!(ok, "{text}");
}

#[test]
fn alert_unit_tests_can_fail() {
    // A control: the same tests against a rule file whose critical alert waits longer must fail.
    let dir = tempfile::tempdir().unwrap();
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml"))
        .unwrap()
        .replace("for: 2m\n", "for: 20m\n");
    std::fs::write(dir.path().join("alerts.yml"), rules).unwrap();
    std::fs::copy(
        deploy("prometheus/alerts_test.yml"),
        dir.path().join("alerts_test.yml"),
    )
    .unwrap();
    let (ok, text) = run(Command::new("promtool").current_dir(dir.path()).args([
        "test",
        "rules",
        "alerts_test.yml",
    ]));
    assert!(!ok, "a slower alert passed the unit tests: {text}");
}

#[test]
fn dashboard_queries_are_valid_promql() {
    // promtool parses every expression as a recording rule: a typo in a query fails here, not
    // on an operator's screen.
    let exprs = dashboard_queries();
    assert!(exprs.len() >= 20, "{} queries", exprs.len());
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {}\n",
            serde_json::to_string(e).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard_rules.yml");
    std::fs::write(&file, rules).unwrap();
    let (ok, text) = run(Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&file));
    assert!(ok, "{text}");
}

#[test]
fn every_dashboard_legend_is_plain_label_placeholders() {
    // The parser on known answers first, so a pass below means something.
    assert_eq!(legend_labels("RSS {{instance}}").unwrap(), ["instance"]);
    assert_eq!(legend_labels("p50").unwrap(), Vec::<String>::new());
    assert!(legend_labels("RSS {{{{instance}}}}").is_err());
    assert!(legend_labels("RSS {instance}").is_err());
    assert!(legend_labels("{{instance}").is_err());
    let targets = dashboard_targets();
    assert!(targets.len() >= 40, "{} targets", targets.len());
    for t in &targets {
        assert!(
            !t.legend.is_empty(),
            "{}: {} has no legend",
            t.panel,
            t.expr
        );
        if let Err(e) = legend_labels(&t.legend) {
            panic!("{}: {e}", t.panel);
        }
    }
    // (Whether each label is one the query keeps is checked against a real Prometheus in
    // tests/prometheus.rs.)
}

#[test]
fn manifests_give_the_server_writable_directories_and_an_admin_port() {
    let deployment = std::fs::read_to_string(deploy("kubernetes/deployment.yaml")).unwrap();
    let config = std::fs::read_to_string(deploy("kubernetes/configmap.yaml")).unwrap();
    let value = |key: &str| -> String {
        config
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("{key} missing"))
            .trim_matches('"')
            .to_string()
    };
    // The root file system is read-only: each directory the server writes is a volume.
    assert!(deployment.contains("readOnlyRootFilesystem: true"));
    for key in ["UPLOAD_DIR", "HEAP_PROFILE_DIR"] {
        let dir = value(key);
        assert!(
            deployment.contains(&format!("mountPath: {dir}")),
            "{key}={dir} is not a volume mount"
        );
    }
    assert_eq!(value("MEMORY_ALLOCATOR_PROFILE"), "memory-first");
    // Metrics are scraped from the admin listener, which the public Service does not expose.
    let admin = value("ADMIN_PORT");
    assert!(deployment.contains(&format!("containerPort: {admin}")));
    assert!(deployment.contains(&format!("prometheus.io/port: \"{admin}\"")));
    assert!(deployment.contains("prometheus.io/path: \"/metrics\""));
    let prometheus = std::fs::read_to_string(deploy("prometheus/prometheus.yml")).unwrap();
    assert!(prometheus.contains("metrics_path: /metrics"));
    assert!(prometheus.contains(&format!("port: {admin}")));
    let services = std::fs::read_to_string(deploy("kubernetes/service.yaml")).unwrap();
    let public = services.split("---").next().unwrap();
    assert!(
        !public.contains("admin"),
        "the public Service exposes the admin port"
    );
}

#[test]
fn the_adapter_serves_the_governor_queue_to_the_hpa() {
    let adapter = std::fs::read_to_string(deploy("kubernetes/prometheus-adapter.yaml")).unwrap();
    let field = |key: &str| -> String {
        adapter
            .lines()
            .find_map(|l| {
                l.trim()
                    .trim_start_matches("- ")
                    .strip_prefix(&format!("{key}: "))
            })
            .unwrap_or_else(|| panic!("{key} missing from the adapter rule"))
            .trim()
            .trim_matches(|c| c == '"' || c == '\'')
            .to_string()
    };
    // The series is the gauge the server exports for its queue...
    let series = field("seriesQuery");
    let metric = series.split('{').next().unwrap();
    assert_eq!(metric, tower_memory::health::BUDGET_QUEUE);
    assert!(
        series.contains("job=\"tower-memory\""),
        "the scrape job of prometheus.yml"
    );
    let prometheus = std::fs::read_to_string(deploy("prometheus/prometheus.yml")).unwrap();
    assert!(prometheus.contains("job_name: tower-memory"));
    // ... served under the name the HPA asks for...
    let external = field("as");
    let hpa = std::fs::read_to_string(deploy("kubernetes/hpa.yaml")).unwrap();
    let asked = hpa
        .lines()
        .skip_while(|l| !l.contains("type: External"))
        .find_map(|l| l.trim().strip_prefix("name: "))
        .expect("an external metric in the HPA");
    assert_eq!(asked, external);
    // ... by a query Prometheus accepts, once the adapter fills in its template.
    let query = field("metricsQuery")
        .replace("<<.Series>>", metric)
        .replace("<<.LabelMatchers>>", "job=\"tower-memory\"");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("adapter_rules.yml");
    std::fs::write(
        &file,
        format!(
            "groups:\n  - name: adapter\n    rules:\n      - record: adapter:queue\n        expr: {}\n",
            serde_json::to_string(&query).unwrap()
        ),
    )
    .unwrap();
    let (ok, text) = run(Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&file));
    assert!(ok, "{query}: {text}");
    let (ok, _) = run(Command::new("promtool").arg("check").arg("rules").arg({
        std::fs::write(
            &file,
            "groups:\n  - name: adapter\n    rules:\n      - record: adapter:queue\n        expr: \"sum(max_over_time(x[1m])\"\n",
        )
        .unwrap();
        &file
    }));
    assert!(
        !ok,
        "promtool must reject a broken query for the check above to mean anything"
    );
}

/// The rows of the README's migration table: (guide, here).
fn migration_rows() -> Vec<(String, String)> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = readme
        .split("## Migration from the Node.js guide")
        .nth(1)
        .expect("the migration section")
        .split("\n## ")
        .next()
        .unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| Guide |"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").collect();
            assert_eq!(cells.len(), 2, "{l}");
            (cells[0].trim().to_string(), cells[1].trim().to_string())
        })
        .collect()
}

/// The `code` spans of a table cell.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn the_migration_table_covers_the_guide_and_agrees_with_the_server() {
    use tower_memory::config::VARIABLES;
    use tower_memory::health::{Counterpart, unrecognized_variables_among};
    let unrecognized_variables =
        |names: [&String; 1]| unrecognized_variables_among(names, &VARIABLES);
    let rows = migration_rows();
    let guide: String = rows
        .iter()
        .map(|(g, _)| g.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    // The guide's variables, flags, npm scripts, endpoints, metric names and panels.
    for item in [
        "NODE_ENV",
        "NODE_MAX_OLD_SPACE_SIZE",
        "NODE_MAX_SEMI_SPACE_SIZE",
        "NODE_INITIAL_OLD_SPACE_SIZE",
        "NODE_EXPOSE_GC",
        "NODE_GC_MAX_OLD_GEN_SIZE",
        "NODE_GC_MAX_YOUNG_GEN_SIZE",
        "NODE_OPTIMIZE_FOR_MEMORY",
        "NODE_OPTIONS",
        "MEMORY_MONITORING_ENABLED",
        "MEMORY_WARNING_THRESHOLD",
        "MEMORY_CRITICAL_THRESHOLD",
        "MEMORY_CHECK_INTERVAL_MS",
        "MEMORY_GC_AFTER_THRESHOLD",
        "MEMORY_CLEANUP_AGGRESSIVE",
        "STREAM_HIGH_WATER_MARK",
        "COMPRESSION_MEM_LEVEL",
        "PAYLOAD_JSON_LIMIT",
        "CACHE_MAX_SIZE",
        "DB_POOL_MAX",
        "REDIS_MAX_CLIENTS",
        "UV_THREADPOOL_SIZE",
        "--max-old-space-size",
        "--expose-gc",
        "--optimize-for-size",
        "--gc-interval",
        "--max-semi-space-size",
        "npm run build",
        "npm run start:prod",
        "npm run start:prod:memory",
        "npm run memory:snapshot",
        "npm run memory:analysis",
        "/api/metrics/memory/gc",
        "/api/metrics/memory/prometheus",
        "/api/metrics/memory/heap-spaces",
        "numberOfDetachedContexts",
        "nodejs_heap_size_used_bytes",
        "nodejs_heap_size_total_bytes",
        "nodejs_external_memory_bytes",
        "nodejs_heap_space_size_total_bytes",
        "process_resident_memory_bytes",
        "Heap usage over time",
        "RSS memory",
        "GC pause duration",
        "Memory allocation rate",
        "Detached contexts",
    ] {
        assert!(
            guide.contains(item),
            "{item} is missing from the migration table"
        );
    }
    // Where the server warns about a guide variable, the table names the same counterpart.
    let server_vars = [
        "BIND",
        "PORT",
        "ADMIN_BIND",
        "ADMIN_PORT",
        "LOG_FORMAT",
        "MAX_BODY_SIZE",
        "MAX_REQUEST_MEMORY",
        "UPLOAD_DIR",
        "DRAIN_DELAY_MS",
        "DRAIN_TIMEOUT_MS",
        "RUST_LOG",
        "TOKIO_WORKER_THREADS",
    ];
    for (guide_cell, here) in &rows {
        for name in code_spans(guide_cell) {
            if VARIABLES.contains(&name.as_str()) {
                continue;
            }
            let is_variable = name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !is_variable {
                continue;
            }
            if let Some(found) = unrecognized_variables([&name]).first()
                && let Counterpart::Use(counterpart, _) = found.counterpart
            {
                assert!(
                    here.contains(counterpart),
                    "{name}: the server says {counterpart}, the table says {here}"
                );
            }
        }
        // Every variable the table recommends is one the server reads.
        for name in code_spans(here) {
            let name = name.split('=').next().unwrap();
            let looks_like_variable = name.len() > 3
                && name.contains('_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if looks_like_variable {
                assert!(
                    VARIABLES.contains(&name) || server_vars.contains(&name),
                    "the table recommends {name}, which nothing reads"
                );
            }
        }
    }
}
