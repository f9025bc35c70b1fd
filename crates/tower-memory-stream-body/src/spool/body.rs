//! [`SpooledBody`]: a request body kept in memory up to a threshold, then in a temporary file.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;
use std::pin::pin;

use bytes::{Buf, Bytes};
use http_body::Body;
use http_body_util::BodyExt;
use tempfile::TempPath;
use tower_memory_probe::BoxError;

use super::config::SpoolConfig;
use super::error::SpoolError;
use super::reader::{ReaderKind, SpooledReader};
use crate::metrics::SPILLED_TOTAL;

/// Bytes written to the temporary file per blocking call.
const WRITE_BATCH: usize = 64 * 1024;

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
/// use tower_memory_stream_body::{SpoolConfig, SpooledBody};
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
                    metrics::counter!(SPILLED_TOTAL.get()).increment(1);
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
                    Err(e) if e.error.kind() == io::ErrorKind::CrossesDevices => {
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
