//! The stack's configuration from the environment, in one call: [`Config::from_env`].
//!
//! Each crate parses its own variables, named after its builder methods: tower-memory-health the
//! `MEMORY_*` and `HEAP_PROFILE_*` ones ([`MemoryConfig`]), tower-memory-stream-body the `STREAM_*` ones
//! ([`StreamBodyConfig`]). This module adds the stack builder's own (`MAX_BODY_SIZE`,
//! `MAX_REQUEST_MEMORY`, after [`MemoryStackBuilder`](crate::stack::MemoryStackBuilder)'s
//! methods) and the `COMPRESSION_*` ones ([`CompressionConfig`]; parsed here rather than in
//! tower-memory-compression for now). [`MemoryStack::from_env`](crate::stack::MemoryStack::from_env)
//! reads them all and builds the stack.

use std::sync::LazyLock;

use tower_memory_probe::env::{parse_bool, parse_u64};

use tower_memory_health::MemoryConfig;
use tower_memory_stream_body::StreamBodyConfig;

/// Default largest request body: 1 GiB.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 1 << 30;
/// Default per-request memory quota: 1 GiB.
pub const DEFAULT_MAX_REQUEST_MEMORY: u64 = 1 << 30;

/// The variables this module parses itself.
const OWN_VARIABLES: &[&str] = &[
    "MAX_BODY_SIZE",
    "MAX_REQUEST_MEMORY",
    "METRICS_PREFIX",
    "COMPRESSION_ENABLED",
    "COMPRESSION_LEVEL",
    "COMPRESSION_THRESHOLD",
];

/// Every variable [`Config::from_env`] reads: tower-memory-health's, tower-memory-stream-body's and this
/// module's, deprecated names included.
pub static VARIABLES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    tower_memory_health::VARIABLES
        .iter()
        .chain(tower_memory_stream_body::VARIABLES)
        .chain(OWN_VARIABLES)
        .copied()
        .collect()
});

/// Response compression settings: the `COMPRESSION_*` variables, named after
/// `CompressionLayer`'s builder methods (`enabled`, `level`, `threshold`).
///
/// `Default`: enabled, each codec's own level, a 1024-byte threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompressionConfig {
    /// `COMPRESSION_ENABLED` (default true).
    pub enabled: bool,
    /// `COMPRESSION_LEVEL`, 0-9 on the zlib scale (default unset: each codec's own default).
    pub level: Option<u32>,
    /// `COMPRESSION_THRESHOLD` in bytes (default 1024): smaller responses are not compressed.
    pub threshold: u64,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            level: None,
            threshold: 1024,
        }
    }
}

/// Everything the stack reads from the environment. `Default`: every crate's defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The `MEMORY_*` and `HEAP_PROFILE_*` variables (tower-memory-health).
    pub memory: MemoryConfig,
    /// The `STREAM_*` variables (tower-memory-stream-body), and `MAX_BODY_SIZE` in its
    /// `max_body_size`.
    pub stream_body: StreamBodyConfig,
    /// The `COMPRESSION_*` variables.
    pub compression: CompressionConfig,
    /// `MAX_REQUEST_MEMORY` (default 1 GiB): the interceptor's per-request quota.
    pub max_request_memory: u64,
    /// `METRICS_PREFIX` (default none): the prefix of every metric name of this workspace
    /// ([`tower_memory_probe::set_metric_prefix`]), applied by
    /// [`MemoryStack::from_env`](crate::stack::MemoryStack::from_env) and checked again by
    /// [`build`](crate::stack::MemoryStackBuilder::build).
    pub metric_prefix: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            memory: MemoryConfig::default(),
            stream_body: StreamBodyConfig::default().max_body_size(DEFAULT_MAX_BODY_SIZE),
            compression: CompressionConfig::default(),
            max_request_memory: DEFAULT_MAX_REQUEST_MEMORY,
            metric_prefix: None,
        }
    }
}

impl From<MemoryConfig> for Config {
    fn from(memory: MemoryConfig) -> Self {
        Self {
            memory,
            ..Self::default()
        }
    }
}

/// A variable of the stack whose value cannot be used; it names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A `MEMORY_*` or `HEAP_PROFILE_*` variable.
    #[error(transparent)]
    Memory(#[from] tower_memory_health::ConfigError),
    /// A `STREAM_*` variable.
    #[error(transparent)]
    StreamBody(#[from] tower_memory_stream_body::ConfigError),
    /// `METRICS_PREFIX` is not a metric name fragment, or a different prefix is fixed already.
    #[error("METRICS_PREFIX: {0}")]
    MetricPrefix(#[from] tower_memory_probe::MetricPrefixError),
    /// One of this module's variables does not parse or is out of range.
    #[error("{variable}={value:?} is invalid: {expected}")]
    Invalid {
        /// The variable.
        variable: &'static str,
        /// The value found (lossily decoded when it was not UTF-8).
        value: String,
        /// What the variable accepts.
        expected: &'static str,
    },
}

impl ConfigError {
    /// The (first) variable at fault.
    pub fn variable(&self) -> Option<&'static str> {
        match self {
            ConfigError::Memory(e) => e.variable(),
            ConfigError::StreamBody(e) => Some(e.variable()),
            ConfigError::Invalid { variable, .. } => Some(variable),
            ConfigError::MetricPrefix(_) => Some("METRICS_PREFIX"),
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

impl Config {
    /// Reads every variable of the stack from the process environment. An unset variable takes
    /// its default; a set one that does not parse is an error naming it.
    pub fn from_env() -> Result<Self, ConfigError> {
        let found = tower_memory_probe::env::read_env(&VARIABLES)?;
        Self::from_lookup(|name| found.get(name).cloned())
    }

    /// As [`from_env`](Self::from_env), from `(name, value)` pairs (other names are ignored; the
    /// last pair of a name wins).
    ///
    /// ```
    /// use tower_memory::config::Config;
    ///
    /// let config = Config::from_vars([
    ///     ("MEMORY_CHECK_INTERVAL", "5000"),
    ///     ("STREAM_BUFFER_THRESHOLD", "1048576"),
    ///     ("COMPRESSION_LEVEL", "4"),
    ///     ("MAX_BODY_SIZE", "67108864"),
    /// ])?;
    /// assert_eq!(config.memory.check_interval.as_millis(), 5000);
    /// assert_eq!(config.stream_body.buffer_threshold, 1 << 20);
    /// assert_eq!(config.compression.level, Some(4));
    /// assert_eq!(config.stream_body.max_body_size, 64 << 20);
    /// let err = Config::from_vars([("COMPRESSION_LEVEL", "11")]).unwrap_err();
    /// assert_eq!(err.variable(), Some("COMPRESSION_LEVEL"));
    /// # Ok::<(), tower_memory::config::ConfigError>(())
    /// ```
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let map = tower_memory_probe::env::vars_map(vars);
        Self::from_lookup(|name| map.get(name).cloned())
    }

    /// As [`from_env`](Self::from_env), reading each variable through `lookup` (`None`: unset).
    pub fn from_lookup<F>(lookup: F) -> Result<Self, ConfigError>
    where
        F: Fn(&str) -> Option<String>,
    {
        let memory = MemoryConfig::from_lookup(&lookup)?;
        let mut stream_body = StreamBodyConfig::from_lookup(&lookup)?;
        let get = |name: &'static str| lookup(name).map(|v| (name, v));
        let d = CompressionConfig::default();
        let compression = CompressionConfig {
            enabled: get("COMPRESSION_ENABLED")
                .map(parse_bool)
                .transpose()?
                .unwrap_or(d.enabled),
            level: get("COMPRESSION_LEVEL")
                .map(|v| parse_u64(v, 0, 9, "an integer from 0 to 9").map(|l| l as u32))
                .transpose()?,
            threshold: get("COMPRESSION_THRESHOLD")
                .map(|v| parse_u64(v, 0, u64::MAX, "a number of bytes"))
                .transpose()?
                .unwrap_or(d.threshold),
        };
        stream_body.max_body_size = get("MAX_BODY_SIZE")
            .map(|v| parse_u64(v, 1, u64::MAX, "a number of bytes greater than zero"))
            .transpose()?
            .unwrap_or(DEFAULT_MAX_BODY_SIZE);
        let max_request_memory = get("MAX_REQUEST_MEMORY")
            .map(|v| parse_u64(v, 1, u64::MAX, "a number of bytes greater than zero"))
            .transpose()?
            .unwrap_or(DEFAULT_MAX_REQUEST_MEMORY);
        let metric_prefix = lookup("METRICS_PREFIX").filter(|p| !p.is_empty());
        if let Some(prefix) = &metric_prefix {
            tower_memory_probe::check_metric_prefix(prefix)?;
        }
        Ok(Self {
            memory,
            stream_body,
            compression,
            max_request_memory,
            metric_prefix,
        })
    }
}

/// Every deprecated variable the stack still reads, with the name that replaced it.
pub fn deprecated_variables() -> impl Iterator<Item = (&'static str, &'static str)> {
    tower_memory_health::DEPRECATED_VARIABLES
        .iter()
        .chain(tower_memory_stream_body::DEPRECATED_VARIABLES)
        .copied()
}

/// Logs one warning per variable of the process environment that needs attention: a deprecated
/// name still in use (the parsers warn too, but a program usually parses its configuration
/// before it installs a logger), and a name that looks meant for the stack but is not read by it
/// (tower-memory-health's check, against every variable of [`VARIABLES`]). Call it once at start-up,
/// after the logger is installed; it returns the unread ones.
pub fn warn_unrecognized_env() -> Vec<tower_memory_health::UnrecognizedVariable> {
    for (old, new) in deprecated_variables() {
        if std::env::var_os(old).is_some() {
            tracing::warn!(target: "tower_memory", variable = old, "{old} is deprecated: use {new}");
        }
    }
    tower_memory_health::warn_unrecognized_env_among(&VARIABLES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(var: &str, value: &str) -> ConfigError {
        let err = Config::from_vars([(var, value)])
            .expect_err(&format!("{var}={value:?} should be rejected"));
        assert_eq!(err.variable(), Some(var));
        assert!(err.to_string().contains(var), "{err}");
        err
    }

    // Moved from tower-memory-health's tests/config.rs with the parsing of these variables.
    #[test]
    fn defaults_and_every_variable_of_the_other_layers() {
        let c = Config::from_vars(std::iter::empty::<(&str, &str)>()).unwrap();
        assert_eq!(c.stream_body.buffer_threshold, 10 << 20);
        assert_eq!(c.stream_body.chunk_size, 64 << 10);
        assert!(c.compression.enabled);
        assert_eq!(c.compression.level, None);
        assert_eq!(c.compression.threshold, 1024);
        assert_eq!(c.stream_body.max_body_size, 1 << 30);
        assert_eq!(c.max_request_memory, 1 << 30);
        let c = Config::from_vars([
            ("STREAM_FILE_THRESHOLD", "1048576"),
            ("STREAM_CHUNK_SIZE", "16384"),
            ("COMPRESSION_ENABLED", "0"),
            ("COMPRESSION_LEVEL", "9"),
            ("COMPRESSION_THRESHOLD", "0"),
            ("MAX_BODY_SIZE", "1000"),
            ("MAX_REQUEST_MEMORY", "2000"),
            ("MEMORY_CLEANUP_ENABLED", "no"),
        ])
        .unwrap();
        assert_eq!(c.stream_body.buffer_threshold, 1 << 20);
        assert_eq!(c.stream_body.chunk_size, 16 << 10);
        assert!(!c.compression.enabled);
        assert_eq!(c.compression.level, Some(9));
        assert_eq!(c.compression.threshold, 0);
        assert_eq!(c.stream_body.max_body_size, 1000);
        assert_eq!(c.max_request_memory, 2000);
        assert!(!c.memory.reclaim_enabled);
        let c = Config::from_lookup(|name| {
            (name == "COMPRESSION_THRESHOLD").then(|| "2048".to_string())
        })
        .unwrap();
        assert_eq!(c.compression.threshold, 2048);
    }

    #[test]
    fn metric_prefix_is_checked_when_read() {
        let c = Config::from_vars([("METRICS_PREFIX", "myapp")]).unwrap();
        assert_eq!(c.metric_prefix.as_deref(), Some("myapp"));
        let c = Config::from_vars([("METRICS_PREFIX", "")]).unwrap();
        assert_eq!(c.metric_prefix, None);
        for bad in ["9lives", "my-app", "my app", "ünï"] {
            invalid("METRICS_PREFIX", bad);
        }
    }

    #[test]
    fn sizes_levels_and_booleans() {
        for bad in ["", "-1", "10MB", "1.5", "0x10", "18446744073709551616"] {
            invalid("STREAM_FILE_THRESHOLD", bad);
            invalid("STREAM_BUFFER_THRESHOLD", bad);
            invalid("COMPRESSION_THRESHOLD", bad);
            invalid("STREAM_CHUNK_SIZE", bad);
            invalid("MAX_BODY_SIZE", bad);
            invalid("MAX_REQUEST_MEMORY", bad);
        }
        // Zero is meaningful for the thresholds (always spill, always compress), not for the rest.
        invalid("STREAM_CHUNK_SIZE", "0");
        invalid("STREAM_CHUNK_SIZE", "16777217");
        invalid("MAX_BODY_SIZE", "0");
        invalid("MAX_REQUEST_MEMORY", "0");
        let c = Config::from_vars([
            ("STREAM_FILE_THRESHOLD", "0"),
            ("STREAM_CHUNK_SIZE", "16777216"),
        ])
        .unwrap();
        assert_eq!(c.stream_body.buffer_threshold, 0);
        assert_eq!(c.stream_body.chunk_size, 16 << 20);
        for level in 0..=9u32 {
            let c = Config::from_vars([("COMPRESSION_LEVEL", level.to_string())]).unwrap();
            assert_eq!(c.compression.level, Some(level));
        }
        for bad in ["", "10", "-1", "6.5", "best", "99999999999999999999"] {
            invalid("COMPRESSION_LEVEL", bad);
        }
        for bad in ["", "maybe", "2", "tru", "enabled"] {
            let err = invalid("COMPRESSION_ENABLED", bad);
            assert!(err.to_string().contains("true or false"), "{err}");
        }
        invalid("MEMORY_CHECK_INTERVAL", "5s");
    }

    #[test]
    fn every_variable_is_listed_once() {
        let mut names = VARIABLES.clone();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), VARIABLES.len());
    }
}
