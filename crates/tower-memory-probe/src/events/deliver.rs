//! The delivery thread: waits in `poll(2)` on every registered source and hands what arrives to
//! the waiters of [`MemoryEvents`](super::MemoryEvents).

// Without poll(2) and descriptors (Windows) nothing here runs: subscribing fails first.
#![cfg_attr(not(unix), allow(dead_code, unused_imports))]

use std::fs::File;
use std::io::{self, Read};
#[cfg(unix)]
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

use super::{EventSource, MemoryEvent};

#[cfg(target_os = "linux")]
use libc::{IN_IGNORED, IN_MODIFY};
// Linux's inotify mask bits; elsewhere no inotify source is ever registered, these only keep the
// code shared.
#[cfg(not(target_os = "linux"))]
const IN_MODIFY: u32 = 0x2;
#[cfg(not(target_os = "linux"))]
const IN_IGNORED: u32 = 0x8000;

/// What the delivery thread and the waiters share.
pub(super) struct Shared {
    /// At most one entry per source: new notifications add to its count.
    pub(super) pending: Mutex<Vec<MemoryEvent>>,
    pub(super) notify: Notify,
    /// Every source has gone away.
    pub(super) closed: AtomicBool,
}

impl Shared {
    pub(super) fn push(&self, source: EventSource, count: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        match pending.iter_mut().find(|e| e.source == source) {
            Some(event) => event.count = event.count.saturating_add(count),
            None => pending.push(MemoryEvent { source, count }),
        }
        drop(pending);
        self.notify.notify_one();
    }

    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// A registered source and the descriptors that keep it registered.
pub(super) struct Watch {
    pub(super) source: EventSource,
    pub(super) kind: Kind,
}

pub(super) enum Kind {
    /// A v1 eventfd; `_target` is the file it was registered against (`memory.usage_in_bytes`
    /// or `memory.oom_control`). The kernel does not need it after registration, but keeping it
    /// lets `/proc/<pid>/fd` show what each eventfd watches, for one descriptor per source.
    EventFd { event: File, _target: File },
    /// An inotify instance watching `memory.events` as `wd` (Linux only).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Inotify { fd: File, wd: i32 },
    /// A `memory.pressure` descriptor carrying a PSI trigger.
    Psi { file: File },
}

#[cfg(unix)]
impl Kind {
    pub(super) fn fd(&self) -> i32 {
        match self {
            Kind::EventFd { event, .. } => event.as_raw_fd(),
            Kind::Inotify { fd, .. } => fd.as_raw_fd(),
            Kind::Psi { file } => file.as_raw_fd(),
        }
    }

    pub(super) fn interest(&self) -> libc::c_short {
        match self {
            // PSI files always poll readable; only POLLPRI means the trigger fired.
            Kind::Psi { .. } => libc::POLLPRI,
            _ => libc::POLLIN,
        }
    }

    /// Reads what `revents` announced: the number of notifications, and whether the source is
    /// gone for good.
    pub(super) fn drain(&mut self, revents: libc::c_short) -> (u64, bool) {
        let broken = revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0;
        match self {
            Kind::EventFd { event, .. } => {
                let mut counter = [0u8; 8];
                match event.read(&mut counter) {
                    Ok(8) => (u64::from_ne_bytes(counter), broken),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => (0, broken),
                    _ => (0, true),
                }
            }
            Kind::Inotify { fd, wd } => {
                let (mut modified, mut gone) = (0u64, broken);
                let mut buffer = [0u8; 4096];
                loop {
                    match fd.read(&mut buffer) {
                        Ok(0) => break,
                        Ok(n) => {
                            for (event_wd, mask) in inotify_events(&buffer[..n]) {
                                if event_wd != *wd {
                                    continue;
                                }
                                if mask & IN_MODIFY != 0 {
                                    modified += 1;
                                }
                                // The file went away (its cgroup was removed): nothing will come.
                                if mask & IN_IGNORED != 0 {
                                    gone = true;
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => {
                            gone = true;
                            break;
                        }
                    }
                }
                (modified, gone)
            }
            // The kernel resets the trigger's flag inside poll itself; there is nothing to read.
            // A destroyed trigger (cgroup removed) polls POLLERR | POLLPRI.
            Kind::Psi { .. } => (u64::from(revents & libc::POLLPRI != 0), broken),
        }
    }
}

/// `(wd, mask)` of each `struct inotify_event` in a buffer read from an inotify descriptor.
pub(super) fn inotify_events(mut buffer: &[u8]) -> impl Iterator<Item = (i32, u32)> + '_ {
    // struct inotify_event { int wd; uint32_t mask; uint32_t cookie; uint32_t len; char name[]; }
    const HEADER: usize = 16;
    std::iter::from_fn(move || {
        if buffer.len() < HEADER {
            return None;
        }
        let word = |at: usize| [buffer[at], buffer[at + 1], buffer[at + 2], buffer[at + 3]];
        let wd = i32::from_ne_bytes(word(0));
        let mask = u32::from_ne_bytes(word(4));
        let len = u32::from_ne_bytes(word(12)) as usize;
        buffer = buffer.get(HEADER + len..).unwrap_or(&[]);
        Some((wd, mask))
    })
}

/// Without `poll(2)` (Windows) no source can be registered, so `subscribe` fails before it
/// would start this thread: it only closes the events.
#[cfg(not(unix))]
pub(super) fn deliver(_shutdown: File, _watches: Vec<Watch>, shared: &Shared) {
    shared.close();
}

/// The delivery thread: waits on the shutdown eventfd and every source until shutdown, or until
/// no source is left.
#[cfg(unix)]
pub(super) fn deliver(shutdown: File, mut watches: Vec<Watch>, shared: &Shared) {
    let mut fds: Vec<libc::pollfd> = std::iter::once(libc::pollfd {
        fd: shutdown.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    })
    .chain(watches.iter().map(|w| libc::pollfd {
        fd: w.kind.fd(),
        events: w.kind.interest(),
        revents: 0,
    }))
    .collect();
    let mut live = watches.len();
    while live > 0 {
        let count = fds.len() as libc::nfds_t;
        // SAFETY: `fds` is a live, exclusively borrowed array of `count` pollfd structs, and every
        // descriptor in it is owned by `shutdown` or `watches`, which outlive the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), count, -1) };
        if rc < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::warn!(%error, "memory events: poll failed; no more kernel memory events");
            break;
        }
        if fds[0].revents != 0 {
            return;
        }
        for (pollfd, watch) in fds[1..].iter_mut().zip(watches.iter_mut()) {
            if pollfd.fd < 0 || pollfd.revents == 0 {
                continue;
            }
            let (count, gone) = watch.kind.drain(pollfd.revents);
            if count > 0 {
                shared.push(watch.source, count);
            }
            if gone {
                tracing::warn!(source = %watch.source, "memory events: source closed by the kernel");
                // poll(2) skips negative descriptors; the Watch still owns and later closes it.
                pollfd.fd = -1;
                live -= 1;
            }
        }
    }
    shared.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(wd: i32, mask: u32, name: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&wd.to_ne_bytes());
        out.extend_from_slice(&mask.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&(name.len() as u32).to_ne_bytes());
        out.extend_from_slice(name);
        out
    }

    #[test]
    fn inotify_buffer_is_split_at_each_name_length() {
        let mut buffer = event(1, libc::IN_MODIFY, b"");
        buffer.extend(event(2, libc::IN_MODIFY, b"memory.events\0\0\0"));
        buffer.extend(event(1, libc::IN_IGNORED, b""));
        let events: Vec<_> = inotify_events(&buffer).collect();
        assert_eq!(
            events,
            [
                (1, libc::IN_MODIFY),
                (2, libc::IN_MODIFY),
                (1, libc::IN_IGNORED)
            ]
        );
        assert_eq!(inotify_events(&buffer[..10]).count(), 0, "a torn header");
    }

    #[test]
    fn coalesced_events_are_taken_in_arrival_order() {
        let shared = Shared {
            pending: Mutex::new(Vec::new()),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
        };
        shared.push(EventSource::V1Oom, 1);
        shared.push(EventSource::V1UsageThreshold(5), 2);
        shared.push(EventSource::V1Oom, 3);
        let pending = shared.pending.lock().unwrap().clone();
        assert_eq!(
            pending,
            [
                MemoryEvent {
                    source: EventSource::V1Oom,
                    count: 4
                },
                MemoryEvent {
                    source: EventSource::V1UsageThreshold(5),
                    count: 2
                },
            ]
        );
    }
}
