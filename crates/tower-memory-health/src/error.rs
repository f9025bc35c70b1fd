//! Errors of building and starting the monitor.

/// A monitor setting that cannot work.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum BuildError {
    /// One setting is out of its range.
    #[error("invalid {setting}: {reason}")]
    Invalid {
        /// The setting.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The warning threshold is not below the critical one.
    #[error("the warning threshold ({warning}) must be below the critical threshold ({critical})")]
    ThresholdOrder {
        /// The warning threshold.
        warning: f64,
        /// The critical threshold.
        critical: f64,
    },
}

/// Why the monitor task could not start.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartError {
    /// `start` was called outside a Tokio runtime.
    #[error("the memory monitor needs a Tokio runtime to start in")]
    NoRuntime,
}
