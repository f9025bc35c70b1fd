//! Registering each kind of source with the kernel: v1 eventfds through `cgroup.event_control`,
//! v2 inotify on `memory.events`, PSI triggers on `memory.pressure`.

// Without poll(2) and descriptors (Windows) nothing here runs: subscribing fails first.
#![cfg_attr(not(unix), allow(dead_code, unused_imports))]

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
#[cfg(unix)]
use std::os::fd::AsRawFd;
#[cfg(target_os = "linux")]
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;

use super::deliver::Kind;
use super::{PSI_TRIGGER, SkipReason};

/// A non-blocking, close-on-exec eventfd.
#[cfg(target_os = "linux")]
pub(super) fn eventfd() -> io::Result<File> {
    // SAFETY: eventfd takes no pointers; the result is checked before it is used.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor just returned by the kernel that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

pub(super) fn open(path: &Path, options: &OpenOptions) -> Result<File, SkipReason> {
    options.open(path).map_err(|source| SkipReason::Open {
        path: path.to_path_buf(),
        source,
    })
}

/// Without file descriptors to hand the kernel (Windows) there is no v1 registration.
#[cfg(not(unix))]
pub(super) fn register_v1(
    _cgroup: &Path,
    _target: &Path,
    _threshold: Option<u64>,
) -> Result<Kind, SkipReason> {
    Err(SkipReason::Os {
        call: "eventfd",
        source: io::Error::from(io::ErrorKind::Unsupported),
    })
}

/// v1: an eventfd registered against `target` (with a threshold for `memory.usage_in_bytes`,
/// without one for `memory.oom_control`) by writing `"<event_fd> <target_fd>[ <threshold>]"` to
/// `cgroup.event_control`.
#[cfg(unix)]
pub(super) fn register_v1(
    cgroup: &Path,
    target: &Path,
    threshold: Option<u64>,
) -> Result<Kind, SkipReason> {
    let target_file = open(target, OpenOptions::new().read(true))?;
    let control_path = cgroup.join("cgroup.event_control");
    let mut control = open(&control_path, OpenOptions::new().append(true))?;
    let event = eventfd().map_err(|source| SkipReason::Os {
        call: "eventfd",
        source,
    })?;
    let mut line = format!("{} {}", event.as_raw_fd(), target_file.as_raw_fd());
    if let Some(bytes) = threshold {
        line.push_str(&format!(" {bytes}"));
    }
    // The kernel strips the newline; it keeps the lines apart in a fixture's regular file.
    line.push('\n');
    // One write: the kernel parses each write(2) to the control file as one registration.
    control
        .write_all(line.as_bytes())
        .map_err(|source| SkipReason::Register {
            path: control_path,
            line: line.trim_end().to_string(),
            source,
        })?;
    Ok(Kind::EventFd {
        event,
        _target: target_file,
    })
}

/// Elsewhere there are no eventfds (nor cgroups to register them with): subscribing fails
/// cleanly with `Unsupported`.
#[cfg(not(target_os = "linux"))]
pub(super) fn eventfd() -> io::Result<File> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// Elsewhere there is no inotify (nor cgroup v2): the source is skipped as unsupported.
#[cfg(not(target_os = "linux"))]
pub(super) fn watch_modified(_path: &Path) -> Result<Kind, SkipReason> {
    Err(SkipReason::Os {
        call: "inotify_init1",
        source: io::Error::from(io::ErrorKind::Unsupported),
    })
}

/// v2: inotify `IN_MODIFY` on `path` (`memory.events`).
#[cfg(target_os = "linux")]
pub(super) fn watch_modified(path: &Path) -> Result<Kind, SkipReason> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|e| SkipReason::Open {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, e),
    })?;
    // SAFETY: inotify_init1 takes no pointers; the result is checked before it is used.
    let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if raw < 0 {
        return Err(SkipReason::Os {
            call: "inotify_init1",
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: `raw` is a descriptor just returned by the kernel that nothing else owns.
    let fd = File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    // SAFETY: `fd` is an open inotify descriptor and `c_path` a NUL-terminated string that
    // outlives the call.
    let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c_path.as_ptr(), libc::IN_MODIFY) };
    if wd < 0 {
        return Err(SkipReason::Open {
            path: path.to_path_buf(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(Kind::Inotify { fd, wd })
}

/// v2: the [`PSI_TRIGGER`] written to `path` (`memory.pressure`); the trigger lives as long as
/// the descriptor.
pub(super) fn psi_trigger(path: &Path) -> Result<Kind, SkipReason> {
    let mut file = open(path, OpenOptions::new().read(true).write(true))?;
    file.write_all(PSI_TRIGGER.as_bytes())
        .map_err(|source| SkipReason::Register {
            path: path.to_path_buf(),
            line: PSI_TRIGGER.to_string(),
            source,
        })?;
    Ok(Kind::Psi { file })
}
