//! [`SpoolError`]: why a body could not be spooled, persisted or read back.

use std::io;
use std::path::PathBuf;

use http::StatusCode;
use tower_memory_probe::BoxError;

use crate::error::BodyError;

/// Why a body could not be spooled, persisted or read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// The spool directory is memory-backed and tmpfs was not allowed.
    #[error(
        "spool directory {} is a tmpfs, whose files count as memory; choose a disk directory or allow tmpfs",
        dir.display()
    )]
    Tmpfs {
        /// The refused directory.
        dir: PathBuf,
    },
    /// The spool directory is missing or unusable.
    #[error("spool directory {}: {source}", dir.display())]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The request body failed while it was being read.
    #[error("reading the request body failed: {0}")]
    Body(#[source] BoxError),
    /// Writing, reading or persisting the temporary file failed.
    #[error("spool file: {0}")]
    Io(#[source] io::Error),
    /// The spool directory's filesystem is full (or the quota is used up): the body could not
    /// be written or kept. The temporary file is gone.
    #[error("spool directory is full: {0}")]
    StorageFull(#[source] io::Error),
}

/// `ENOSPC` and `EDQUOT` become [`SpoolError::StorageFull`], anything else [`SpoolError::Io`].
impl From<io::Error> for SpoolError {
    fn from(e: io::Error) -> Self {
        // std maps ENOSPC to `StorageFull` and EDQUOT to `QuotaExceeded`.
        let full = matches!(
            e.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        );
        if full {
            SpoolError::StorageFull(e)
        } else {
            SpoolError::Io(e)
        }
    }
}

impl SpoolError {
    /// The status a handler should answer with: the body's own status (413, 408, 400) for body
    /// errors, 507 Insufficient Storage when the disk is full, 500 for any other trouble with
    /// the server's directory or disk.
    pub fn status(&self) -> StatusCode {
        match self {
            SpoolError::Body(e) => {
                let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&**e);
                while let Some(err) = source {
                    if let Some(body) = err.downcast_ref::<BodyError>() {
                        return body.status();
                    }
                    source = err.source();
                }
                StatusCode::BAD_REQUEST
            }
            SpoolError::StorageFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}
