//! jemalloc heap profiles in pprof format (feature `heap-profile`).
//!
//! jemalloc writes its profile to a file (`prof.dump`); the dump goes into a profile directory
//! of the program's choosing (never implicitly the temp dir, which is often read-only or a tmpfs in
//! a container), is parsed with `pprof_util` against the process's mappings (`mappings`) and
//! encoded as gzipped pprof protobuf, then removed. Files this module writes are created with
//! mode 0600: a profile shows the program's call stacks and allocation sizes.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tower_memory_probe::{AllocatorKind, HeapProfiling, heap_profiling};

/// Why no heap profile could be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeapProfileError {
    /// jemalloc is not the global allocator, so its profiler sees nothing.
    #[error("heap profiles need jemalloc as the global allocator; the heap is served by {0}")]
    NotJemalloc(AllocatorKind),
    /// jemalloc runs without `prof:true`.
    #[error(
        "jemalloc heap profiling is off: start the process with _RJEM_MALLOC_CONF=prof:true (or export _rjem_malloc_conf)"
    )]
    NotEnabled,
    /// Profiling is compiled in and enabled but not active (`prof.active` is false).
    #[error("jemalloc heap profiling is enabled but not active (prof.active=false)")]
    NotActive,
    /// The profile directory cannot take the dump.
    #[error(
        "heap profile directory {dir} is not writable ({source}); set HEAP_PROFILE_DIR to a writable directory"
    )]
    ProfileDir {
        /// The directory.
        dir: PathBuf,
        /// What the file system said.
        #[source]
        source: std::io::Error,
    },
    /// The dump or its conversion failed.
    #[error("heap profile dump failed: {0}")]
    Dump(String),
    /// The profile could not be written.
    #[error("cannot write the heap profile: {0}")]
    Io(#[from] std::io::Error),
}

impl HeapProfileError {
    /// Whether the error means profiling is unavailable (HTTP 501) rather than failed (500).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            HeapProfileError::NotJemalloc(_)
                | HeapProfileError::NotEnabled
                | HeapProfileError::NotActive
        )
    }
}

/// Whether a heap profile can be taken now: jemalloc is the global allocator, started with
/// `prof:true`, and `prof.active` is set.
pub fn heap_profiling_status() -> Result<(), HeapProfileError> {
    match heap_profiling() {
        HeapProfiling::Active => Ok(()),
        HeapProfiling::NotJemalloc(kind) => Err(HeapProfileError::NotJemalloc(kind)),
        HeapProfiling::NotEnabled => Err(HeapProfileError::NotEnabled),
        HeapProfiling::NotActive => Err(HeapProfileError::NotActive),
    }
}

/// Checks that `dir` exists and takes a new file (created with mode 0600 and removed again): what
/// a dump needs. Call it at start-up, so a read-only directory is an error then, not a 500 when
/// an operator needs a profile.
pub fn check_profile_dir(dir: impl AsRef<Path>) -> Result<(), HeapProfileError> {
    let dir = dir.as_ref();
    let probe = DumpFile::create(dir)?;
    drop(probe);
    Ok(())
}

/// Dumps the heap profile through a file in `dir` and returns it as a gzipped pprof protobuf
/// (`go tool pprof` reads it). The dump file is mode 0600 and removed before this returns.
///
/// Blocking (a file dump and a parse): call it from a blocking thread, never on an async task.
pub fn heap_profile_in(dir: impl AsRef<Path>) -> Result<Vec<u8>, HeapProfileError> {
    heap_profiling_status()?;
    // One dump at a time: each is a walk of every sampled allocation; concurrent requests wait.
    static DUMP: Mutex<()> = Mutex::new(());
    let _one = DUMP.lock().unwrap_or_else(|e| e.into_inner());
    let dump = DumpFile::create(dir.as_ref())?;
    tower_memory_probe::dump_heap_profile(&dump.path)
        .map_err(|e| HeapProfileError::Dump(e.to_string()))?;
    let file = File::open(&dump.path)?;
    let profile = pprof_util::parse_jeheap(BufReader::new(file), mappings::MAPPINGS.as_deref())
        .map_err(|e| HeapProfileError::Dump(format!("{e:#}")))?;
    Ok(profile.to_pprof(("inuse_space", "bytes"), ("space", "bytes"), None))
}

/// [`heap_profile_in`] the system's temporary directory. Prefer [`heap_profile_in`] with a
/// directory known to be writable (a container's temp dir often is not).
pub fn heap_profile() -> Result<Vec<u8>, HeapProfileError> {
    heap_profile_in(std::env::temp_dir())
}

/// Writes the heap profile (gzipped pprof) to `path` with mode 0600 and returns its size. The dump
/// goes through a file in `path`'s directory, and the profile is written under a temporary name
/// and renamed into place, so `path` is never a partial profile. Blocking, like
/// [`heap_profile_in`].
pub fn write_heap_profile(path: impl AsRef<Path>) -> Result<u64, HeapProfileError> {
    let path = path.as_ref();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let profile = heap_profile_in(&dir)?;
    let mut staged = DumpFile::create(&dir)?;
    staged.file.write_all(&profile)?;
    staged.file.sync_all()?;
    std::fs::rename(&staged.path, path)?;
    staged.renamed = true;
    Ok(profile.len() as u64)
}

/// A new file in a directory, mode 0600, removed on drop unless renamed.
struct DumpFile {
    path: PathBuf,
    file: File,
    renamed: bool,
}

impl DumpFile {
    fn create(dir: &Path) -> Result<DumpFile, HeapProfileError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            ".heap-profile-{}-{}.tmp",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| HeapProfileError::ProfileDir {
                dir: dir.to_path_buf(),
                source,
            })?;
        Ok(DumpFile {
            path,
            file,
            renamed: false,
        })
    }
}

impl Drop for DumpFile {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A bearer token kept only as its SHA-256 digest, compared in constant time.
///
/// Hashing first makes the comparison independent of the presented token's length too.
#[derive(Clone)]
pub(crate) struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub(crate) fn new(token: &str) -> Self {
        Self(digest(token.as_bytes()))
    }

    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(digest(presented).ct_eq(&self.0))
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).into()
}
