//! A small filesystem for disk-full tests: a tmpfs of a few MiB mounted on a fresh directory under
//! the target dir, unmounted and removed on drop (also when the test panics). Mounting needs
//! root (CAP_SYS_ADMIN); where it is refused the test says why and skips, except where
//! [`must_not_skip`](test_support::must_not_skip) forbids it (root, CI).
#![allow(dead_code)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use test_support::must_not_skip;

/// A mounted tmpfs; unmounted and its directory removed on drop.
#[derive(Debug)]
pub(crate) struct SmallFs {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl SmallFs {
    /// Mounts a tmpfs of `bytes` on a new directory, or says why it could not.
    pub(crate) fn mount(bytes: u64) -> Result<SmallFs, String> {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .map_err(|e| format!("mount point: {e}"))?;
        let target = CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        let options = CString::new(format!("size={bytes},mode=0700")).unwrap();
        // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(format!(
                "mount -t tmpfs on {}: {}",
                dir.path().display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(SmallFs { dir, mounted: true })
    }

    /// [`mount`](Self::mount), or `None` after printing why the test `test` does not run; panics
    /// instead when the run may not skip.
    pub(crate) fn mount_or_skip(test: &str, bytes: u64) -> Option<SmallFs> {
        match SmallFs::mount(bytes) {
            Ok(fs) => Some(fs),
            Err(why) if must_not_skip() => {
                panic!("{test}: no small filesystem, and this run may not skip (root or CI): {why}")
            }
            Err(why) => {
                eprintln!("SKIPPED {test}: {why} (runs as root, and in CI)");
                None
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes in use on the filesystem.
    pub(crate) fn used_bytes(&self) -> u64 {
        let path = CString::new(self.dir.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: all-zero bytes are a valid `statvfs`.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is NUL-terminated and `st` writable.
        let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
        assert_eq!(rc, 0, "statvfs: {}", std::io::Error::last_os_error());
        (st.f_blocks - st.f_bfree) * st.f_frsize
    }

    /// Files on it.
    pub(crate) fn files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path())
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default()
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        let target = CString::new(self.dir.path().as_os_str().as_bytes()).unwrap();
        // SAFETY: `target` is a valid NUL-terminated path.
        let rc = unsafe { libc::umount2(target.as_ptr(), 0) };
        if rc != 0 {
            // Still busy (a process that has not exited yet): detach it now; the kernel frees
            // it when the last user is gone.
            // SAFETY: as above.
            let lazy = unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
            if lazy != 0 {
                eprintln!(
                    "cannot unmount {}: {}",
                    self.dir.path().display(),
                    std::io::Error::last_os_error()
                );
            }
        }
        self.mounted = false;
        // The TempDir removes the (now empty) mount point.
    }
}
