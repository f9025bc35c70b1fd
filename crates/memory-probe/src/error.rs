//! The crate's error type.

use std::path::PathBuf;

/// Why a memory reading failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// A file under `/proc` or the cgroup tree could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file was read but a value in it is not what the kernel writes there.
    #[error("cannot parse {what} in {path}: {value:?}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Which value.
        what: &'static str,
        /// The text found.
        value: String,
    },
    /// A field the reader needs is absent from a file that exists.
    #[error("{what} is missing from {path}")]
    Missing {
        /// The file.
        path: PathBuf,
        /// Which value.
        what: &'static str,
    },
    /// The allocator refused a control call.
    #[error("allocator control failed: {0}")]
    Allocator(String),
}

pub(crate) fn read_to_string(path: &std::path::Path) -> Result<String, ProbeError> {
    std::fs::read_to_string(path).map_err(|source| ProbeError::Io {
        path: path.to_path_buf(),
        source,
    })
}
