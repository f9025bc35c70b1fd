//! Spooling: memory and file, failures, persist, tmpfs, read-back.

use std::io;
use std::path::Path;

use bytes::Bytes;
use http::StatusCode;

use super::*;
use http_body_util::{Full, StreamBody};
use tokio::io::AsyncReadExt;

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[tokio::test]
async fn small_bodies_stay_in_memory_large_ones_spill() {
    let dir = tempfile::tempdir().unwrap();
    let config = SpoolConfig::builder(dir.path())
        .memory_threshold(1000)
        .allow_tmpfs(true) // the mechanics, not the policy: any temp dir will do
        .build()
        .unwrap();
    let small = SpooledBody::from_body(Full::new(Bytes::from(vec![7u8; 1000])), &config)
        .await
        .unwrap();
    assert!(!small.is_spilled());
    assert_eq!(small.len(), 1000);
    assert_eq!(files_in(dir.path()), 0);

    // Many frames, past the threshold and past one write batch.
    let frames: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = (0..100u8)
        .map(|i| Ok(http_body::Frame::data(Bytes::from(vec![i; 10_000]))))
        .collect();
    let big = SpooledBody::from_body(StreamBody::new(futures_util::stream::iter(frames)), &config)
        .await
        .unwrap();
    assert!(big.is_spilled());
    assert_eq!(big.len(), 1_000_000);
    let path = big.path().unwrap().to_owned();
    assert!(path.starts_with(dir.path()));
    let mut all = Vec::new();
    big.reader()
        .await
        .unwrap()
        .read_to_end(&mut all)
        .await
        .unwrap();
    assert_eq!(all.len(), 1_000_000);
    assert!(
        all.chunks(10_000)
            .enumerate()
            .all(|(i, c)| c.iter().all(|&b| b == i as u8))
    );
    drop(big);
    assert!(!path.exists(), "temporary file removed on drop");
    assert_eq!(files_in(dir.path()), 0);
}

#[tokio::test]
async fn a_failing_body_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = SpoolConfig::builder(dir.path())
        .memory_threshold(0)
        .allow_tmpfs(true)
        .build()
        .unwrap();
    let frames: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = vec![
        Ok(http_body::Frame::data(Bytes::from(vec![1u8; 300_000]))),
        Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")),
    ];
    let err = SpooledBody::from_body(StreamBody::new(futures_util::stream::iter(frames)), &config)
        .await
        .unwrap_err();
    assert!(matches!(err, SpoolError::Body(_)));
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    assert_eq!(files_in(dir.path()), 0);
}

#[tokio::test]
async fn persist_renames_or_writes_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = SpoolConfig::builder(dir.path())
        .memory_threshold(10)
        .allow_tmpfs(true)
        .build()
        .unwrap();
    let spilled = SpooledBody::from_body(Full::new(Bytes::from("0123456789abc")), &config)
        .await
        .unwrap();
    let temp = spilled.path().unwrap().to_owned();
    let dest = dir.path().join("kept");
    spilled.persist(&dest).await.unwrap();
    assert!(!temp.exists());
    assert_eq!(std::fs::read(&dest).unwrap(), b"0123456789abc");

    let in_memory = SpooledBody::from_body(Full::new(Bytes::from("small")), &config)
        .await
        .unwrap();
    let dest2 = dir.path().join("kept2");
    in_memory.persist(&dest2).await.unwrap();
    assert_eq!(std::fs::read(&dest2).unwrap(), b"small");

    // Into a missing directory: an error, and the temporary file is gone all the same.
    let spilled = SpooledBody::from_body(Full::new(Bytes::from("0123456789abc")), &config)
        .await
        .unwrap();
    let temp = spilled.path().unwrap().to_owned();
    let err = spilled
        .persist(dir.path().join("missing/kept"))
        .await
        .unwrap_err();
    assert!(matches!(err, SpoolError::Io(_)));
    assert!(!temp.exists());
    assert_eq!(files_in(dir.path()), 2);
}

#[tokio::test]
async fn tmpfs_is_refused_unless_allowed_and_persist_crosses_filesystems() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() || !is_memory_backed(shm).unwrap() {
        eprintln!("no tmpfs at /dev/shm on this machine; the tmpfs check is not exercised");
        return;
    }
    let err = SpoolConfig::new(shm).unwrap_err();
    assert!(matches!(err, SpoolError::Tmpfs { .. }), "{err}");
    assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);

    let tmpfs_dir = tempfile::tempdir_in(shm).unwrap();
    let config = SpoolConfig::builder(tmpfs_dir.path())
        .memory_threshold(0)
        .allow_tmpfs(true)
        .build()
        .unwrap();
    let body = SpooledBody::from_body(Full::new(Bytes::from("across")), &config)
        .await
        .unwrap();
    let temp = body.path().unwrap().to_owned();
    // Onto a disk filesystem: rename fails with EXDEV and persist copies.
    let disk = tempfile::tempdir().unwrap();
    if is_memory_backed(disk.path()).unwrap() {
        eprintln!(
            "the temporary directory is a tmpfs too; the cross-filesystem copy is not exercised"
        );
        return;
    }
    body.persist(disk.path().join("copied")).await.unwrap();
    assert_eq!(
        std::fs::read(disk.path().join("copied")).unwrap(),
        b"across"
    );
    assert!(!temp.exists());
}

#[test]
fn a_full_disk_is_507_other_io_errors_500() {
    for errno in [libc::ENOSPC, libc::EDQUOT] {
        let err = SpoolError::from(io::Error::from_raw_os_error(errno));
        assert!(matches!(err, SpoolError::StorageFull(_)), "{err}");
        assert_eq!(err.status(), StatusCode::INSUFFICIENT_STORAGE);
    }
    let err = SpoolError::from(io::Error::from_raw_os_error(libc::EIO));
    assert!(matches!(err, SpoolError::Io(_)), "{err}");
    assert_eq!(err.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[test]
fn missing_directories_and_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = SpoolConfig::new(dir.path().join("nope")).unwrap_err();
    assert!(matches!(err, SpoolError::Dir { .. }));
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(matches!(
        SpoolConfig::new(&file).unwrap_err(),
        SpoolError::Dir { .. }
    ));
}

#[tokio::test]
async fn buf_read_over_memory() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let config = SpoolConfig::builder(dir.path())
        .allow_tmpfs(true)
        .build()
        .unwrap();
    let frames: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = vec![
        Ok(http_body::Frame::data(Bytes::from("line one\nline "))),
        Ok(http_body::Frame::data(Bytes::from("two\n"))),
    ];
    let body = SpooledBody::from_body(StreamBody::new(futures_util::stream::iter(frames)), &config)
        .await
        .unwrap();
    let mut lines = body.reader().await.unwrap().lines();
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "line one");
    assert_eq!(lines.next_line().await.unwrap().unwrap(), "line two");
    assert!(lines.next_line().await.unwrap().is_none());
}
