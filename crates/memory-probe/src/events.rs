//! Kernel memory events: the cgroup tells the process when its memory changes.
//!
//! A monitor that samples every 30 s learns late that a burst took the process to its limit. The
//! kernel can say so at once:
//!
//! - **cgroup v1**: a usage threshold registered through `cgroup.event_control` signals an
//!   eventfd when `memory.usage_in_bytes` crosses it, upwards or downwards; `memory.oom_control`
//!   signals one when the cgroup runs out of memory.
//! - **cgroup v2**: `memory.events` is reported modified (inotify `IN_MODIFY`) when one of its
//!   counters (`high`, `max`, `oom`, `oom_kill`) moves; a PSI trigger written to
//!   `memory.pressure` raises `POLLPRI` when tasks stall on memory for long enough.
//!
//! [`MemoryEvents`] registers what it can, keeps the reason for what it could not, and delivers
//! the signals through one background thread to async waiters.

use std::ffi::CString;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::Notify;

use crate::cgroup::{CgroupVersion, locate_memory_cgroup};
use crate::error::ProbeError;

/// The PSI trigger written to a v2 `memory.pressure`: signal when some task stalled on memory for
/// 100 ms within a 1 s window. Short enough to react before the OOM killer, long enough that a
/// single reclaim blip is not an event. (An unprivileged process may only use windows that are
/// multiples of 2 s; the trigger is then skipped with the kernel's reason.)
pub const PSI_TRIGGER: &str = "some 100000 1000000";

/// Name of the thread that waits for the kernel.
const THREAD_NAME: &str = "memory-events";

/// One kernel notification channel that a [`MemoryEvents`] listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventSource {
    /// cgroup v1: `memory.usage_in_bytes` crossed this many bytes, in either direction.
    V1UsageThreshold(u64),
    /// cgroup v1: the cgroup hit its limit and the OOM handling ran (`memory.oom_control`).
    V1Oom,
    /// cgroup v2: a counter in `memory.events` changed (`high`, `max`, `oom`, `oom_kill`).
    V2Events,
    /// cgroup v2: the [`PSI_TRIGGER`] on `memory.pressure` fired.
    V2Psi,
}

impl fmt::Display for EventSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventSource::V1UsageThreshold(bytes) => write!(f, "v1 usage threshold {bytes} bytes"),
            EventSource::V1Oom => f.write_str("v1 memory.oom_control"),
            EventSource::V2Events => f.write_str("v2 memory.events"),
            EventSource::V2Psi => f.write_str("v2 memory.pressure trigger"),
        }
    }
}

/// What the kernel signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryEvent {
    /// Which channel.
    pub source: EventSource,
    /// How many kernel notifications of this source were coalesced into this event since the
    /// previous one was taken (the eventfd counter, the number of inotify events, PSI wake-ups).
    pub count: u64,
}

/// Why an event source could not be registered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SkipReason {
    /// A cgroup file could not be opened (missing, or no permission).
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The kernel refused the registration written to a control file.
    #[error("{path} refused {line:?}: {source}")]
    Register {
        /// The control file (`cgroup.event_control`, `memory.pressure`).
        path: PathBuf,
        /// What was written.
        line: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A system call the source needs failed (`eventfd`, `inotify_init1`, `inotify_add_watch`).
    #[error("{call} failed: {source}")]
    Os {
        /// The call.
        call: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// An event source that was not registered, and why.
#[derive(Debug)]
#[non_exhaustive]
pub struct Skipped {
    /// The source.
    pub source: EventSource,
    /// Why it is missing.
    pub reason: SkipReason,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.reason)
    }
}

/// A subscription to the kernel's memory events for one cgroup.
///
/// One thread named `memory-events` waits in `poll(2)` on every registered descriptor and hands
/// what arrives to [`next`](Self::next). Dropping the subscription stops that thread (it is
/// joined) and closes every descriptor, which also unregisters the v1 thresholds in the kernel.
///
/// ```no_run
/// # async fn monitor() -> Result<(), memory_probe::ProbeError> {
/// use memory_probe::MemoryEvents;
///
/// // 75 % and 85 % of a 1 GiB limit.
/// let events = MemoryEvents::subscribe(&[805_306_368, 912_680_550])?;
/// for skipped in events.skipped() {
///     eprintln!("not watched: {skipped}");
/// }
/// while let Some(event) = events.next().await {
///     eprintln!("{}: re-sample memory now", event.source);
/// }
/// # Ok(())
/// # }
/// ```
///
/// **Changing limits.** A threshold is fixed once registered. When the limit (and so the
/// thresholds) changes, build the new subscription with [`with_thresholds`](Self::with_thresholds)
/// and then drop the old one: there is no gap in which nothing is watched, and no thread or
/// descriptor of the old subscription outlives it.
pub struct MemoryEvents {
    version: CgroupVersion,
    cgroup: PathBuf,
    thresholds: Vec<u64>,
    sources: Vec<EventSource>,
    skipped: Vec<Skipped>,
    shared: Arc<Shared>,
    shutdown: File,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for MemoryEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryEvents")
            .field("version", &self.version)
            .field("cgroup", &self.cgroup)
            .field("sources", &self.sources)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

impl MemoryEvents {
    /// Subscribes to the memory events of the process's own cgroup (resolved under `/`).
    ///
    /// `thresholds` are usage levels in bytes for cgroup v1; cgroup v2 has no usage thresholds
    /// (its `memory.events` reports crossings of `memory.high` and `memory.max` instead) and
    /// ignores them. Duplicates are registered once.
    ///
    /// Fails only when nothing at all could be registered: [`ProbeError::NoMemoryCgroup`] when
    /// the process is in no memory cgroup, [`ProbeError::NoMemoryEvents`] with the reason for
    /// every source otherwise.
    pub fn subscribe(thresholds: &[u64]) -> Result<MemoryEvents, ProbeError> {
        MemoryEvents::subscribe_at(Path::new("/"), thresholds)
    }

    /// [`subscribe`](Self::subscribe), resolving the cgroup from `<root>/proc/self/cgroup` and
    /// `<root>/proc/self/mountinfo` and opening its files under `<root>`, exactly as
    /// [`cgroup_memory_at`](crate::cgroup_memory_at) reads them.
    pub fn subscribe_at(root: &Path, thresholds: &[u64]) -> Result<MemoryEvents, ProbeError> {
        let found = locate_memory_cgroup(root).ok_or_else(|| ProbeError::NoMemoryCgroup {
            root: root.to_path_buf(),
        })?;
        MemoryEvents::subscribe_dir(found.version, found.dir, thresholds)
    }

    /// A new subscription to the same cgroup with other thresholds (the cgroup is not resolved
    /// again). Keep the old subscription until this one is in place, then drop it.
    pub fn with_thresholds(&self, thresholds: &[u64]) -> Result<MemoryEvents, ProbeError> {
        MemoryEvents::subscribe_dir(self.version, self.cgroup.clone(), thresholds)
    }

    fn subscribe_dir(
        version: CgroupVersion,
        cgroup: PathBuf,
        thresholds: &[u64],
    ) -> Result<MemoryEvents, ProbeError> {
        let mut thresholds = thresholds.to_vec();
        thresholds.sort_unstable();
        thresholds.dedup();

        let mut watches = Vec::new();
        let mut skipped = Vec::new();
        let mut keep = |source: EventSource, result: Result<Kind, SkipReason>| match result {
            Ok(kind) => watches.push(Watch { source, kind }),
            Err(reason) => skipped.push(Skipped { source, reason }),
        };
        match version {
            CgroupVersion::V1 => {
                let usage = cgroup.join("memory.usage_in_bytes");
                for &bytes in &thresholds {
                    keep(
                        EventSource::V1UsageThreshold(bytes),
                        register_v1(&cgroup, &usage, Some(bytes)),
                    );
                }
                let oom = cgroup.join("memory.oom_control");
                keep(EventSource::V1Oom, register_v1(&cgroup, &oom, None));
            }
            CgroupVersion::V2 => {
                keep(
                    EventSource::V2Events,
                    watch_modified(&cgroup.join("memory.events")),
                );
                keep(
                    EventSource::V2Psi,
                    psi_trigger(&cgroup.join("memory.pressure")),
                );
            }
        }
        if watches.is_empty() {
            return Err(ProbeError::NoMemoryEvents { cgroup, skipped });
        }

        let shutdown = eventfd().map_err(|source| ProbeError::Os {
            call: "eventfd",
            source,
        })?;
        let shutdown_for_thread = shutdown.try_clone().map_err(|source| ProbeError::Os {
            call: "dup",
            source,
        })?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::new()),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
        });
        let sources = watches.iter().map(|w| w.source).collect();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.to_string())
            .spawn(move || deliver(shutdown_for_thread, watches, &thread_shared))
            .map_err(|source| ProbeError::Os {
                call: "spawn the memory-events thread",
                source,
            })?;
        Ok(MemoryEvents {
            version,
            cgroup,
            thresholds,
            sources,
            skipped,
            shared,
            shutdown,
            thread: Some(thread),
        })
    }

    /// The next event, waiting for it. Events of the same source that arrive before they are
    /// taken are coalesced into one (see [`MemoryEvent::count`]), so a slow consumer never falls
    /// behind. `None` once every source has gone away (the cgroup was removed, say) and nothing is
    /// left to take: fall back to the timer then.
    ///
    /// Several tasks may wait at once; each event goes to one of them.
    pub async fn next(&self) -> Option<MemoryEvent> {
        loop {
            // Registered before the queue is looked at, so an event pushed in between wakes it.
            let mut notified = pin!(self.shared.notify.notified());
            notified.as_mut().enable();
            if let Some(event) = self.try_next() {
                return Some(event);
            }
            if self.shared.closed.load(Ordering::Acquire) {
                return None;
            }
            notified.await;
        }
    }

    /// The oldest pending event, without waiting.
    pub fn try_next(&self) -> Option<MemoryEvent> {
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (!pending.is_empty()).then(|| pending.remove(0))
    }

    /// The sources registered in the kernel, for logs and health output.
    pub fn sources(&self) -> &[EventSource] {
        &self.sources
    }

    /// The sources that could not be registered, each with its reason.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// The cgroup directory the subscription watches.
    pub fn cgroup(&self) -> &Path {
        &self.cgroup
    }

    /// The cgroup interface of that directory.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// The thresholds asked for, sorted and without duplicates (v2 ignores them).
    pub fn thresholds(&self) -> &[u64] {
        &self.thresholds
    }
}

impl Drop for MemoryEvents {
    fn drop(&mut self) {
        // The thread returns on this write and closes every source descriptor as it does. If the
        // write failed the thread could not be woken, and joining would hang the dropping task.
        if (&self.shutdown).write_all(&1u64.to_ne_bytes()).is_ok()
            && let Some(thread) = self.thread.take()
        {
            let _ = thread.join();
        }
    }
}

/// What the delivery thread and the waiters share.
struct Shared {
    /// At most one entry per source: new notifications add to its count.
    pending: Mutex<Vec<MemoryEvent>>,
    notify: Notify,
    /// Every source has gone away.
    closed: AtomicBool,
}

impl Shared {
    fn push(&self, source: EventSource, count: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        match pending.iter_mut().find(|e| e.source == source) {
            Some(event) => event.count = event.count.saturating_add(count),
            None => pending.push(MemoryEvent { source, count }),
        }
        drop(pending);
        self.notify.notify_one();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// A registered source and the descriptors that keep it registered.
struct Watch {
    source: EventSource,
    kind: Kind,
}

enum Kind {
    /// A v1 eventfd; `_target` is the file it was registered against (`memory.usage_in_bytes`
    /// or `memory.oom_control`). The kernel does not need it after registration, but keeping it
    /// lets `/proc/<pid>/fd` show what each eventfd watches, for one descriptor per source.
    EventFd { event: File, _target: File },
    /// An inotify instance watching `memory.events` as `wd`.
    Inotify { fd: File, wd: i32 },
    /// A `memory.pressure` descriptor carrying a PSI trigger.
    Psi { file: File },
}

impl Kind {
    fn fd(&self) -> i32 {
        match self {
            Kind::EventFd { event, .. } => event.as_raw_fd(),
            Kind::Inotify { fd, .. } => fd.as_raw_fd(),
            Kind::Psi { file } => file.as_raw_fd(),
        }
    }

    fn interest(&self) -> libc::c_short {
        match self {
            // PSI files always poll readable; only POLLPRI means the trigger fired.
            Kind::Psi { .. } => libc::POLLPRI,
            _ => libc::POLLIN,
        }
    }

    /// Reads what `revents` announced: the number of notifications, and whether the source is
    /// gone for good.
    fn drain(&mut self, revents: libc::c_short) -> (u64, bool) {
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
                                if mask & libc::IN_MODIFY != 0 {
                                    modified += 1;
                                }
                                // The file went away (its cgroup was removed): nothing will come.
                                if mask & libc::IN_IGNORED != 0 {
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
fn inotify_events(mut buffer: &[u8]) -> impl Iterator<Item = (i32, u32)> + '_ {
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

/// The delivery thread: waits on the shutdown eventfd and every source until shutdown, or until
/// no source is left.
fn deliver(shutdown: File, mut watches: Vec<Watch>, shared: &Shared) {
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

/// A non-blocking, close-on-exec eventfd.
fn eventfd() -> io::Result<File> {
    // SAFETY: eventfd takes no pointers; the result is checked before it is used.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor just returned by the kernel that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn open(path: &Path, options: &OpenOptions) -> Result<File, SkipReason> {
    options.open(path).map_err(|source| SkipReason::Open {
        path: path.to_path_buf(),
        source,
    })
}

/// v1: an eventfd registered against `target` (with a threshold for `memory.usage_in_bytes`,
/// without one for `memory.oom_control`) by writing `"<event_fd> <target_fd>[ <threshold>]"` to
/// `cgroup.event_control`.
fn register_v1(cgroup: &Path, target: &Path, threshold: Option<u64>) -> Result<Kind, SkipReason> {
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
fn watch_modified(path: &Path) -> Result<Kind, SkipReason> {
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
fn psi_trigger(path: &Path) -> Result<Kind, SkipReason> {
    let mut file = open(path, OpenOptions::new().read(true).write(true))?;
    file.write_all(PSI_TRIGGER.as_bytes())
        .map_err(|source| SkipReason::Register {
            path: path.to_path_buf(),
            line: PSI_TRIGGER.to_string(),
            source,
        })?;
    Ok(Kind::Psi { file })
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
