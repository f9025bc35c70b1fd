//! SIGTERM while uploads are in flight: readiness turns 503, uploads that finish within the drain
//! timeout are answered 200 and kept whole, the others' clients get an error (their connection is
//! closed), no partial or temporary file is left, and the process exits 0 within the drain
//! timeout.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::run;
use crate::support::Server;
use crate::support::invariants::files;
use crate::support::raw::{NoResponse, Raw, head};
use test_support::send_signal;

const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
const UPLOADS: usize = 12;
const LEN: usize = 6 << 20;

fn body(i: usize) -> Vec<u8> {
    (0..LEN).map(|j| ((j * 7) ^ i) as u8).collect()
}

#[test]
fn sigterm_under_load_keeps_whole_files_only() {
    let mut server = Server::start(
        "server",
        &[
            ("DRAIN_TIMEOUT_MS", "3000"),
            ("STREAM_BUFFER_THRESHOLD", "1048576"),
        ],
    );
    let addr = server.addr.clone();
    let pid = server.pid();
    let dir = server.upload_dir.path().to_owned();
    let mut exit = None;
    run(Duration::from_secs(60), async {
        // Half the clients send 6 MiB in about 2 s, half in about 12 s: the fast ones finish within
        // the drain timeout, the slow ones cannot.
        let tasks: Vec<_> = (0..UPLOADS)
            .map(|i| {
                let addr = addr.clone();
                tokio::spawn(async move {
                    let data = body(i);
                    let expected = hex::encode(Sha256::digest(&data));
                    let piece = if i % 2 == 0 { 320 << 10 } else { 52 << 10 };
                    let Raw {
                        mut reader,
                        mut writer,
                    } = Raw::connect(&addr).await;
                    let writing = tokio::spawn(async move {
                        use tokio::io::AsyncWriteExt;
                        let request =
                            head("POST", "/api/uploads", &[&format!("Content-Length: {LEN}")]);
                        if writer.write_all(&request).await.is_err() {
                            return;
                        }
                        let _ = crate::support::raw::send_paced(
                            &mut writer,
                            &data,
                            piece,
                            Duration::from_millis(100),
                        )
                        .await;
                    });
                    let answer = reader.response(Duration::from_secs(30)).await;
                    writing.abort();
                    (answer, expected)
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(800)).await;
        let in_flight = files(&dir)
            .iter()
            .filter(|f| f.starts_with(".spool-"))
            .count();
        assert!(in_flight > 0, "uploads are spooling when the signal comes");
        send_signal(pid, "TERM");
        let signalled = Instant::now();

        let mut stored = Vec::new();
        let mut cut_off = 0;
        for t in tasks {
            let (answer, expected) = t.await.unwrap();
            match answer {
                Ok(r) if r.status == 200 => {
                    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                    assert_eq!(
                        json["sha256"],
                        expected.as_str(),
                        "a 200 is the whole upload"
                    );
                    stored.push(expected);
                }
                Ok(r) => panic!("status {}: {}", r.status, r.text()),
                Err(NoResponse::Closed(_)) => cut_off += 1,
                Err(NoResponse::Timeout) => panic!("a client was left hanging"),
            }
        }
        println!(
            "SIGTERM with {in_flight} uploads spooling: {} stored whole, {cut_off} cut off",
            stored.len()
        );
        assert!(
            !stored.is_empty(),
            "uploads that finish within the drain are served"
        );
        assert!(cut_off > 0, "uploads that cannot finish are cut off");

        let status = tokio::task::block_in_place(|| server.wait_exit(Duration::from_secs(10)));
        let took = signalled.elapsed();
        assert!(status.success(), "exit status {status}");
        assert!(
            took < DRAIN_TIMEOUT + Duration::from_secs(2),
            "exited {took:?} after SIGTERM"
        );
        exit = Some(took);

        // What is on disk is exactly the uploads answered 200, each whole.
        let mut on_disk: Vec<String> = files(&dir)
            .into_iter()
            .map(|name| {
                assert!(name.starts_with("upload-"), "left behind: {name}");
                hex::encode(Sha256::digest(std::fs::read(dir.join(&name)).unwrap()))
            })
            .collect();
        on_disk.sort();
        stored.sort();
        assert_eq!(on_disk, stored);
    });
    println!("exit 0 {:?} after SIGTERM", exit.unwrap());
}
