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

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::Notify;

mod deliver;
mod register;

use deliver::{Kind, Shared, Watch, deliver};
use register::{eventfd, psi_trigger, register_v1, watch_modified};

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
/// # async fn monitor() -> Result<(), tower_memory_probe::ProbeError> {
/// use tower_memory_probe::MemoryEvents;
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
