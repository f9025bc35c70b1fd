//! The README's "Getting started", followed as a newcomer would: a new Cargo project made of the
//! README's dependency block and `src/main.rs` block, built with the default features (what a
//! plain `tower-memory = "0.1"` gets), run, and asked the README's `curl` commands, whose answers
//! must be the ones the README states.
//!
//! The project builds in `target/newcomer` (its own target dir: the running `cargo test` holds
//! the workspace's, and the default feature set differs from `--all-features` anyway); it starts
//! from this workspace's `Cargo.lock`, so it gets the versions the workspace is tested with.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use test_support::{ChildServer, listening_on_http};

/// The README's code block of `lang` that follows the heading `section`.
fn readme_block(readme: &str, section: &str, lang: &str) -> String {
    let start = readme
        .find(section)
        .unwrap_or_else(|| panic!("README has no {section:?}"));
    let rest = &readme[start..];
    let open = format!("```{lang}\n");
    let body = &rest[rest
        .find(&open)
        .unwrap_or_else(|| panic!("no ```{lang} block after {section:?}"))
        + open.len()..];
    body[..body.find("```").expect("closed block")].to_string()
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The README's `Cargo.toml` and `main.rs`, made into a project in `dir`.
fn write_project(dir: &Path) -> String {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let section = "## Getting started";
    let dependencies = readme_block(&readme, section, "toml");
    assert!(
        dependencies.contains(r#"tower-memory = { path = "../tower-memory" }"#),
        "the README's dependency line changed: {dependencies}"
    );
    // The clone the README's path points at is this workspace.
    let dependencies = dependencies.replace(
        r#"path = "../tower-memory""#,
        &format!("path = {:?}", workspace().display().to_string()),
    );
    let main = readme_block(&readme, section, "rust,no_run");
    assert!(
        main.contains("127.0.0.1:3000"),
        "main.rs binds 127.0.0.1:3000"
    );
    // Port 0: tests run in parallel. The program prints the address it got.
    let main = main.replace("127.0.0.1:3000", "127.0.0.1:0");
    let manifest = format!(
        "[package]\nname = \"newcomer\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
         {dependencies}\n# Not part of any enclosing workspace.\n[workspace]\n"
    );
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::write(dir.join("src/main.rs"), main).unwrap();
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    readme_block(&readme, section, "sh")
}

#[test]
fn the_readme_getting_started_builds_runs_and_answers_as_it_says() {
    let project = tempfile::tempdir().unwrap();
    let commands = write_project(project.path());
    let target = workspace().join("target").join("newcomer");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = Command::new(&cargo)
        .args(["build", "--quiet"])
        .current_dir(project.path())
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .expect("run cargo");
    assert!(build.success(), "the README's project does not build");

    let mut cmd = Command::new(target.join("debug").join("newcomer"));
    cmd.stderr(Stdio::inherit());
    let server = ChildServer::spawn(cmd, Duration::from_secs(30), listening_on_http);

    // The README's commands, as written, against the port the server got.
    let curls: Vec<&str> = commands
        .lines()
        .filter(|line| line.starts_with("curl "))
        .collect();
    assert_eq!(
        curls.len(),
        5,
        "the README's curl lines changed: {commands}"
    );
    let run = |line: &str| -> String {
        let line = line.replace("localhost:3000", server.addr());
        let out = Command::new("sh")
            .args(["-c", &line])
            .output()
            .expect("sh and curl (scripts/test installs curl)");
        assert!(out.status.success(), "{line}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };

    assert_eq!(run(curls[0]), "hello");

    let gzipped: u64 = run(curls[1]).trim().parse().unwrap();
    assert!(
        gzipped > 0 && gzipped < 1_000,
        "120,000 repetitive bytes gzip to {gzipped} bytes (README: 637)"
    );

    let health: serde_json::Value = serde_json::from_str(&run(curls[2])).unwrap();
    assert!(
        health["status"].is_string() && health["limit_bytes"].as_u64().is_some_and(|l| l > 0),
        "/api/health states the status and the limit: {health}"
    );

    let metrics = run(curls[3]);
    // One line per method, route and status; /api/hello and /api/big went through the stack.
    let count: u64 = metrics
        .lines()
        .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(count >= 2, "the requests so far are counted: {metrics}");

    assert_eq!(run(curls[4]).trim(), "413");
    drop(server);
}
