//! The heap snapshot workflow on the example server: the profile endpoint with a temp dir that
//! cannot be written (as in the shipped Kubernetes Deployment, whose root file system is
//! read-only), a profile directory checked at start-up, and a profile written on exit with mode
//! 0600.

mod support;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{Server, curl};
use test_support::example_path;

const TOKEN: &str = "heap-profile-token-0123456789";

/// The pprof fields checked here (profile.proto of google/pprof).
#[derive(Clone, PartialEq, prost::Message)]
struct Profile {
    #[prost(message, repeated, tag = "1")]
    sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    sample: Vec<Sample>,
    #[prost(string, repeated, tag = "6")]
    string_table: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ValueType {
    #[prost(int64, tag = "1")]
    r#type: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Sample {
    #[prost(int64, repeated, tag = "2")]
    value: Vec<i64>,
}

/// A gzipped pprof profile with samples of `inuse_space`.
fn assert_profile(gzipped: &[u8]) {
    use prost::Message;
    assert_eq!(&gzipped[..2], &[0x1f, 0x8b], "gzip magic");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gzipped)
        .read_to_end(&mut raw)
        .unwrap();
    let profile = Profile::decode(raw.as_slice()).expect("a pprof Profile message");
    let kind = profile.sample_type[0].r#type as usize;
    assert_eq!(profile.string_table[kind], "inuse_space");
    assert!(!profile.sample.is_empty());
    assert!(profile.sample.iter().map(|s| s.value[0]).sum::<i64>() > 0);
}

fn effective_uid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        .unwrap_or(false)
}

/// Starts the server with `TMPDIR` at `dir`, made unwritable for real: as root (who writes
/// anywhere the mode allows nothing) a read-only bind mount of it in a mount namespace of the
/// server's own, which goes away with the process; otherwise mode 0500.
fn start_with_unwritable_tmpdir(dir: &Path, env: &[(&str, &str)]) -> Server {
    let mut env = env.to_vec();
    let tmpdir = dir.to_str().unwrap();
    env.push(("TMPDIR", tmpdir));
    if effective_uid_is_root() {
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && shift && exec "$@""#)
            .arg("sh")
            .arg(tmpdir)
            .arg(example_path("server"));
        Server::start_command(cmd, &env)
    } else {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o500)).unwrap();
        Server::start("server", &env)
    }
}

#[test]
fn the_profile_endpoint_does_not_need_a_writable_temp_dir() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let profiles = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let server = start_with_unwritable_tmpdir(
        tmp.path(),
        &[
            ("HEAP_PROFILE_TOKEN", TOKEN),
            ("HEAP_PROFILE_DIR", profiles.path().to_str().unwrap()),
        ],
    );
    // The temp dir really cannot be written, as the server sees it (through its own mounts).
    let probe = format!("/proc/{}/root{}/probe", server.pid(), tmp.path().display());
    assert!(
        std::fs::write(&probe, b"x").is_err(),
        "the server's temp dir is writable"
    );

    let file = tempfile::NamedTempFile::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (status, body) = curl(&[
        "-H",
        &format!("Authorization: Bearer {TOKEN}"),
        "-o",
        file.path().to_str().unwrap(),
        &server.url("/api/debug/pprof/heap"),
    ]);
    assert_eq!(status, 200, "{body}");
    assert_profile(&std::fs::read(file.path()).unwrap());
    // The dump went through the profile directory and was removed from it.
    assert_eq!(std::fs::read_dir(profiles.path()).unwrap().count(), 0);
}

#[test]
fn without_a_profile_dir_an_unwritable_temp_dir_stops_the_start_with_its_name() {
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // A path under a regular file: no user, root included, can create anything there.
    let file = tmp.path().join("not-a-directory");
    std::fs::write(&file, b"").unwrap();
    let unwritable = file.join("tmp");
    let out = Command::new(example_path("server"))
        .env("PORT", "0")
        .env("HEAP_PROFILE_TOKEN", TOKEN)
        .env("TMPDIR", &unwritable)
        .env("UPLOAD_DIR", tmp.path().join("uploads"))
        .env_remove("HEAP_PROFILE_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("HEAP_PROFILE_DIR") && text.contains(unwritable.to_str().unwrap()),
        "{text}"
    );
    assert!(!text.contains("listening on"), "{text}");
}

#[test]
fn a_profile_is_written_on_exit_readable_by_the_owner_only() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("exit.pb.gz");
    let mut server = Server::start(
        "server",
        &[
            ("HEAP_PROFILE_ON_EXIT", path.to_str().unwrap()),
            ("RUST_LOG", "info"),
        ],
    );
    assert_eq!(curl(&[&server.url("/api/reports/heavy?mib=8")]).0, 200);
    let exit = server.signal_and_wait("TERM", Duration::from_secs(20));
    assert!(exit.success(), "{exit}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    assert_profile(&std::fs::read(&path).unwrap());
    assert!(
        server
            .lines()
            .iter()
            .any(|l| l.contains("heap profile written on exit")),
        "{:?}",
        server.lines()
    );
    // Nothing else was left in the directory (the dump and the staged file are gone).
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
