//! Warning and critical thresholds with hysteresis.

use tower_memory_probe::Pressure;

use crate::BuildError;

/// The usage ratios at which pressure rises to `Warning` and `Critical`, and the margin below a
/// threshold that usage must fall to before the level drops again.
///
/// Rising is immediate; falling needs `ratio < threshold - margin`, so usage hovering at a
/// threshold does not flap the level (and with it readiness and shedding).
///
/// ```
/// use tower_memory_health::Thresholds;
/// use tower_memory_probe::Pressure;
///
/// let t = Thresholds::new(0.75, 0.85).unwrap().with_margin(0.05).unwrap();
/// assert_eq!(t.classify(Pressure::Normal, 0.86), Pressure::Critical);
/// // 0.82 is below 0.85 but not by the margin: still critical.
/// assert_eq!(t.classify(Pressure::Critical, 0.82), Pressure::Critical);
/// assert_eq!(t.classify(Pressure::Critical, 0.79), Pressure::Warning);
/// assert_eq!(t.classify(Pressure::Warning, 0.72), Pressure::Warning);
/// assert_eq!(t.classify(Pressure::Warning, 0.69), Pressure::Normal);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    warning: f64,
    critical: f64,
    margin: f64,
}

/// Default hysteresis margin: five points of the limit.
pub(crate) const DEFAULT_MARGIN: f64 = 0.05;

impl Thresholds {
    /// Thresholds as fractions of the limit; `0 < warning < critical <= 1`. The margin starts at
    /// 0.05, or less when `warning` is smaller than that.
    pub fn new(warning: f64, critical: f64) -> Result<Self, BuildError> {
        let in_range = |v: f64| v.is_finite() && v > 0.0 && v <= 1.0;
        if !in_range(warning) {
            return Err(BuildError::Invalid {
                setting: "warning",
                reason: format!("{warning} is not a fraction in (0, 1]"),
            });
        }
        if !in_range(critical) {
            return Err(BuildError::Invalid {
                setting: "critical",
                reason: format!("{critical} is not a fraction in (0, 1]"),
            });
        }
        if warning >= critical {
            return Err(BuildError::ThresholdOrder { warning, critical });
        }
        Ok(Self {
            warning,
            critical,
            margin: DEFAULT_MARGIN.min(warning / 2.0),
        })
    }

    /// Sets the hysteresis margin; `0 <= margin < warning`.
    pub fn with_margin(mut self, margin: f64) -> Result<Self, BuildError> {
        if !(margin.is_finite() && margin >= 0.0 && margin < self.warning) {
            return Err(BuildError::Invalid {
                setting: "hysteresis margin",
                reason: format!("{margin} is not in [0, warning)"),
            });
        }
        self.margin = margin;
        Ok(self)
    }

    /// The warning threshold.
    pub fn warning(&self) -> f64 {
        self.warning
    }

    /// The critical threshold.
    pub fn critical(&self) -> f64 {
        self.critical
    }

    /// The hysteresis margin.
    pub fn margin(&self) -> f64 {
        self.margin
    }

    /// The level for `ratio` given the `current` level: a level already reached holds until the
    /// ratio falls `margin` below its threshold.
    pub fn classify(&self, current: Pressure, ratio: f64) -> Pressure {
        let critical_bar = if current >= Pressure::Critical {
            self.critical - self.margin
        } else {
            self.critical
        };
        let warning_bar = if current >= Pressure::Warning {
            self.warning - self.margin
        } else {
            self.warning
        };
        if ratio >= critical_bar {
            Pressure::Critical
        } else if ratio >= warning_bar {
            Pressure::Warning
        } else {
            Pressure::Normal
        }
    }
}

impl Default for Thresholds {
    /// Warning 0.75, critical 0.85, margin 0.05.
    fn default() -> Self {
        Self {
            warning: 0.75,
            critical: 0.85,
            margin: DEFAULT_MARGIN,
        }
    }
}
