//! Allocator profiles: trade throughput for a smaller resident set, at start-up or at run time.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

use tower_memory_probe::AllocatorKind;

/// How the allocator balances speed against returning memory to the OS.
///
/// jemalloc keeps freed pages ("dirty") for `dirty_decay_ms` (default 10 s) and only purges them
/// while it is called; an idle service can sit on hundreds of megabytes after a burst.
///
/// - [`MemoryFirst`](Self::MemoryFirst): dirty pages decay in [`MEMORY_FIRST_DIRTY_DECAY_MS`]
///   and go straight back to the OS (muzzy decay 0), on every existing arena and as the default
///   for new ones; a thread of this crate runs the decay every 250 ms and, once per
///   decay time, returns everything when more than 8 MiB of freed pages are still parked, so an
///   idle process gives a burst back within about a second. jemalloc's own background threads
///   are turned off instead: measured on the example server, they often slept through the end
///   of a burst (RSS stayed 50-90 MiB above idle after four 32 MiB requests, in 2 of 3 runs),
///   and decay times changed at run time do not reach every arena's pages (decay alone left
///   35 MiB 3 s after the burst).
/// - [`Throughput`](Self::Throughput): the values the process started with (jemalloc's defaults
///   unless `MALLOC_CONF` said otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AllocatorProfile {
    /// Return freed memory quickly.
    MemoryFirst,
    /// Keep freed memory for reuse (the allocator's start-up settings).
    Throughput,
}

/// Dirty-page decay of the `memory-first` profile, in milliseconds.
pub const MEMORY_FIRST_DIRTY_DECAY_MS: isize = 1000;

/// How often the `memory-first` profile runs the allocator's decay (one `mallctl`, a few
/// microseconds when there is nothing to return).
#[cfg(feature = "jemalloc")]
const DECAY_TICK: std::time::Duration = std::time::Duration::from_millis(250);

impl AllocatorProfile {
    /// `"memory-first"` or `"throughput"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AllocatorProfile::MemoryFirst => "memory-first",
            AllocatorProfile::Throughput => "throughput",
        }
    }

    /// The profile last applied in this process, if any.
    pub fn current() -> Option<AllocatorProfile> {
        Self::from_u8(CURRENT.load(Ordering::Relaxed))
    }

    /// Applies the profile to the process's allocator (jemalloc, feature `jemalloc`).
    pub fn apply(self) -> Result<ProfileReport, ProfileError> {
        let allocator = tower_memory_probe::self_check().allocator;
        if allocator != AllocatorKind::Jemalloc {
            return Err(ProfileError::Unsupported(allocator));
        }
        let report = apply_jemalloc(self)?;
        CURRENT.store(self.as_u8(), Ordering::Relaxed);
        tracing::info!(
            target: "tower_memory_health",
            profile = %self,
            arenas = report.arenas_updated,
            background_thread = report.background_thread,
            dirty_decay_ms = report.dirty_decay_ms,
            muzzy_decay_ms = report.muzzy_decay_ms,
            "allocator profile applied"
        );
        Ok(report)
    }
}

/// The profile last applied ([`AllocatorProfile::as_u8`]; 0: none yet).
static CURRENT: AtomicU8 = AtomicU8::new(0);

impl AllocatorProfile {
    /// How [`CURRENT`] stores the profile (0 is "none").
    fn as_u8(self) -> u8 {
        match self {
            AllocatorProfile::MemoryFirst => 1,
            AllocatorProfile::Throughput => 2,
        }
    }

    fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(AllocatorProfile::MemoryFirst),
            2 => Some(AllocatorProfile::Throughput),
            _ => None,
        }
    }
}

impl fmt::Display for AllocatorProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A profile name that is neither `memory-first` nor `throughput`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("unknown allocator profile {0:?} (expected \"memory-first\" or \"throughput\")")]
pub struct UnknownProfile(pub String);

impl FromStr for AllocatorProfile {
    type Err = UnknownProfile;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "memory-first" | "memory_first" => Ok(AllocatorProfile::MemoryFirst),
            "throughput" => Ok(AllocatorProfile::Throughput),
            _ => Err(UnknownProfile(s.to_string())),
        }
    }
}

/// What applying a profile set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileReport {
    /// The profile.
    pub profile: AllocatorProfile,
    /// Existing arenas whose decay times were set.
    pub arenas_updated: u32,
    /// Whether jemalloc's background purging threads are on (off under `memory-first`).
    pub background_thread: bool,
    /// Whether this crate's decay thread runs the decay every 250 ms (`memory-first`).
    pub decay_ticker: bool,
    /// Dirty-page decay now in force, in ms (-1: never decay).
    pub dirty_decay_ms: isize,
    /// Muzzy-page decay now in force, in ms.
    pub muzzy_decay_ms: isize,
}

/// Why a profile could not be applied.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProfileError {
    /// The heap's allocator has no such controls here (not jemalloc, or feature `jemalloc` off).
    #[error(
        "allocator profiles need jemalloc as the global allocator (feature `jemalloc`); the heap is served by {0}"
    )]
    Unsupported(AllocatorKind),
    /// jemalloc refused a control.
    #[error("jemalloc control {name} failed: {reason}")]
    Control {
        /// The mallctl name.
        name: String,
        /// jemalloc's error.
        reason: String,
    },
}

#[cfg(feature = "jemalloc")]
fn apply_jemalloc(profile: AllocatorProfile) -> Result<ProfileReport, ProfileError> {
    use std::sync::OnceLock;

    use tower_memory_probe::jemalloc_ctl as ctl;

    // The control's name for the error (what jemalloc's documentation calls it).
    fn fail(name: &'static str) -> impl FnOnce(tower_memory_probe::ProbeError) -> ProfileError {
        move |e| ProfileError::Control {
            name: name.to_string(),
            reason: e.to_string(),
        }
    }

    // The start-up settings, read once: `opt.*` never changes, and it is what `throughput`
    // restores.
    static STARTUP: OnceLock<(bool, isize, isize)> = OnceLock::new();
    let startup = match STARTUP.get() {
        Some(s) => *s,
        None => *STARTUP.get_or_init(|| {
            (
                ctl::opt_background_thread().unwrap_or(false),
                ctl::opt_dirty_decay_ms().unwrap_or(10_000),
                ctl::opt_muzzy_decay_ms().unwrap_or(0),
            )
        }),
    };
    let (background, dirty, muzzy) = match profile {
        AllocatorProfile::MemoryFirst => (false, MEMORY_FIRST_DIRTY_DECAY_MS, 0),
        AllocatorProfile::Throughput => startup,
    };

    // New arenas first, so none created meanwhile misses the setting.
    ctl::set_default_dirty_decay_ms(dirty).map_err(fail("arenas.dirty_decay_ms"))?;
    ctl::set_default_muzzy_decay_ms(muzzy).map_err(fail("arenas.muzzy_decay_ms"))?;
    let narenas = ctl::arena_count().map_err(fail("arenas.narenas"))?;
    let mut updated = 0;
    for i in 0..narenas {
        // Arenas are created lazily; an uninitialized index has nothing to set.
        if !ctl::arena_initialized(i).unwrap_or(false) {
            continue;
        }
        ctl::set_arena_dirty_decay_ms(i, dirty).map_err(fail("arena.<i>.dirty_decay_ms"))?;
        ctl::set_arena_muzzy_decay_ms(i, muzzy).map_err(fail("arena.<i>.muzzy_decay_ms"))?;
        updated += 1;
    }
    ctl::set_background_thread(background).map_err(fail("background_thread"))?;
    let ticking = profile == AllocatorProfile::MemoryFirst;
    decay_ticker(ticking);
    Ok(ProfileReport {
        profile,
        arenas_updated: updated,
        background_thread: ctl::background_thread().map_err(fail("background_thread"))?,
        decay_ticker: ticking,
        dirty_decay_ms: dirty,
        muzzy_decay_ms: muzzy,
    })
}

/// Decay ticks between two looks at how much freed memory the allocator still keeps.
#[cfg(feature = "jemalloc")]
const TICKS_PER_PURGE_CHECK: u64 =
    (MEMORY_FIRST_DIRTY_DECAY_MS as u64 / DECAY_TICK.as_millis() as u64) + 1;

/// Freed memory the allocator may keep before the decay thread returns it all.
#[cfg(feature = "jemalloc")]
const PARKED_SLACK: u64 = 8 << 20;

/// Purges when the allocator keeps more than [`PARKED_SLACK`] of freed pages (resident minus
/// active and metadata).
#[cfg(feature = "jemalloc")]
fn purge_if_parked() {
    let Ok(stats) = tower_memory_probe::allocator_stats() else {
        return;
    };
    let (Some(resident), Some(active), Some(metadata)) = (
        stats.resident_bytes,
        stats.active_bytes,
        stats.metadata_bytes,
    ) else {
        return;
    };
    if resident.saturating_sub(active + metadata) > PARKED_SLACK
        && let Err(e) = tower_memory_probe::purge_allocator()
    {
        tracing::warn!(target: "tower_memory_health", error = %e, "allocator purge failed");
    }
}

/// Turns the decay thread on or off; the thread is started once, the first time it is needed,
/// and lives with the process (it only sleeps while off).
#[cfg(feature = "jemalloc")]
fn decay_ticker(on: bool) {
    use std::sync::OnceLock;
    use std::sync::atomic::AtomicBool;

    static ON: AtomicBool = AtomicBool::new(false);
    static STARTED: OnceLock<()> = OnceLock::new();
    ON.store(on, Ordering::Relaxed);
    if on {
        STARTED.get_or_init(|| {
            let spawned = std::thread::Builder::new()
                .name("memory-decay".into())
                .spawn(|| {
                    let mut tick = 0u64;
                    loop {
                        std::thread::sleep(DECAY_TICK);
                        if !ON.load(Ordering::Relaxed) {
                            continue;
                        }
                        tick += 1;
                        if let Err(e) = tower_memory_probe::decay_allocator() {
                            tracing::warn!(target: "tower_memory_health", error = %e, "allocator decay failed");
                        }
                        // Once per decay time, whatever is still parked beyond a small slack goes
                        // back: decay settings changed at run time do not reach every arena's
                        // pages (measured: 35 MiB left 3 s after a burst with decay alone).
                        if tick.is_multiple_of(TICKS_PER_PURGE_CHECK) {
                            purge_if_parked();
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(target: "tower_memory_health", error = %e, "no decay thread: memory-first decays only while the process allocates");
            }
        });
    }
}

#[cfg(not(feature = "jemalloc"))]
fn apply_jemalloc(_profile: AllocatorProfile) -> Result<ProfileReport, ProfileError> {
    Err(ProfileError::Unsupported(AllocatorKind::Jemalloc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in [AllocatorProfile::MemoryFirst, AllocatorProfile::Throughput] {
            assert_eq!(p.as_str().parse::<AllocatorProfile>(), Ok(p));
        }
        assert_eq!(
            " Memory_First ".parse::<AllocatorProfile>(),
            Ok(AllocatorProfile::MemoryFirst)
        );
        assert!("fast".parse::<AllocatorProfile>().is_err());
    }
}
