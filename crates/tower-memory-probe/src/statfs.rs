//! What the kernel says about the filesystem a path lives on (`statfs(2)`): its kind (a tmpfs or
//! ramfs keeps its files in memory) and its space.

use std::path::{Path, PathBuf};

use crate::error::ProbeError;

/// `linux/magic.h`; not every libc build exports these.
const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// The filesystem a path lives on, as `statfs(2)` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FilesystemSpace {
    /// The filesystem's magic number (`f_type`), e.g. `0x01021994` for a tmpfs.
    pub kind: i64,
    /// Size of the filesystem in bytes.
    pub total_bytes: u64,
    /// Free bytes, including those reserved for the superuser.
    pub free_bytes: u64,
    /// Free bytes an unprivileged process may use.
    pub available_bytes: u64,
}

impl FilesystemSpace {
    /// Whether the filesystem keeps its files in memory (a tmpfs or a ramfs): what is written
    /// there counts against the memory limit of the container that wrote it.
    pub fn is_memory_backed(&self) -> bool {
        self.kind == TMPFS_MAGIC || self.kind == RAMFS_MAGIC
    }
}

/// `statfs(2)` on `path`. On other systems than Linux: [`ProbeError::Os`] with
/// [`std::io::ErrorKind::Unsupported`].
///
/// ```
/// let space = tower_memory_probe::filesystem_space(&std::env::temp_dir()).unwrap();
/// assert!(space.total_bytes >= space.free_bytes);
/// ```
pub fn filesystem_space(path: &Path) -> Result<FilesystemSpace, ProbeError> {
    let io_error = |source| ProbeError::Io {
        path: PathBuf::from(path),
        source,
    };
    imp::statfs(path).map_err(io_error)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::os::unix::ffi::OsStrExt;
    use std::path::Path;

    use super::FilesystemSpace;

    pub(super) fn statfs(path: &Path) -> io::Result<FilesystemSpace> {
        let path = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
        // SAFETY: all-zero bytes are a valid `statfs` (plain integers).
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a valid NUL-terminated string and `st` a valid, writable `statfs`.
        if unsafe { libc::statfs(path.as_ptr(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // The fields' integer types differ between libcs and architectures.
        #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
        let (kind, block, blocks, free, available) = (
            st.f_type as i64,
            st.f_bsize as u64,
            st.f_blocks as u64,
            st.f_bfree as u64,
            st.f_bavail as u64,
        );
        Ok(FilesystemSpace {
            kind,
            total_bytes: blocks.saturating_mul(block),
            free_bytes: free.saturating_mul(block),
            available_bytes: available.saturating_mul(block),
        })
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::io;
    use std::path::Path;

    use super::FilesystemSpace;

    pub(super) fn statfs(_path: &Path) -> io::Result<FilesystemSpace> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_temp_dir_and_fails_on_a_missing_path() {
        let space = filesystem_space(&std::env::temp_dir()).unwrap();
        assert!(space.total_bytes > 0 && space.total_bytes >= space.free_bytes);
        let err = filesystem_space(Path::new("/no/such/directory/here")).unwrap_err();
        assert!(matches!(err, ProbeError::Io { .. }), "{err}");
    }

    #[test]
    fn dev_shm_is_memory_backed_where_it_is_a_tmpfs() {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            let space = filesystem_space(shm).unwrap();
            assert_eq!(
                space.is_memory_backed(),
                space.kind == TMPFS_MAGIC || space.kind == RAMFS_MAGIC
            );
        }
    }
}
