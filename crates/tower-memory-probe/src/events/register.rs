//! Registering each kind of source with the kernel: v1 eventfds through `cgroup.event_control`,
//! v2 inotify on `memory.events`, PSI triggers on `memory.pressure`.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::deliver::Kind;
use super::{PSI_TRIGGER, SkipReason};

/// A non-blocking, close-on-exec eventfd.
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

/// v1: an eventfd registered against `target` (with a threshold for `memory.usage_in_bytes`,
/// without one for `memory.oom_control`) by writing `"<event_fd> <target_fd>[ <threshold>]"` to
/// `cgroup.event_control`.
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

/// v2: inotify `IN_MODIFY` on `path` (`memory.events`).
pub(super) fn watch_modified(path: &Path) -> Result<Kind, SkipReason> {
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
