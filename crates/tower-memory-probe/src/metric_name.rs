//! The names of the workspace's metrics and their process-wide prefix.
//!
//! Every crate of the workspace emits through the `metrics` facade into whatever recorder the
//! application installed, beside the application's own metrics. A prefix must therefore apply to
//! this workspace's names only (a `PrefixLayer` around a shared recorder would rename the
//! application's metrics too), and it must cost nothing per request: each name is resolved once,
//! to a `&'static str`, the first time it is used; after that a use is one atomic load.

use std::fmt;
use std::sync::OnceLock;

/// The prefix, fixed the first time it is set or a name is resolved (`None`: no prefix).
static PREFIX: OnceLock<Option<&'static str>> = OnceLock::new();

/// Why [`set_metric_prefix`] refused a prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricPrefixError {
    /// The prefix is not a Prometheus name fragment: ASCII letters, digits and `_`, not starting
    /// with a digit, not empty.
    #[error(
        "metric prefix {0:?} is not a name: use ASCII letters, digits and '_', not starting with a digit"
    )]
    Invalid(String),
    /// A different prefix (or none) was fixed already: by an earlier call, or because a metric
    /// of this workspace was emitted or described before the prefix was set.
    #[error(
        "the metric prefix is fixed already (as {current:?}); set it before building the layers or installing the exporter"
    )]
    AlreadyFixed {
        /// The prefix in force (`None`: names without a prefix).
        current: Option<&'static str>,
    },
}

/// Sets the prefix of every metric this workspace emits: `memory_usage_bytes` becomes
/// `{prefix}_memory_usage_bytes`, `http_request_allocated_bytes` becomes
/// `{prefix}_http_request_allocated_bytes`. The application's own metrics in the same recorder
/// keep their names.
///
/// Default: no prefix (the names the deploy rules and dashboard use). The prefix is process-wide
/// and fixed once: call this at start-up, before any layer, monitor or exporter of this workspace
/// is built (the first name resolved fixes "no prefix"). Setting the same prefix again is `Ok`.
///
/// ```
/// tower_memory_probe::set_metric_prefix("myapp").unwrap();
/// assert_eq!(tower_memory_probe::metric_prefix(), Some("myapp"));
/// // Fixed now:
/// assert!(tower_memory_probe::set_metric_prefix("other").is_err());
/// ```
pub fn set_metric_prefix(prefix: &str) -> Result<(), MetricPrefixError> {
    check_metric_prefix(prefix)?;
    let mut fresh = false;
    let fixed = PREFIX.get_or_init(|| {
        fresh = true;
        // Leaked once per process: names borrow it for the rest of the process's life.
        Some(Box::leak(prefix.to_owned().into_boxed_str()))
    });
    match fixed {
        _ if fresh => Ok(()),
        Some(current) if *current == prefix => Ok(()),
        current => Err(MetricPrefixError::AlreadyFixed { current: *current }),
    }
}

/// Whether `prefix` can be a metric prefix (ASCII letters, digits and `_`, not starting with a
/// digit, not empty), without fixing anything: for configuration parsers that check a value before
/// they apply it.
pub fn check_metric_prefix(prefix: &str) -> Result<(), MetricPrefixError> {
    let valid = !prefix.is_empty()
        && !prefix.starts_with(|c: char| c.is_ascii_digit())
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(MetricPrefixError::Invalid(prefix.to_string()))
    }
}

/// The prefix in force (`None`: none). Reading it fixes it, as resolving a name does.
pub fn metric_prefix() -> Option<&'static str> {
    *PREFIX.get_or_init(|| None)
}

/// One metric name of this workspace: the base name, spelled once in a crate's `metrics.rs`, and
/// the name emitted, resolved with the [prefix](set_metric_prefix) on first use.
///
/// ```
/// use tower_memory_probe::MetricName;
///
/// static REQUESTS: MetricName = MetricName::new("demo_requests_total");
/// assert_eq!(REQUESTS.base(), "demo_requests_total");
/// // No prefix set in this process: the emitted name is the base.
/// assert_eq!(REQUESTS.get(), "demo_requests_total");
/// metrics::counter!(REQUESTS.get()).increment(1);
/// ```
pub struct MetricName {
    base: &'static str,
    resolved: OnceLock<&'static str>,
}

impl MetricName {
    /// A name whose unprefixed form is `base`.
    pub const fn new(base: &'static str) -> Self {
        Self {
            base,
            resolved: OnceLock::new(),
        }
    }

    /// The name without the prefix (what the tables of `describe_metrics` list).
    pub const fn base(&self) -> &'static str {
        self.base
    }

    /// The name emitted: `{prefix}_{base}`, or the base when no prefix is set. The first call
    /// fixes the prefix; later calls are one atomic load.
    #[inline]
    pub fn get(&self) -> &'static str {
        self.resolved.get_or_init(|| match metric_prefix() {
            // Leaked once per name (a few dozen per process), so that every use is a static
            // string: the `metrics` keys then borrow instead of allocating.
            Some(prefix) => Box::leak(format!("{prefix}_{}", self.base).into_boxed_str()),
            None => self.base,
        })
    }
}

impl fmt::Debug for MetricName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricName")
            .field("base", &self.base)
            .field("resolved", &self.resolved.get())
            .finish()
    }
}

impl fmt::Display for MetricName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Unit tests share one process, so they may only check what holds whatever the prefix is;
    // tests/metric_prefix.rs sets one in a process of its own.
    #[test]
    fn invalid_prefixes_are_refused_before_anything_is_fixed() {
        for bad in ["", "9lives", "my-app", "a.b", "ü"] {
            assert_eq!(
                set_metric_prefix(bad),
                Err(MetricPrefixError::Invalid(bad.to_string()))
            );
        }
    }

    #[test]
    fn a_name_is_its_base_behind_the_prefix_in_force() {
        static NAME: MetricName = MetricName::new("unit_test_total");
        let expected = match metric_prefix() {
            Some(p) => format!("{p}_unit_test_total"),
            None => "unit_test_total".to_string(),
        };
        assert_eq!(NAME.get(), expected);
        assert!(std::ptr::eq(NAME.get(), NAME.get()), "resolved once");
    }
}
