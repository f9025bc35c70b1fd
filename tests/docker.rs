//! The Docker deployment without a Docker engine: `deploy/docker-compose.yml` validated against
//! the Compose specification's JSON schema (check-jsonschema, from PyPI, carries it), kept equal
//! to the Kubernetes ConfigMap and Deployment, its health check run for real (the server binary's
//! `--probe` against a running server), and `.dockerignore` checked against the tracked files.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::Server;
use test_support::example_path;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A YAML file as JSON, through PyYAML (installed with kubernetes-validate, see `.ci/run`).
fn yaml(path: &Path) -> Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check_jsonschema(file: &Path) -> (bool, String) {
    let out = Command::new("check-jsonschema")
        .args(["--builtin-schema", "vendor.compose-spec"])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("check-jsonschema does not run ({e}); .ci/run installs it"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn compose_service() -> Value {
    yaml(&repo("deploy/docker-compose.yml"))["services"]["server"].clone()
}

fn strings(map: &Value) -> BTreeMap<String, Option<String>> {
    map.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string)))
        .collect()
}

#[test]
fn the_compose_file_passes_the_compose_specification_schema() {
    let (ok, text) = check_jsonschema(&repo("deploy/docker-compose.yml"));
    assert!(ok, "{text}");
    // A control: the same file with a misspelt key and with a limit of the wrong type fails.
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(repo("deploy/docker-compose.yml")).unwrap();
    for (from, to) in [
        ("healthcheck:", "healthchek:"),
        ("memory: 512m", "memory: [512m]"),
    ] {
        let broken = dir.path().join("docker-compose.yml");
        std::fs::write(&broken, original.replacen(from, to, 1)).unwrap();
        let (ok, text) = check_jsonschema(&broken);
        assert!(!ok, "{to:?} passed the schema: {text}");
    }
}

#[test]
fn compose_and_kubernetes_configure_the_same_server() {
    let service = compose_service();
    let configmap = yaml(&repo("deploy/kubernetes/configmap.yaml"));
    let mut environment = strings(&service["environment"]);
    // Set in the Deployment itself, not in the ConfigMap: the drain timeout (next to the grace
    // period it must fit) and the token (from a Secret).
    assert_eq!(
        environment.remove("DRAIN_TIMEOUT_MS"),
        Some(Some("20000".into()))
    );
    assert_eq!(
        environment.remove("HEAP_PROFILE_TOKEN"),
        Some(None),
        "passed through from the shell, never written down"
    );
    let data: BTreeMap<String, Option<String>> = strings(&configmap["data"]);
    assert_eq!(environment, data, "compose environment vs ConfigMap data");
    assert_eq!(
        data["MEMORY_ALLOCATOR_PROFILE"].as_deref(),
        Some("memory-first")
    );

    // The same memory sizing as the Deployment (Compose's `m` is MiB, like Kubernetes' `Mi`).
    let deployment = yaml(&repo("deploy/kubernetes/deployment.yaml"));
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let resources = &service["deploy"]["resources"];
    assert_eq!(resources["limits"]["memory"], "512m");
    assert_eq!(container["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(resources["reservations"]["memory"], "320m");
    assert_eq!(container["resources"]["requests"]["memory"], "320Mi");

    // Read-only root file systems, with the upload and profile directories on volumes.
    assert_eq!(service["read_only"], true);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let compose_mounts: Vec<String> = service["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().split(':').nth(1).unwrap().to_string())
        .collect();
    let kube_mounts: Vec<String> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap().to_string())
        .collect();
    for key in ["UPLOAD_DIR", "HEAP_PROFILE_DIR"] {
        let dir = data[key].clone().unwrap();
        assert!(
            compose_mounts.contains(&dir),
            "{key}={dir} is no compose volume"
        );
        assert!(
            kube_mounts.contains(&dir),
            "{key}={dir} is no Deployment volume"
        );
    }

    // The health check is the server binary probing its own liveness on its own port, the same
    // command as the image's HEALTHCHECK.
    let port = data["PORT"].clone().unwrap();
    let test: Vec<&str> = service["healthcheck"]["test"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let live = format!("http://127.0.0.1:{port}/api/health/live");
    assert_eq!(
        test,
        ["CMD", "/usr/local/bin/server", "--probe", live.as_str()]
    );
    let dockerfile = std::fs::read_to_string(repo("deploy/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!(
            "CMD [\"/usr/local/bin/server\", \"--probe\", \"{live}\"]"
        )),
        "the Dockerfile's HEALTHCHECK differs"
    );
    assert!(dockerfile.contains("COPY --from=build /server /usr/local/bin/server"));
}

/// Runs the health check's command with the test's server binary and port.
fn probe(url: &str) -> (i32, String) {
    let out = Command::new(example_path("server"))
        .arg("--probe")
        .arg(url)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_health_check_command_probes_a_real_server() {
    let mut server = Server::start("server", &[]);
    let (code, text) = probe(&server.url("/api/health/live"));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("200"), "{text}");
    // Anything but a 2xx is unhealthy, with the answer in the message.
    let (code, text) = probe(&server.url("/api/no-such-route"));
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("404"), "{text}");
    // A URL it cannot probe is unhealthy with a reason; a missing URL is a usage error (2).
    let (code, text) = probe("https://127.0.0.1/api/health/live");
    assert_eq!(code, 1);
    assert!(text.contains("only http://"), "{text}");
    let out = Command::new(example_path("server"))
        .arg("--probe")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    // A stopped server: connection refused, unhealthy, within the probe's own timeout.
    let url = server.url("/api/health/live");
    let exit = server.signal_and_wait("TERM", std::time::Duration::from_secs(10));
    assert!(exit.success());
    let started = std::time::Instant::now();
    let (code, text) = probe(&url);
    assert_eq!(code, 1, "{text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// Docker's `.dockerignore` matching, for the patterns used here: a pattern matches a path or any
/// of its parent directories; `*` stays within one component, `**` spans any number.
fn ignored(patterns: &[String], path: &str) -> bool {
    fn glob(p: &[&str], s: &[&str]) -> bool {
        match (p.first(), s.first()) {
            (None, _) => true, // a directory matched: everything under it goes
            (Some(&"**"), _) => (0..=s.len()).any(|i| glob(&p[1..], &s[i..])),
            (Some(_), None) => false,
            (Some(pc), Some(sc)) => {
                component(pc.as_bytes(), sc.as_bytes()) && glob(&p[1..], &s[1..])
            }
        }
    }
    fn component(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => (0..=s.len()).any(|i| component(&p[1..], &s[i..])),
            (Some(a), Some(b)) if a == b => component(&p[1..], &s[1..]),
            _ => false,
        }
    }
    let parts: Vec<&str> = path.split('/').collect();
    patterns.iter().any(|pattern| {
        let pattern: Vec<&str> = pattern.trim_matches('/').split('/').collect();
        glob(&pattern, &parts)
    })
}

#[test]
fn the_build_context_keeps_every_source_and_no_build_output() {
    let text = std::fs::read_to_string(repo(".dockerignore")).unwrap();
    let patterns: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    assert!(
        patterns.iter().all(|p| !p.starts_with('!')),
        "no exceptions used"
    );
    // The matcher itself, on known answers.
    assert!(ignored(&["**/target".into()], "crates/a/target/debug/x"));
    assert!(ignored(&["*.pb.gz".into()], "heap.pb.gz"));
    assert!(!ignored(&["*.pb.gz".into()], "deploy/heap.pb.gz"));
    assert!(!ignored(&["target".into()], "src/target.rs"));

    let out = Command::new("git")
        .args(["ls-files"])
        .current_dir(repo(""))
        .output()
        .unwrap();
    assert!(out.status.success());
    let tracked = String::from_utf8(out.stdout).unwrap();
    let excluded: Vec<&str> = tracked.lines().filter(|f| ignored(&patterns, f)).collect();
    assert!(
        excluded.is_empty(),
        "the image build needs these tracked files: {excluded:?}"
    );
    for output in [
        "target/release/examples/server",
        ".git/HEAD",
        "fuzz/target/x",
        "fuzz/corpus/accept_encoding/1",
        "heap.pb.gz",
    ] {
        assert!(ignored(&patterns, output), "{output} is sent to the daemon");
    }
}
