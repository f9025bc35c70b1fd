//! The `STREAM_*` environment variables: each is the name of a [`StreamBodyConfig`] builder method
//! in SCREAMING_CASE with the `STREAM_` prefix.

use tower_memory_probe::env::parse_u64;

use crate::config::StreamBodyConfig;

/// Largest accepted `STREAM_CHUNK_SIZE`: 16 MiB (a larger frame defeats streaming).
const MAX_CHUNK_SIZE: u64 = 16 << 20;

/// Every variable [`StreamBodyConfig::from_env`] reads, deprecated names included.
pub const VARIABLES: &[&str] = &[
    "STREAM_BUFFER_THRESHOLD",
    "STREAM_CHUNK_SIZE",
    "STREAM_FILE_THRESHOLD",
];

/// Old names still read, each with the name that replaced it (a warning is logged when one is
/// used).
pub const DEPRECATED_VARIABLES: &[(&str, &str)] =
    &[("STREAM_FILE_THRESHOLD", "STREAM_BUFFER_THRESHOLD")];

/// A `STREAM_*` variable whose value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The value does not parse or is out of range.
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
    /// The variable at fault.
    pub fn variable(&self) -> &'static str {
        match self {
            ConfigError::Invalid { variable, .. } => variable,
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

impl StreamBodyConfig {
    /// The defaults, with what the process environment sets: `STREAM_BUFFER_THRESHOLD` (bytes;
    /// formerly `STREAM_FILE_THRESHOLD`, still read with a warning) and `STREAM_CHUNK_SIZE`
    /// (bytes, 1 to 16777216). A set variable that does not parse is an error naming it.
    pub fn from_env() -> Result<Self, ConfigError> {
        let found = tower_memory_probe::env::read_env(VARIABLES)?;
        Self::from_lookup(|name| found.get(name).cloned())
    }

    /// As [`from_env`](Self::from_env), from `(name, value)` pairs (other names are ignored; the
    /// last pair of a name wins).
    ///
    /// ```
    /// use tower_memory_stream_body::StreamBodyConfig;
    ///
    /// let config = StreamBodyConfig::from_vars([("STREAM_BUFFER_THRESHOLD", "1048576")]).unwrap();
    /// assert_eq!(config.buffer_threshold, 1 << 20);
    /// let err = StreamBodyConfig::from_vars([("STREAM_CHUNK_SIZE", "0")]).unwrap_err();
    /// assert_eq!(err.variable(), "STREAM_CHUNK_SIZE");
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
        let mut config = Self::default();
        if let Some(var) = renamed(&lookup, "STREAM_BUFFER_THRESHOLD") {
            config.buffer_threshold = parse_u64(var, 0, u64::MAX, "a number of bytes")?;
        }
        if let Some(var) = renamed(&lookup, "STREAM_CHUNK_SIZE") {
            let bytes = parse_u64(var, 1, MAX_CHUNK_SIZE, "a number of bytes, 1 to 16777216")?;
            config.chunk_size = bytes as usize;
        }
        Ok(config)
    }
}

/// The value of `name`, else of the deprecated name it replaced (with a warning), paired with the
/// variable it came from, so that an error names the one that was set.
fn renamed<F>(lookup: &F, name: &'static str) -> Option<(&'static str, String)>
where
    F: Fn(&str) -> Option<String>,
{
    let old = DEPRECATED_VARIABLES
        .iter()
        .find(|(_, new)| *new == name)
        .map(|(old, _)| *old);
    match (lookup(name), old.and_then(|old| Some((old, lookup(old)?)))) {
        (Some(value), Some((old, _))) => {
            tracing::warn!(target: "tower_memory_stream_body", variable = old, "{old} is deprecated and ignored: {name} is set");
            Some((name, value))
        }
        (Some(value), None) => Some((name, value)),
        (None, Some((old, value))) => {
            tracing::warn!(target: "tower_memory_stream_body", variable = old, "{old} is deprecated: use {name}");
            Some((old, value))
        }
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_new_names_old_names_and_bad_values() {
        let none = StreamBodyConfig::from_vars(std::iter::empty::<(&str, &str)>()).unwrap();
        assert_eq!(none.buffer_threshold, crate::DEFAULT_BUFFER_THRESHOLD);
        assert_eq!(none.chunk_size, crate::DEFAULT_CHUNK_SIZE);

        let c = StreamBodyConfig::from_vars([
            ("STREAM_BUFFER_THRESHOLD", "1024"),
            ("STREAM_CHUNK_SIZE", "16777216"),
        ])
        .unwrap();
        assert_eq!((c.buffer_threshold, c.chunk_size), (1024, 16 << 20));

        let old = StreamBodyConfig::from_vars([("STREAM_FILE_THRESHOLD", "0")]).unwrap();
        assert_eq!(old.buffer_threshold, 0);
        let both = StreamBodyConfig::from_vars([
            ("STREAM_FILE_THRESHOLD", "5"),
            ("STREAM_BUFFER_THRESHOLD", "7"),
        ])
        .unwrap();
        assert_eq!(both.buffer_threshold, 7);

        for (var, value) in [
            ("STREAM_FILE_THRESHOLD", "ten"),
            ("STREAM_BUFFER_THRESHOLD", "-1"),
            ("STREAM_CHUNK_SIZE", "0"),
            ("STREAM_CHUNK_SIZE", "16777217"),
        ] {
            let err = StreamBodyConfig::from_vars([(var, value)]).unwrap_err();
            assert_eq!(err.variable(), var);
            assert!(err.to_string().contains(&format!("{value:?}")), "{err}");
        }
    }
}
