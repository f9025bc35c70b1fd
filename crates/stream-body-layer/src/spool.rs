//! [`SpooledBody`]: a request body kept in memory up to a threshold, then in a temporary file.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::{Pin, pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::StatusCode;
use http_body::Body;
use http_body_util::BodyExt;
use tempfile::TempPath;
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

use crate::body::{BodyError, BoxError};
use crate::metrics::SPILLED_TOTAL;

/// Default in-memory part of a [`SpooledBody`] used without the layer: 1 MiB.
pub const DEFAULT_SPOOL_MEMORY_THRESHOLD: u64 = 1024 * 1024;

/// Bytes written to the temporary file per blocking call.
const WRITE_BATCH: usize = 64 * 1024;

/// Where and when a [`SpooledBody`] goes to disk. Cheap to clone.
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
    pub fn memory_threshold(mut self, bytes: u64) -> Self {
        self.memory_threshold = bytes;
        self
    }

    /// Accept a tmpfs (or ramfs) directory. Off by default: files there are memory, charged to
    /// the container's memory limit, which is what spooling is meant to avoid.
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

/// Whether `dir` is on a tmpfs or ramfs, whose files live in memory.
pub fn is_memory_backed(dir: &Path) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
        // SAFETY: all-zero bytes are a valid `statfs` (plain integers).
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a valid NUL-terminated string and `st` a valid, writable `statfs`.
        if unsafe { libc::statfs(path.as_ptr(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // linux/magic.h; not every libc build exports it.
        const RAMFS_MAGIC: i64 = 0x8584_58f6;
        // f_type's integer type differs between libcs and architectures.
        #[allow(clippy::unnecessary_cast)]
        let kind = st.f_type as i64;
        #[allow(clippy::unnecessary_cast)]
        let tmpfs = libc::TMPFS_MAGIC as i64;
        Ok(kind == tmpfs || kind == RAMFS_MAGIC)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        Ok(false)
    }
}

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
        let full = e.kind() == io::ErrorKind::StorageFull
            || matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT));
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

/// A request body held in memory up to a threshold, and in a temporary file beyond it.
///
/// The file is created in the configured directory with the `tempfile` crate and removed when
/// the `SpooledBody` is dropped, when spooling fails (body error, disk error), and when the
/// future reading the body is dropped (client disconnect). [`persist`](Self::persist) keeps it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use http_body_util::Full;
/// use stream_body_layer::{SpoolConfig, SpooledBody};
/// use tokio::io::AsyncReadExt;
///
/// let dir = tempfile::tempdir()?;
/// let config = SpoolConfig::builder(dir.path())
///     .memory_threshold(4)
///     .allow_tmpfs(true) // in case the system temporary directory is one
///     .build()?;
/// let body = SpooledBody::from_body(Full::new(bytes::Bytes::from("hello, disk")), &config).await?;
/// assert!(body.is_spilled());
/// let mut text = String::new();
/// body.reader().await?.read_to_string(&mut text).await?;
/// assert_eq!(text, "hello, disk");
/// body.persist(dir.path().join("kept.txt")).await?;
/// assert_eq!(std::fs::read_to_string(dir.path().join("kept.txt"))?, "hello, disk");
/// # Ok(()) }
/// ```
pub struct SpooledBody {
    storage: Storage,
    len: u64,
}

enum Storage {
    Memory(Vec<Bytes>),
    File(TempPath),
}

impl fmt::Debug for SpooledBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("SpooledBody");
        d.field("len", &self.len);
        match &self.storage {
            Storage::Memory(_) => d.field("storage", &"memory"),
            Storage::File(path) => d.field("storage", &path.display()),
        };
        d.finish()
    }
}

impl SpooledBody {
    /// Reads `body` to its end: up to the config's memory threshold in memory, the rest (and the
    /// part in memory) in a temporary file.
    pub async fn from_body<B>(body: B, config: &SpoolConfig) -> Result<SpooledBody, SpoolError>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        Self::spool(body, Some(config), config.memory_threshold()).await
    }

    /// Keeps up to `threshold` bytes in memory, then spills to `config`'s directory (the system
    /// default when `None`, resolved only if a spill happens).
    pub(crate) async fn spool<B>(
        body: B,
        config: Option<&SpoolConfig>,
        threshold: u64,
    ) -> Result<SpooledBody, SpoolError>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let mut body = pin!(body);
        let mut memory: Vec<Bytes> = Vec::new();
        let mut spill: Option<Spill> = None;
        let mut len = 0u64;
        loop {
            // Matched at once so that no `B::Error` lives across the awaits below.
            let frame = match body.frame().await {
                Some(frame) => frame.map_err(|e| SpoolError::Body(e.into()))?,
                None => break,
            };
            let Ok(mut data) = frame.into_data() else {
                continue; // trailers: a spooled body keeps only the data
            };
            let data = data.copy_to_bytes(data.remaining());
            if data.is_empty() {
                continue;
            }
            len += data.len() as u64;
            match &mut spill {
                Some(spill) => spill.write(data).await?,
                None if len <= threshold => memory.push(data),
                None => {
                    let dir = match config {
                        Some(config) => config.dir().to_owned(),
                        None => SpoolConfig::system_default()?.dir().to_owned(),
                    };
                    let mut file = Spill::create(&dir).await?;
                    metrics::counter!(SPILLED_TOTAL).increment(1);
                    for earlier in memory.drain(..) {
                        file.write(earlier).await?;
                    }
                    file.write(data).await?;
                    spill = Some(file);
                }
            }
        }
        let storage = match spill {
            Some(spill) => Storage::File(spill.finish().await?),
            None => Storage::Memory(memory),
        };
        Ok(SpooledBody { storage, len })
    }

    /// Body length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the body went to a temporary file.
    pub fn is_spilled(&self) -> bool {
        matches!(self.storage, Storage::File(_))
    }

    /// The temporary file, if the body went to one.
    pub fn path(&self) -> Option<&Path> {
        match &self.storage {
            Storage::File(path) => Some(path),
            Storage::Memory(_) => None,
        }
    }

    /// A reader over the whole body from its start. Each call gives a new, independent reader;
    /// a reader stays valid after the `SpooledBody` is dropped.
    pub async fn reader(&self) -> io::Result<SpooledReader> {
        let kind = match &self.storage {
            Storage::Memory(chunks) => ReaderKind::Memory(chunks.iter().cloned().collect()),
            Storage::File(path) => {
                let file = tokio::fs::File::open(path).await?;
                ReaderKind::File(tokio::io::BufReader::with_capacity(64 * 1024, file))
            }
        };
        Ok(SpooledReader { kind })
    }

    /// Stores the body at `dest` (replacing a file there): a rename when the temporary file is
    /// on the same filesystem, a copy otherwise. On failure nothing is left behind: neither the
    /// temporary file nor a partial `dest`.
    pub async fn persist(self, dest: impl AsRef<Path>) -> Result<(), SpoolError> {
        let dest = dest.as_ref().to_owned();
        let job = move || -> io::Result<()> {
            match self.storage {
                Storage::Memory(chunks) => {
                    let written = std::fs::File::create(&dest).and_then(|mut file| {
                        chunks.iter().try_for_each(|chunk| file.write_all(chunk))
                    });
                    if written.is_err() {
                        let _ = std::fs::remove_file(&dest);
                    }
                    written
                }
                Storage::File(path) => match path.persist(&dest) {
                    Ok(()) => Ok(()),
                    Err(e) if e.error.raw_os_error() == Some(libc::EXDEV) => {
                        // Another filesystem: copy; `e.path` removes the temporary file as it
                        // drops.
                        let copied = std::fs::copy(&e.path, &dest).map(drop);
                        if copied.is_err() {
                            let _ = std::fs::remove_file(&dest);
                        }
                        copied
                    }
                    Err(e) => Err(e.error),
                },
            }
        };
        tokio::task::spawn_blocking(job)
            .await
            .map_err(io::Error::other)??;
        Ok(())
    }
}

/// Writes a spilled body into its temporary file.
///
/// Hand-written rather than `tokio::fs::File`: that copies every chunk into its own buffer and
/// makes one blocking call per write; here the `Bytes` themselves move to the blocking thread and
/// one call writes a batch of them.
struct Spill {
    file: Option<std::fs::File>,
    path: TempPath,
    pending: Vec<Bytes>,
    pending_len: usize,
}

impl Spill {
    async fn create(dir: &Path) -> Result<Spill, SpoolError> {
        let dir = dir.to_owned();
        let named = tokio::task::spawn_blocking(move || {
            tempfile::Builder::new().prefix(".spool-").tempfile_in(&dir)
        })
        .await
        .map_err(io::Error::other)??;
        let (file, path) = named.into_parts();
        Ok(Spill {
            file: Some(file),
            path,
            pending: Vec::new(),
            pending_len: 0,
        })
    }

    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        self.pending_len += data.len();
        self.pending.push(data);
        if self.pending_len >= WRITE_BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("spool file lost after an earlier error"))?;
        let batch = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        let file = tokio::task::spawn_blocking(move || {
            batch.iter().try_for_each(|chunk| file.write_all(chunk))?;
            Ok::<_, io::Error>(file)
        })
        .await
        .map_err(io::Error::other)??;
        self.file = Some(file);
        Ok(())
    }

    async fn finish(mut self) -> io::Result<TempPath> {
        self.flush().await?;
        Ok(self.path)
    }
}

/// Reads a [`SpooledBody`] from its start: [`AsyncRead`] and [`AsyncBufRead`].
pub struct SpooledReader {
    kind: ReaderKind,
}

enum ReaderKind {
    Memory(VecDeque<Bytes>),
    File(tokio::io::BufReader<tokio::fs::File>),
}

impl fmt::Debug for SpooledReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            ReaderKind::Memory(_) => "memory",
            ReaderKind::File(_) => "file",
        };
        f.debug_struct("SpooledReader")
            .field("kind", &kind)
            .finish()
    }
}

impl AsyncRead for SpooledReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().kind {
            ReaderKind::Memory(chunks) => {
                while let Some(front) = chunks.front_mut() {
                    if front.is_empty() {
                        chunks.pop_front();
                        continue;
                    }
                    let n = front.len().min(buf.remaining());
                    buf.put_slice(&front[..n]);
                    front.advance(n);
                    break;
                }
                Poll::Ready(Ok(()))
            }
            ReaderKind::File(file) => Pin::new(file).poll_read(cx, buf),
        }
    }
}

impl AsyncBufRead for SpooledReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        match &mut self.get_mut().kind {
            ReaderKind::Memory(chunks) => {
                while chunks.front().is_some_and(Bytes::is_empty) {
                    chunks.pop_front();
                }
                Poll::Ready(Ok(chunks.front().map_or(&[][..], |b| &b[..])))
            }
            ReaderKind::File(file) => Pin::new(file).poll_fill_buf(cx),
        }
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        match &mut self.get_mut().kind {
            ReaderKind::Memory(chunks) => {
                if let Some(front) = chunks.front_mut() {
                    front.advance(amt.min(front.len()));
                }
            }
            ReaderKind::File(file) => Pin::new(file).consume(amt),
        }
    }
}

#[cfg(test)]
mod tests {
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
        let big =
            SpooledBody::from_body(StreamBody::new(futures_util::stream::iter(frames)), &config)
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
        let err =
            SpooledBody::from_body(StreamBody::new(futures_util::stream::iter(frames)), &config)
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
        let body =
            SpooledBody::from_body(StreamBody::new(futures_util::stream::iter(frames)), &config)
                .await
                .unwrap();
        let mut lines = body.reader().await.unwrap().lines();
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "line one");
        assert_eq!(lines.next_line().await.unwrap().unwrap(), "line two");
        assert!(lines.next_line().await.unwrap().is_none());
    }
}
