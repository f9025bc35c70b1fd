//! The variables [`MemoryConfig`] reads: names, deprecated names, parsing and its errors.

use std::path::PathBuf;
use std::time::Duration;
use tower_memory_probe::env::{InvalidVariable, parse_bool, parse_u64};

use super::{AGGRESSIVE_RECLAIM_INTERVAL, MemoryConfig};
use crate::allocator::AllocatorProfile;
use crate::budget::BudgetCapacity;

/// Longest accepted `MEMORY_CHECK_INTERVAL`: an hour (a monitor that samples less often cannot
/// protect anything).
const MAX_CHECK_INTERVAL_MS: u64 = 3_600_000;
/// Longest accepted `MEMORY_RECLAIM_INTERVAL`: a day.
const MAX_RECLAIM_INTERVAL_MS: u64 = 86_400_000;

/// Every variable [`MemoryConfig`] reads, in the order of the README table, followed by the
/// deprecated names it still reads ([`DEPRECATED_VARIABLES`]).
pub const VARIABLES: &[&str] = &[
    "MEMORY_MONITORING_ENABLED",
    "MEMORY_WARNING_THRESHOLD",
    "MEMORY_CRITICAL_THRESHOLD",
    "MEMORY_CHECK_INTERVAL",
    "MEMORY_RECLAIM_ENABLED",
    "MEMORY_RECLAIM_INTERVAL",
    "MEMORY_RECLAIM_AGGRESSIVE",
    "MEMORY_LIMIT_BYTES",
    "MEMORY_ALLOCATOR_PROFILE",
    "HEAP_PROFILE_TOKEN",
    "HEAP_PROFILE_DIR",
    "HEAP_PROFILE_ON_EXIT",
    "MEMORY_GOVERNOR_ENABLED",
    "MEMORY_REQUEST_BUDGET",
    "MEMORY_ADMISSION_QUEUE",
    "MEMORY_ADMISSION_TIMEOUT",
    "MEMORY_ADMISSION_FLOOR",
    "MEMORY_PARK_TIMEOUT",
    "MEMORY_LOG_QUERY",
    "MEMORY_CLEANUP_ENABLED",
    "MEMORY_CLEANUP_INTERVAL",
    "MEMORY_CLEANUP_AGGRESSIVE",
];

/// Old names still read, each with the name that replaced it (the settings are the monitor
/// builder's `reclaim_*`; a warning is logged when an old name is used).
pub const DEPRECATED_VARIABLES: &[(&str, &str)] = &[
    ("MEMORY_CLEANUP_ENABLED", "MEMORY_RECLAIM_ENABLED"),
    ("MEMORY_CLEANUP_INTERVAL", "MEMORY_RECLAIM_INTERVAL"),
    ("MEMORY_CLEANUP_AGGRESSIVE", "MEMORY_RECLAIM_AGGRESSIVE"),
];

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

impl From<tower_memory_probe::env::InvalidVariable> for ConfigError {
    fn from(e: tower_memory_probe::env::InvalidVariable) -> Self {
        ConfigError::Invalid {
            variable: e.variable,
            value: e.value,
            expected: e.expected,
        }
    }
}

impl MemoryConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let found = tower_memory_probe::env::read_env(VARIABLES)?;
        Self::from_lookup(|name| found.get(name).cloned())
    }

    /// Reads `(name, value)` pairs (other names are ignored); the last pair of a name wins.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let map = tower_memory_probe::env::vars_map(vars);
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
            reclaim_enabled: renamed(&lookup, "MEMORY_RECLAIM_ENABLED")
                .map(parse_bool)
                .transpose()?
                .unwrap_or(d.reclaim_enabled),
            reclaim_interval: renamed(&lookup, "MEMORY_RECLAIM_INTERVAL")
                .map(|v| parse_millis(v, MAX_RECLAIM_INTERVAL_MS, "milliseconds, 1 to 86400000"))
                .transpose()?
                .unwrap_or(d.reclaim_interval),
            reclaim_aggressive: renamed(&lookup, "MEMORY_RECLAIM_AGGRESSIVE")
                .map(parse_bool)
                .transpose()?
                .unwrap_or(d.reclaim_aggressive),
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
        if config.reclaim_aggressive {
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

    /// The `MEMORY_RECLAIM_AGGRESSIVE` preset over what the variables set: refuses what
    /// contradicts it, fills in what was left unset.
    fn apply_aggressive_preset<F>(&mut self, lookup: &F) -> Result<(), ConfigError>
    where
        F: Fn(&str) -> Option<String>,
    {
        // The variables as they were set (a deprecated name when that is the one in use).
        let set = |name: &'static str| set_name(lookup, name);
        let conflict = |second: &'static str, reason: &'static str| ConfigError::Conflict {
            first: set("MEMORY_RECLAIM_AGGRESSIVE"),
            first_value: lookup(set("MEMORY_RECLAIM_AGGRESSIVE")).unwrap_or_default(),
            second,
            second_value: lookup(second).unwrap_or_default(),
            reason,
        };
        if !self.reclaim_enabled {
            return Err(conflict(
                set("MEMORY_RECLAIM_ENABLED"),
                "aggressive reclaim returns memory: reclaim must stay enabled",
            ));
        }
        match self.allocator_profile {
            Some(AllocatorProfile::Throughput) => {
                return Err(conflict(
                    "MEMORY_ALLOCATOR_PROFILE",
                    "aggressive reclaim uses the memory-first allocator profile",
                ));
            }
            _ => self.allocator_profile = Some(AllocatorProfile::MemoryFirst),
        }
        if renamed_quiet(lookup, "MEMORY_RECLAIM_INTERVAL").is_none() {
            self.reclaim_interval = AGGRESSIVE_RECLAIM_INTERVAL;
        }
        self.reclaim_on_warning = true;
        Ok(())
    }
}

/// The name of the deprecated variable `name` replaced, if any.
fn deprecated_name(name: &str) -> Option<&'static str> {
    DEPRECATED_VARIABLES
        .iter()
        .find(|(_, new)| *new == name)
        .map(|(old, _)| *old)
}

/// The value of `name`, else of the deprecated name it replaced, with the variable it came from.
fn renamed_quiet<F>(lookup: &F, name: &'static str) -> Option<(&'static str, String)>
where
    F: Fn(&str) -> Option<String>,
{
    lookup(name)
        .map(|value| (name, value))
        .or_else(|| deprecated_name(name).and_then(|old| Some((old, lookup(old)?))))
}

/// The name under which `name`'s setting is set: `name`, or the deprecated name when only that is.
fn set_name<F>(lookup: &F, name: &'static str) -> &'static str
where
    F: Fn(&str) -> Option<String>,
{
    renamed_quiet(lookup, name).map_or(name, |(set, _)| set)
}

/// As [`renamed_quiet`], logging a warning when a deprecated name is used or ignored; an error
/// then names the variable that was set.
fn renamed<F>(lookup: &F, name: &'static str) -> Option<(&'static str, String)>
where
    F: Fn(&str) -> Option<String>,
{
    let found = renamed_quiet(lookup, name);
    if let Some(old) = deprecated_name(name).filter(|old| lookup(old).is_some()) {
        if found.as_ref().is_some_and(|(set, _)| *set == name) {
            tracing::warn!(target: "tower_memory_health", variable = old, "{old} is deprecated and ignored: {name} is set");
        } else {
            tracing::warn!(target: "tower_memory_health", variable = old, "{old} is deprecated: use {name}");
        }
    }
    found
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

fn parse_millis(
    var: (&'static str, String),
    max: u64,
    expected: &'static str,
) -> Result<Duration, InvalidVariable> {
    parse_u64(var, 1, max, expected).map(Duration::from_millis)
}
