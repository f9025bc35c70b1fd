//! `MemoryConfig`: the environment variables of the memory settings.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use memory_interceptor_layer::GovernorConfig;
use memory_probe::MemoryBudget;

use crate::allocator::{AllocatorProfile, ProfileError, ProfileReport};
use crate::budget::BudgetCapacity;
use crate::monitor::MemoryMonitorBuilder;

/// Longest accepted `MEMORY_CHECK_INTERVAL`: an hour (a monitor that samples less often cannot
/// protect anything).
const MAX_CHECK_INTERVAL_MS: u64 = 3_600_000;
/// Longest accepted `MEMORY_CLEANUP_INTERVAL`: a day.
const MAX_CLEANUP_INTERVAL_MS: u64 = 86_400_000;
/// Largest accepted `STREAM_CHUNK_SIZE`: 16 MiB (a larger frame defeats streaming).
const MAX_CHUNK_SIZE: u64 = 16 << 20;
/// The cleanup interval of the `MEMORY_CLEANUP_AGGRESSIVE` preset, unless
/// `MEMORY_CLEANUP_INTERVAL` says otherwise: one minute.
pub const AGGRESSIVE_CLEANUP_INTERVAL: Duration = Duration::from_secs(60);

/// Every variable [`MemoryConfig`] reads, in the order of the README table.
pub const VARIABLES: &[&str] = &[
    "MEMORY_MONITORING_ENABLED",
    "MEMORY_WARNING_THRESHOLD",
    "MEMORY_CRITICAL_THRESHOLD",
    "MEMORY_CHECK_INTERVAL",
    "MEMORY_CLEANUP_ENABLED",
    "MEMORY_CLEANUP_INTERVAL",
    "MEMORY_CLEANUP_AGGRESSIVE",
    "MEMORY_LIMIT_BYTES",
    "MEMORY_ALLOCATOR_PROFILE",
    "HEAP_PROFILE_TOKEN",
    "HEAP_PROFILE_DIR",
    "HEAP_PROFILE_ON_EXIT",
    "STREAM_FILE_THRESHOLD",
    "STREAM_CHUNK_SIZE",
    "COMPRESSION_ENABLED",
    "COMPRESSION_LEVEL",
    "COMPRESSION_THRESHOLD",
    "MEMORY_GOVERNOR_ENABLED",
    "MEMORY_REQUEST_BUDGET",
    "MEMORY_ADMISSION_QUEUE",
    "MEMORY_ADMISSION_TIMEOUT",
    "MEMORY_ADMISSION_FLOOR",
    "MEMORY_PARK_TIMEOUT",
    "MEMORY_LOG_QUERY",
];

/// Memory settings read from the environment (the variable names of the original guide, plus
/// three of this crate's own). Values are plain: sizes in bytes, intervals in milliseconds,
/// thresholds as fractions of the limit, booleans as `true`/`false` (also `1`/`0`, `yes`/`no`,
/// `on`/`off`). An unset variable takes its default; a set one that does not parse is an error
/// naming the variable and the value, never silently replaced by the default.
///
/// The stream and compression values are carried as plain numbers: this crate does not depend on
/// the layers that use them; the program hands them over.
///
/// ```
/// use std::time::Duration;
/// use memory_health::MemoryConfig;
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
pub struct MemoryConfig {
    /// `MEMORY_MONITORING_ENABLED` (default true): run the monitor task.
    pub monitoring_enabled: bool,
    /// `MEMORY_WARNING_THRESHOLD` (default 0.75).
    pub warning_threshold: f64,
    /// `MEMORY_CRITICAL_THRESHOLD` (default 0.85).
    pub critical_threshold: f64,
    /// `MEMORY_CHECK_INTERVAL` in ms (default 30 000).
    pub check_interval: Duration,
    /// `MEMORY_CLEANUP_ENABLED` (default true): run the reclaim schedule.
    pub cleanup_enabled: bool,
    /// `MEMORY_CLEANUP_INTERVAL` in ms (default 300 000; 60 000 with the aggressive preset).
    pub cleanup_interval: Duration,
    /// `MEMORY_CLEANUP_AGGRESSIVE` (default false): the preset for memory-constrained services:
    /// the `memory-first` allocator profile, a reclaim also on entering warning pressure, and a
    /// cleanup interval of [`AGGRESSIVE_CLEANUP_INTERVAL`] unless `MEMORY_CLEANUP_INTERVAL` is
    /// set. Contradicting it (`MEMORY_CLEANUP_ENABLED=false`,
    /// `MEMORY_ALLOCATOR_PROFILE=throughput`) is an error.
    pub cleanup_aggressive: bool,
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
    /// `STREAM_FILE_THRESHOLD` in bytes (default 10 MiB): bodies above it stream or spill to disk.
    pub stream_file_threshold: u64,
    /// `STREAM_CHUNK_SIZE` in bytes (default 64 KiB): largest streamed frame.
    pub stream_chunk_size: u64,
    /// `COMPRESSION_ENABLED` (default true).
    pub compression_enabled: bool,
    /// `COMPRESSION_LEVEL`, 0-9 on the zlib scale (default unset: each codec's own default).
    pub compression_level: Option<u32>,
    /// `COMPRESSION_THRESHOLD` in bytes (default 1024): smaller responses are not compressed.
    pub compression_threshold: u64,
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
            .field("cleanup_enabled", &self.cleanup_enabled)
            .field("cleanup_interval", &self.cleanup_interval)
            .field("cleanup_aggressive", &self.cleanup_aggressive)
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
            .field("stream_file_threshold", &self.stream_file_threshold)
            .field("stream_chunk_size", &self.stream_chunk_size)
            .field("compression_enabled", &self.compression_enabled)
            .field("compression_level", &self.compression_level)
            .field("compression_threshold", &self.compression_threshold)
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
            cleanup_enabled: true,
            cleanup_interval: Duration::from_secs(300),
            cleanup_aggressive: false,
            reclaim_on_warning: false,
            limit_bytes: None,
            allocator_profile: None,
            profile_token: None,
            heap_profile_dir: None,
            heap_profile_on_exit: None,
            stream_file_threshold: 10 << 20,
            stream_chunk_size: 64 << 10,
            compression_enabled: true,
            compression_level: None,
            compression_threshold: 1024,
            governor_enabled: true,
            request_budget: BudgetCapacity::Auto,
            admission_queue: memory_probe::DEFAULT_MAX_QUEUE,
            admission_timeout: memory_interceptor_layer::DEFAULT_QUEUE_TIMEOUT,
            admission_floor: memory_interceptor_layer::DEFAULT_FLOOR,
            park_timeout: memory_interceptor_layer::DEFAULT_PARK_TIMEOUT,
            log_query_strings: false,
        }
    }
}

/// A memory setting in the environment that cannot be used.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A variable's value does not parse or is out of range.
    #[error("{variable}={value:?} is invalid: {expected}")]
    Invalid {
        /// The variable.
        variable: &'static str,
        /// The value found (lossily decoded when it was not UTF-8).
        value: String,
        /// What the variable accepts.
        expected: &'static str,
    },
    /// Two variables that are fine alone contradict each other.
    #[error("{first}={first_value:?} and {second}={second_value:?} conflict: {reason}")]
    Conflict {
        /// The first variable.
        first: &'static str,
        /// Its value.
        first_value: String,
        /// The second variable.
        second: &'static str,
        /// Its value.
        second_value: String,
        /// Why they cannot both hold.
        reason: &'static str,
    },
}

impl ConfigError {
    /// The (first) variable at fault.
    pub fn variable(&self) -> Option<&'static str> {
        match self {
            ConfigError::Invalid { variable, .. } => Some(variable),
            ConfigError::Conflict { first, .. } => Some(first),
        }
    }
}

impl MemoryConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut found = HashMap::new();
        for &name in VARIABLES {
            if let Some(raw) = std::env::var_os(name) {
                match raw.into_string() {
                    Ok(value) => {
                        found.insert(name, value);
                    }
                    Err(raw) => {
                        return Err(ConfigError::Invalid {
                            variable: name,
                            value: raw.to_string_lossy().into_owned(),
                            expected: "valid UTF-8",
                        });
                    }
                }
            }
        }
        Self::from_lookup(|name| found.get(name).cloned())
    }

    /// Reads `(name, value)` pairs (other names are ignored); the last pair of a name wins.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let map: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
            .collect();
        Self::from_lookup(|name| map.get(name).cloned())
    }

    /// Reads each variable through `lookup` (`None`: unset).
    pub fn from_lookup<F>(lookup: F) -> Result<Self, ConfigError>
    where
        F: Fn(&str) -> Option<String>,
    {
        let d = Self::default();
        let get = |name: &'static str| lookup(name).map(|v| (name, v));
        let mut config = Self {
            monitoring_enabled: get("MEMORY_MONITORING_ENABLED")
                .map(parse_bool)
                .transpose()?
                .unwrap_or(d.monitoring_enabled),
            warning_threshold: get("MEMORY_WARNING_THRESHOLD")
                .map(parse_fraction)
                .transpose()?
                .unwrap_or(d.warning_threshold),
            critical_threshold: get("MEMORY_CRITICAL_THRESHOLD")
                .map(parse_fraction)
                .transpose()?
                .unwrap_or(d.critical_threshold),
            check_interval: get("MEMORY_CHECK_INTERVAL")
                .map(|v| parse_millis(v, MAX_CHECK_INTERVAL_MS, "milliseconds, 1 to 3600000"))
                .transpose()?
                .unwrap_or(d.check_interval),
            cleanup_enabled: get("MEMORY_CLEANUP_ENABLED")
                .map(parse_bool)
                .transpose()?
                .unwrap_or(d.cleanup_enabled),
            cleanup_interval: get("MEMORY_CLEANUP_INTERVAL")
                .map(|v| parse_millis(v, MAX_CLEANUP_INTERVAL_MS, "milliseconds, 1 to 86400000"))
                .transpose()?
                .unwrap_or(d.cleanup_interval),
            cleanup_aggressive: get("MEMORY_CLEANUP_AGGRESSIVE")
                .map(parse_bool)
                .transpose()?
                .unwrap_or(d.cleanup_aggressive),
            reclaim_on_warning: d.reclaim_on_warning,
            limit_bytes: get("MEMORY_LIMIT_BYTES")
                .map(|v| parse_u64(v, 1, u64::MAX, "a number of bytes greater than zero"))
                .transpose()?,
            allocator_profile: get("MEMORY_ALLOCATOR_PROFILE")
                .map(|(name, value)| {
                    value
                        .parse::<AllocatorProfile>()
                        .map_err(|_| ConfigError::Invalid {
                            variable: name,
                            value,
                            expected: "\"memory-first\" or \"throughput\"",
                        })
                })
                .transpose()?,
            profile_token: get("HEAP_PROFILE_TOKEN")
                .map(|(name, value)| {
                    // A short or padded token is a mistake that would weaken the endpoint; the
                    // value itself is never echoed into the error.
                    if value.len() < 16
                        || value.trim() != value
                        || value.contains(char::is_whitespace)
                    {
                        Err(ConfigError::Invalid {
                            variable: name,
                            value: "<redacted>".into(),
                            expected: "a token of at least 16 characters without whitespace",
                        })
                    } else {
                        Ok(value)
                    }
                })
                .transpose()?,
            heap_profile_dir: get("HEAP_PROFILE_DIR").map(parse_path).transpose()?,
            heap_profile_on_exit: get("HEAP_PROFILE_ON_EXIT").map(parse_path).transpose()?,
            stream_file_threshold: get("STREAM_FILE_THRESHOLD")
                .map(|v| parse_u64(v, 0, u64::MAX, "a number of bytes"))
                .transpose()?
                .unwrap_or(d.stream_file_threshold),
            stream_chunk_size: get("STREAM_CHUNK_SIZE")
                .map(|v| parse_u64(v, 1, MAX_CHUNK_SIZE, "a number of bytes, 1 to 16777216"))
                .transpose()?
                .unwrap_or(d.stream_chunk_size),
            compression_enabled: get("COMPRESSION_ENABLED")
                .map(parse_bool)
                .transpose()?
                .unwrap_or(d.compression_enabled),
            compression_level: get("COMPRESSION_LEVEL")
                .map(|v| parse_u64(v, 0, 9, "an integer from 0 to 9").map(|l| l as u32))
                .transpose()?,
            compression_threshold: get("COMPRESSION_THRESHOLD")
                .map(|v| parse_u64(v, 0, u64::MAX, "a number of bytes"))
                .transpose()?
                .unwrap_or(d.compression_threshold),
            governor_enabled: get("MEMORY_GOVERNOR_ENABLED")
                .map(parse_bool)
                .transpose()?
                .unwrap_or(d.governor_enabled),
            request_budget: get("MEMORY_REQUEST_BUDGET")
                .map(parse_budget)
                .transpose()?
                .unwrap_or(d.request_budget),
            admission_queue: get("MEMORY_ADMISSION_QUEUE")
                .map(|v| parse_u64(v, 0, 1 << 20, "a number of requests, 0 to 1048576"))
                .transpose()?
                .map_or(d.admission_queue, |n| n as usize),
            admission_timeout: get("MEMORY_ADMISSION_TIMEOUT")
                .map(|v| parse_u64(v, 0, 3_600_000, "milliseconds, 0 to 3600000"))
                .transpose()?
                .map_or(d.admission_timeout, Duration::from_millis),
            admission_floor: get("MEMORY_ADMISSION_FLOOR")
                .map(|v| parse_u64(v, 0, u64::MAX, "a number of bytes"))
                .transpose()?
                .unwrap_or(d.admission_floor),
            park_timeout: get("MEMORY_PARK_TIMEOUT")
                .map(|v| parse_millis(v, 3_600_000, "milliseconds, 1 to 3600000"))
                .transpose()?
                .unwrap_or(d.park_timeout),
            log_query_strings: get("MEMORY_LOG_QUERY")
                .map(parse_bool)
                .transpose()?
                .unwrap_or(d.log_query_strings),
        };
        if config.cleanup_aggressive {
            config.apply_aggressive_preset(&lookup)?;
        }
        if config.warning_threshold >= config.critical_threshold {
            let warning = (
                "MEMORY_WARNING_THRESHOLD",
                config.warning_threshold.to_string(),
            );
            let critical = (
                "MEMORY_CRITICAL_THRESHOLD",
                config.critical_threshold.to_string(),
            );
            // The variable at fault is one that was set: the critical threshold when only it
            // was (below the default warning threshold).
            let ((first, first_value), (second, second_value)) =
                if lookup("MEMORY_WARNING_THRESHOLD").is_none() {
                    (critical, warning)
                } else {
                    (warning, critical)
                };
            return Err(ConfigError::Conflict {
                first,
                first_value,
                second,
                second_value,
                reason: "the warning threshold must be below the critical threshold",
            });
        }
        Ok(config)
    }

    /// The `MEMORY_CLEANUP_AGGRESSIVE` preset over what the variables set: refuses what contradicts
    /// it, fills in what was left unset.
    fn apply_aggressive_preset<F>(&mut self, lookup: &F) -> Result<(), ConfigError>
    where
        F: Fn(&str) -> Option<String>,
    {
        let conflict = |second: &'static str, reason: &'static str| ConfigError::Conflict {
            first: "MEMORY_CLEANUP_AGGRESSIVE",
            first_value: "true".into(),
            second,
            second_value: lookup(second).unwrap_or_default(),
            reason,
        };
        if !self.cleanup_enabled {
            return Err(conflict(
                "MEMORY_CLEANUP_ENABLED",
                "aggressive cleanup reclaims memory: cleanup must stay enabled",
            ));
        }
        match self.allocator_profile {
            Some(AllocatorProfile::Throughput) => {
                return Err(conflict(
                    "MEMORY_ALLOCATOR_PROFILE",
                    "aggressive cleanup uses the memory-first allocator profile",
                ));
            }
            _ => self.allocator_profile = Some(AllocatorProfile::MemoryFirst),
        }
        if lookup("MEMORY_CLEANUP_INTERVAL").is_none() {
            self.cleanup_interval = AGGRESSIVE_CLEANUP_INTERVAL;
        }
        self.reclaim_on_warning = true;
        Ok(())
    }

    /// Applies `MEMORY_ALLOCATOR_PROFILE` (or the aggressive preset's `memory-first`) to the
    /// allocator now, whether or not the monitor will run; `None` when no profile is configured.
    /// [`MemoryStack`](https://docs.rs/tower-memory) calls it when it is built.
    pub fn apply_allocator_profile(&self) -> Option<Result<ProfileReport, ProfileError>> {
        let profile = self.allocator_profile?;
        let result = profile.apply();
        if let Err(e) = &result {
            tracing::warn!(target: "memory_health", profile = %profile, error = %e, "allocator profile not applied");
        }
        Some(result)
    }

    /// A monitor builder with these settings (interval, thresholds, reclaim schedule, limit,
    /// allocator profile). Whether to start it is [`monitoring_enabled`](Self::monitoring_enabled).
    pub fn monitor_builder(&self) -> MemoryMonitorBuilder {
        let mut builder = MemoryMonitorBuilder::default()
            .interval(self.check_interval)
            .warning(self.warning_threshold)
            .critical(self.critical_threshold)
            .reclaim_enabled(self.cleanup_enabled)
            .reclaim_on_warning(self.reclaim_on_warning)
            .reclaim_interval(self.cleanup_interval);
        if let Some(limit) = self.limit_bytes {
            builder = builder.limit(limit);
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
            _ => memory_probe::DEFAULT_BUDGET_CAPACITY,
        };
        MemoryBudget::with_max_queue(initial, self.admission_queue)
    }

    /// The interceptor's governor over `budget` with these settings (floor, admission timeout,
    /// park timeout; the rest at their defaults).
    pub fn governor(&self, budget: MemoryBudget) -> GovernorConfig {
        GovernorConfig::new(budget)
            .floor(self.admission_floor)
            .queue_timeout(self.admission_timeout)
            .park_timeout(self.park_timeout)
    }
}

fn parse_budget((variable, value): (&'static str, String)) -> Result<BudgetCapacity, ConfigError> {
    let text = value.trim();
    let parsed = if text.contains('.') {
        text.parse::<f64>()
            .ok()
            .filter(|r| r.is_finite() && *r > 0.0 && *r <= 1.0)
            .map(BudgetCapacity::RatioOfLimit)
    } else {
        text.parse::<u64>()
            .ok()
            .filter(|b| *b > 0)
            .map(BudgetCapacity::Bytes)
    };
    parsed.ok_or(ConfigError::Invalid {
        variable,
        value,
        expected: "a number of bytes greater than zero, or a fraction of the limit with a decimal point (e.g. 0.6)",
    })
}

fn parse_path((variable, value): (&'static str, String)) -> Result<PathBuf, ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::Invalid {
            variable,
            value,
            expected: "a path",
        });
    }
    Ok(PathBuf::from(value))
}

fn parse_bool((variable, value): (&'static str, String)) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Invalid {
            variable,
            value,
            expected: "true or false",
        }),
    }
}

fn parse_fraction((variable, value): (&'static str, String)) -> Result<f64, ConfigError> {
    match value.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(ConfigError::Invalid {
            variable,
            value,
            expected: "a fraction of the limit greater than 0 and at most 1 (e.g. 0.75)",
        }),
    }
}

fn parse_u64(
    (variable, value): (&'static str, String),
    min: u64,
    max: u64,
    expected: &'static str,
) -> Result<u64, ConfigError> {
    match value.trim().parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(ConfigError::Invalid {
            variable,
            value,
            expected,
        }),
    }
}

fn parse_millis(
    var: (&'static str, String),
    max: u64,
    expected: &'static str,
) -> Result<Duration, ConfigError> {
    parse_u64(var, 1, max, expected).map(Duration::from_millis)
}
