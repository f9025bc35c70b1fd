//! The crate's error type.

use std::path::PathBuf;

use crate::events::Skipped;

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
    /// The process is in no memory cgroup that `/proc/self/cgroup` and `/proc/self/mountinfo`
    /// under this root lead to.
    #[error("no memory cgroup found from {root}/proc/self/cgroup and mountinfo")]
    NoMemoryCgroup {
        /// The root the cgroup was resolved under.
        root: PathBuf,
    },
    /// A memory cgroup was found, but not one of its event sources could be registered.
    #[error(
        "no memory event source could be registered in {cgroup}: {}",
        list(skipped)
    )]
    NoMemoryEvents {
        /// The cgroup directory.
        cgroup: PathBuf,
        /// Every source tried, with the reason it failed.
        skipped: Vec<Skipped>,
    },
    /// A system call failed that does not belong to one file.
    #[error("{call} failed: {source}")]
    Os {
        /// What was called.
        call: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn list(skipped: &[Skipped]) -> String {
    if skipped.is_empty() {
        return "no source applies".to_string();
    }
    skipped
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

pub(crate) fn read_to_string(path: &std::path::Path) -> Result<String, ProbeError> {
    std::fs::read_to_string(path).map_err(|source| ProbeError::Io {
        path: path.to_path_buf(),
        source,
    })
}
