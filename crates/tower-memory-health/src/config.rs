//! `MemoryConfig`: the `MEMORY_*` and `HEAP_PROFILE_*` environment variables, this crate's own
//! (the monitor's, the reclaim schedule's, the governor's), and what is built from them. The
//! variables themselves are read in `config/env.rs`. The `STREAM_*` variables belong to
//! tower-memory-stream-body (`StreamBodyConfig::from_env`), the `COMPRESSION_*` ones to the umbrella
//! crate's stack configuration (`tower_memory::config`), which reads all of them in one call.

mod env;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

#[cfg(feature = "interceptor")]
use tower_memory_interceptor::GovernorConfig;
use tower_memory_probe::MemoryBudget;

pub use self::env::{ConfigError, DEPRECATED_VARIABLES, VARIABLES};
use crate::allocator::{AllocatorProfile, ProfileError, ProfileReport};
use crate::budget::BudgetCapacity;
use crate::monitor::MemoryMonitorBuilder;

/// The reclaim interval of the `MEMORY_RECLAIM_AGGRESSIVE` preset, unless
/// `MEMORY_RECLAIM_INTERVAL` says otherwise: one minute.
pub const AGGRESSIVE_RECLAIM_INTERVAL: Duration = Duration::from_secs(60);

/// Memory settings read from the environment (the `MEMORY_*` and `HEAP_PROFILE_*` variables).
/// Values are plain: sizes in bytes, intervals in milliseconds,
/// thresholds as fractions of the limit, booleans as `true`/`false` (also `1`/`0`, `yes`/`no`,
/// `on`/`off`). An unset variable takes its default; a set one that does not parse is an error
/// naming the variable and the value, never silently replaced by the default.
///
/// ```
/// use std::time::Duration;
/// use tower_memory_health::MemoryConfig;
///
/// let config = MemoryConfig::from_vars([
///     ("MEMORY_WARNING_THRESHOLD", "0.7"),
///     ("MEMORY_CHECK_INTERVAL", "5000"),
/// ])
/// .unwrap();
/// assert_eq!(config.warning_threshold, 0.7);
/// assert_eq!(config.check_interval, Duration::from_secs(5));
/// assert_eq!(config.critical_threshold, 0.85);
///
/// let err = MemoryConfig::from_vars([("MEMORY_CHECK_INTERVAL", "5s")]).unwrap_err();
/// assert_eq!(err.variable(), Some("MEMORY_CHECK_INTERVAL"));
/// assert!(err.to_string().contains("\"5s\""));
/// ```
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// `MEMORY_MONITORING_ENABLED` (default true): run the monitor task.
    pub monitoring_enabled: bool,
    /// `MEMORY_WARNING_THRESHOLD` (default 0.75).
    pub warning_threshold: f64,
    /// `MEMORY_CRITICAL_THRESHOLD` (default 0.85).
    pub critical_threshold: f64,
    /// `MEMORY_CHECK_INTERVAL` in ms (default 30 000).
    pub check_interval: Duration,
    /// `MEMORY_RECLAIM_ENABLED` (formerly `MEMORY_CLEANUP_ENABLED`; default true): run the
    /// reclaim schedule.
    pub reclaim_enabled: bool,
    /// `MEMORY_RECLAIM_INTERVAL` (formerly `MEMORY_CLEANUP_INTERVAL`) in ms (default 300 000;
    /// 60 000 with the aggressive preset).
    pub reclaim_interval: Duration,
    /// `MEMORY_RECLAIM_AGGRESSIVE` (formerly `MEMORY_CLEANUP_AGGRESSIVE`; default false): the
    /// preset for memory-constrained services: the `memory-first` allocator profile, a reclaim
    /// also on entering warning pressure, and a reclaim interval of
    /// [`AGGRESSIVE_RECLAIM_INTERVAL`] unless `MEMORY_RECLAIM_INTERVAL` is set. Contradicting it
    /// (`MEMORY_RECLAIM_ENABLED=false`, `MEMORY_ALLOCATOR_PROFILE=throughput`) is an error.
    pub reclaim_aggressive: bool,
    /// Reclaim also when pressure rises to warning (set by the aggressive preset).
    pub reclaim_on_warning: bool,
    /// `MEMORY_LIMIT_BYTES` (default unset: the cgroup limit, else physical memory).
    pub limit_bytes: Option<u64>,
    /// `MEMORY_ALLOCATOR_PROFILE`: `memory-first` or `throughput` (default unset: leave the
    /// allocator as it starts).
    pub allocator_profile: Option<AllocatorProfile>,
    /// `HEAP_PROFILE_TOKEN`: bearer token for `/debug/pprof/heap` (default unset: endpoint off).
    pub profile_token: Option<String>,
    /// `HEAP_PROFILE_DIR`: where jemalloc writes its heap dump before it is converted (default
    /// unset: the system temp dir; see [`profile_dir`](Self::profile_dir)).
    pub heap_profile_dir: Option<PathBuf>,
    /// `HEAP_PROFILE_ON_EXIT`: a path the heap profile is written to when the program exits
    /// cleanly (default unset: none).
    pub heap_profile_on_exit: Option<PathBuf>,
    /// `MEMORY_GOVERNOR_ENABLED` (default true): admission by predicted cost and growth charged
    /// against one process-wide budget.
    pub governor_enabled: bool,
    /// `MEMORY_REQUEST_BUDGET`: the budget's capacity, in bytes (`268435456`) or as a fraction of
    /// the limit (`0.6`); default unset: the warning threshold of the limit minus what the
    /// process holds outside requests ([`BudgetCapacity::Auto`]).
    pub request_budget: BudgetCapacity,
    /// `MEMORY_ADMISSION_QUEUE` (default 1024): requests that may wait for admission at once.
    pub admission_queue: usize,
    /// `MEMORY_ADMISSION_TIMEOUT` in ms (default 5000): longest wait for admission before 503.
    pub admission_timeout: Duration,
    /// `MEMORY_ADMISSION_FLOOR` in bytes (default 65536): requests predicted under it never
    /// queue.
    pub admission_floor: u64,
    /// `MEMORY_PARK_TIMEOUT` in ms (default 500): how long a request parked over capacity waits
    /// before the request furthest over its reservation is aborted.
    pub park_timeout: Duration,
    /// `MEMORY_LOG_QUERY` (default false): whether request logs carry query strings (they often
    /// carry tokens; by default logs show the path alone).
    pub log_query_strings: bool,
}

impl fmt::Debug for MemoryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryConfig")
            .field("monitoring_enabled", &self.monitoring_enabled)
            .field("warning_threshold", &self.warning_threshold)
            .field("critical_threshold", &self.critical_threshold)
            .field("check_interval", &self.check_interval)
            .field("reclaim_enabled", &self.reclaim_enabled)
            .field("reclaim_interval", &self.reclaim_interval)
            .field("reclaim_aggressive", &self.reclaim_aggressive)
            .field("reclaim_on_warning", &self.reclaim_on_warning)
            .field("limit_bytes", &self.limit_bytes)
            .field("allocator_profile", &self.allocator_profile)
            // A secret: say whether it is set, never what it is.
            .field(
                "profile_token",
                &self.profile_token.as_ref().map(|_| "<redacted>"),
            )
            .field("heap_profile_dir", &self.heap_profile_dir)
            .field("heap_profile_on_exit", &self.heap_profile_on_exit)
            .field("governor_enabled", &self.governor_enabled)
            .field("request_budget", &self.request_budget)
            .field("admission_queue", &self.admission_queue)
            .field("admission_timeout", &self.admission_timeout)
            .field("admission_floor", &self.admission_floor)
            .field("park_timeout", &self.park_timeout)
            .field("log_query_strings", &self.log_query_strings)
            .finish()
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            monitoring_enabled: true,
            warning_threshold: 0.75,
            critical_threshold: 0.85,
            check_interval: Duration::from_secs(30),
            reclaim_enabled: true,
            reclaim_interval: Duration::from_secs(300),
            reclaim_aggressive: false,
            reclaim_on_warning: false,
            limit_bytes: None,
            allocator_profile: None,
            profile_token: None,
            heap_profile_dir: None,
            heap_profile_on_exit: None,
            governor_enabled: true,
            request_budget: BudgetCapacity::Auto,
            admission_queue: tower_memory_probe::DEFAULT_MAX_QUEUE,
            admission_timeout: tower_memory_probe::DEFAULT_QUEUE_TIMEOUT,
            admission_floor: tower_memory_probe::DEFAULT_FLOOR,
            park_timeout: tower_memory_probe::DEFAULT_PARK_TIMEOUT,
            log_query_strings: false,
        }
    }
}

impl MemoryConfig {
    /// Applies `MEMORY_ALLOCATOR_PROFILE` (or the aggressive preset's `memory-first`) to the
    /// allocator now, whether or not the monitor will run; `None` when no profile is configured.
    /// [`MemoryStack`](https://docs.rs/tower-memory) calls it when it is built.
    pub fn apply_allocator_profile(&self) -> Option<Result<ProfileReport, ProfileError>> {
        let profile = self.allocator_profile?;
        let result = profile.apply();
        if let Err(e) = &result {
            tracing::warn!(target: "tower_memory_health", profile = %profile, error = %e, "allocator profile not applied");
        }
        Some(result)
    }

    /// A monitor builder with these settings (interval, thresholds, reclaim schedule, limit,
    /// allocator profile). Whether to start it is [`monitoring_enabled`](Self::monitoring_enabled).
    pub fn monitor_builder(&self) -> MemoryMonitorBuilder {
        let mut builder = MemoryMonitorBuilder::default()
            .check_interval(self.check_interval)
            .warning_threshold(self.warning_threshold)
            .critical_threshold(self.critical_threshold)
            .reclaim_enabled(self.reclaim_enabled)
            .reclaim_on_warning(self.reclaim_on_warning)
            .reclaim_interval(self.reclaim_interval);
        if let Some(limit) = self.limit_bytes {
            builder = builder.limit_bytes(limit);
        }
        if let Some(profile) = self.allocator_profile {
            builder = builder.allocator_profile(profile);
        }
        builder
    }

    /// The directory heap dumps go through: `HEAP_PROFILE_DIR`, else the system temp dir.
    pub fn profile_dir(&self) -> PathBuf {
        self.heap_profile_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
    }

    /// A new process-wide budget with the configured queue bound (its capacity is set by the
    /// monitor once it is given the budget with [`request_budget`](Self::request_budget); a fixed
    /// `MEMORY_REQUEST_BUDGET` in bytes applies at once).
    pub fn budget(&self) -> MemoryBudget {
        let initial = match self.request_budget {
            BudgetCapacity::Bytes(bytes) => bytes,
            _ => tower_memory_probe::DEFAULT_BUDGET_CAPACITY,
        };
        MemoryBudget::with_max_queue(initial, self.admission_queue)
    }

    /// The interceptor's governor over `budget` with these settings (floor, admission timeout,
    /// park timeout; the rest at their defaults). Feature `interceptor`.
    #[cfg(feature = "interceptor")]
    pub fn governor(&self, budget: MemoryBudget) -> GovernorConfig {
        GovernorConfig::new(budget)
            .admission_floor(self.admission_floor)
            .admission_timeout(self.admission_timeout)
            .park_timeout(self.park_timeout)
    }
}
