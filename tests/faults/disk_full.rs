//! Disk full while spooling: the upload directory is a real 8 MiB tmpfs (the spool's tmpfs guard
//! explicitly allowed with `UPLOAD_DIR_ALLOW_TMPFS`), uploads larger than it are answered 507
//! Insufficient Storage, nothing is left on it, and the server goes on serving, uploads that fit
//! included.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::run;
use crate::support::Server;
use crate::support::invariants::{MIB, Watch};
use crate::support::raw::{Raw, RawResponse, head};
use crate::support::smallfs::SmallFs;
use test_support::chunk;

const T: Duration = Duration::from_secs(30);

/// Sends `head` and then `body` from a task of its own while the answer is read: the server
/// answers before it has taken the whole body.
async fn upload(addr: &str, head: Vec<u8>, body: Vec<u8>) -> RawResponse {
    let Raw {
        mut reader,
        mut writer,
    } = Raw::connect(addr).await;
    let writing = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        if writer.write_all(&head).await.is_ok() {
            let _ = writer.write_all(&body).await;
        }
        writer
    });
    let r = reader.response(T).await.expect("a response");
    drop(reader);
    drop(writing.await.unwrap());
    r
}

#[test]
fn a_full_disk_is_507_and_leaves_nothing() {
    const TEST: &str = "a_full_disk_is_507_and_leaves_nothing";
    let Some(fs) = SmallFs::mount_or_skip(TEST, 8 * MIB) else {
        return;
    };
    let dir = fs.path().to_str().unwrap().to_string();
    let server = Server::start(
        "server",
        &[
            ("UPLOAD_DIR", &dir),
            ("UPLOAD_DIR_ALLOW_TMPFS", "true"),
            ("STREAM_BUFFER_THRESHOLD", "1048576"),
        ],
    );
    let watch = Watch::of(&server).with_upload_dir(fs.path());
    let addr = server.addr.clone();
    run(Duration::from_secs(60), async {
        let used_before = fs.used_bytes();
        let big: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();

        let case = watch.case(
            "disk full: declared 16 MiB upload on an 8 MiB disk",
            8 * MIB,
        );
        let r = upload(
            &addr,
            head(
                "POST",
                "/api/uploads",
                &[&format!("Content-Length: {}", big.len())],
            ),
            big.clone(),
        )
        .await;
        assert_eq!(r.status, 507, "{}", r.text());
        case.finish("507", 0).await;
        assert!(fs.files().is_empty(), "{:?}", fs.files());
        assert_eq!(fs.used_bytes(), used_before, "space given back");

        let case = watch.case("disk full: chunked 16 MiB upload on an 8 MiB disk", 8 * MIB);
        let mut body = Vec::new();
        for piece in big.chunks(256 << 10) {
            body.extend(chunk(piece));
        }
        body.extend_from_slice(b"0\r\n\r\n");
        let r = upload(
            &addr,
            head("POST", "/api/uploads", &["Transfer-Encoding: chunked"]),
            body,
        )
        .await;
        assert_eq!(r.status, 507, "{}", r.text());
        case.finish("507", 0).await;
        assert!(fs.files().is_empty(), "{:?}", fs.files());

        // What fits is stored whole.
        let case = watch.case("after the full disk: a 3 MiB upload", 8 * MIB);
        let small = big[..3 << 20].to_vec();
        let expected = hex::encode(Sha256::digest(&small));
        let r = upload(
            &addr,
            head(
                "POST",
                "/api/uploads",
                &[&format!("Content-Length: {}", small.len())],
            ),
            small,
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(json["sha256"], expected.as_str());
        case.finish("200, stored whole", 1).await;
    });
    drop(server);
    drop(fs);
}
