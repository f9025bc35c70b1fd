//! [`SpoolConfig`]: where and when a spooled body goes to disk.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::error::SpoolError;

/// Default in-memory part of a [`SpooledBody`](crate::SpooledBody) used without the layer: 1 MiB.
pub const DEFAULT_SPOOL_MEMORY_THRESHOLD: u64 = 1024 * 1024;

/// Where and when a [`SpooledBody`](crate::SpooledBody) goes to disk. Cheap to clone.
#[derive(Clone)]
pub struct SpoolConfig {
    inner: Arc<SpoolInner>,
}

struct SpoolInner {
    dir: PathBuf,
    memory_threshold: u64,
    allow_tmpfs: bool,
}

impl fmt::Debug for SpoolConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpoolConfig")
            .field("dir", &self.inner.dir)
            .field("memory_threshold", &self.inner.memory_threshold)
            .field("allow_tmpfs", &self.inner.allow_tmpfs)
            .finish()
    }
}

/// Builder of a [`SpoolConfig`].
#[derive(Debug, Clone)]
pub struct SpoolConfigBuilder {
    dir: PathBuf,
    memory_threshold: u64,
    allow_tmpfs: bool,
}

impl SpoolConfig {
    /// Spools into `dir` with the defaults (1 MiB in memory, tmpfs refused).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, SpoolError> {
        Self::builder(dir).build()
    }

    /// A builder spooling into `dir`.
    pub fn builder(dir: impl Into<PathBuf>) -> SpoolConfigBuilder {
        SpoolConfigBuilder {
            dir: dir.into(),
            memory_threshold: DEFAULT_SPOOL_MEMORY_THRESHOLD,
            allow_tmpfs: false,
        }
    }

    /// The directory temporary files go to.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Bytes kept in memory before the body continues into a file.
    pub fn memory_threshold(&self) -> u64 {
        self.inner.memory_threshold
    }

    /// The system temporary directory with the defaults, checked once and then reused. The
    /// extractor falls back to it when the layer has no [`SpoolConfig`].
    pub fn system_default() -> Result<SpoolConfig, SpoolError> {
        static DEFAULT: OnceLock<SpoolConfig> = OnceLock::new();
        if let Some(config) = DEFAULT.get() {
            return Ok(config.clone());
        }
        let config = SpoolConfig::new(std::env::temp_dir())?;
        Ok(DEFAULT.get_or_init(|| config).clone())
    }
}

impl SpoolConfigBuilder {
    /// Bytes kept in memory before continuing into a file (default 1 MiB; 0: always a file).
    /// Behind [`StreamBodyLayer`](crate::StreamBodyLayer), the extractor ignores it: a buffered
    /// body stays in memory where the layer put it, a streaming one goes straight to disk.
    #[must_use]
    pub fn memory_threshold(mut self, bytes: u64) -> Self {
        self.memory_threshold = bytes;
        self
    }

    /// Accept a tmpfs (or ramfs) directory. Off by default: files there are memory, charged to
    /// the container's memory limit, which is what spooling is meant to avoid.
    #[must_use]
    pub fn allow_tmpfs(mut self, allow: bool) -> Self {
        self.allow_tmpfs = allow;
        self
    }

    /// Checks the directory (it exists, it is a directory, it is not memory-backed unless
    /// allowed) and builds the configuration.
    pub fn build(self) -> Result<SpoolConfig, SpoolError> {
        let dir_error = |source| SpoolError::Dir {
            dir: self.dir.clone(),
            source,
        };
        let meta = std::fs::metadata(&self.dir).map_err(dir_error)?;
        if !meta.is_dir() {
            return Err(dir_error(io::Error::new(
                io::ErrorKind::NotADirectory,
                "not a directory",
            )));
        }
        if !self.allow_tmpfs && is_memory_backed(&self.dir).map_err(dir_error)? {
            return Err(SpoolError::Tmpfs { dir: self.dir });
        }
        Ok(SpoolConfig {
            inner: Arc::new(SpoolInner {
                dir: self.dir,
                memory_threshold: self.memory_threshold,
                allow_tmpfs: self.allow_tmpfs,
            }),
        })
    }
}

/// Whether `dir` is on a tmpfs or ramfs, whose files live in memory (`false` on systems other
/// than Linux).
pub fn is_memory_backed(dir: &Path) -> io::Result<bool> {
    match tower_memory_probe::filesystem_space(dir) {
        Ok(space) => Ok(space.is_memory_backed()),
        Err(tower_memory_probe::ProbeError::Io { source, .. })
            if source.kind() == io::ErrorKind::Unsupported =>
        {
            Ok(false)
        }
        Err(tower_memory_probe::ProbeError::Io { source, .. }) => Err(source),
        Err(other) => Err(io::Error::other(other)),
    }
}
