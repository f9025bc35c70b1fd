//! Growth trend: bytes per hour by least squares over a sliding window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Readings kept at most, whatever the window: bounds memory when the interval is tiny.
const MAX_POINTS: usize = 8192;

/// Fewest readings a slope is computed from.
pub(crate) const MIN_POINTS: usize = 3;

/// The fitted growth rate and what it rests on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendEstimate {
    /// Least-squares slope of usage over time, in bytes per hour; `None` with fewer than
    /// 3 readings or when they all share one instant.
    pub bytes_per_hour: Option<f64>,
    /// The time between the oldest and the newest reading in the window.
    pub span: Duration,
    /// Readings in the window.
    pub points: usize,
    /// Growth of the usage floor: the minimum of the newest quarter of the window against the
    /// minimum of the oldest quarter, in bytes per hour; `None` with fewer than 8 readings. A leak
    /// raises the floor; a burst that is released again does not, though it tilts the
    /// least-squares slope for a while.
    pub floor_bytes_per_hour: Option<f64>,
}

/// A sliding window of `(instant, bytes)` readings and their least-squares slope.
///
/// Least squares rather than first-to-last difference: one burst at either end of the window
/// would otherwise dominate the estimate.
///
/// ```
/// use std::time::{Duration, Instant};
/// use tower_memory_health::GrowthTrend;
///
/// let mut trend = GrowthTrend::new(Duration::from_secs(3600));
/// let start = Instant::now();
/// for minute in 0..30u64 {
///     // 1 MB per minute = 60 MB per hour.
///     trend.record(start + Duration::from_secs(60 * minute), 100_000_000 + minute * 1_000_000);
/// }
/// let rate = trend.estimate().bytes_per_hour.unwrap();
/// assert!((rate - 60e6).abs() < 1.0);
/// ```
#[derive(Debug, Clone)]
pub struct GrowthTrend {
    window: Duration,
    points: VecDeque<(Instant, u64)>,
}

impl GrowthTrend {
    /// An empty trend over `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            points: VecDeque::new(),
        }
    }

    /// The configured window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Adds a reading and drops those older than the window (relative to the newest reading).
    /// A reading older than the newest one is ignored: time only moves forward here.
    pub fn record(&mut self, at: Instant, bytes: u64) {
        if let Some(&(last, _)) = self.points.back()
            && at < last
        {
            return;
        }
        self.points.push_back((at, bytes));
        while let Some(&(first, _)) = self.points.front() {
            if at.duration_since(first) > self.window || self.points.len() > MAX_POINTS {
                self.points.pop_front();
            } else {
                break;
            }
        }
    }

    /// The least-squares slope of the readings in the window.
    pub fn estimate(&self) -> TrendEstimate {
        let points = self.points.len();
        let span = match (self.points.front(), self.points.back()) {
            (Some(&(first, _)), Some(&(last, _))) => last.duration_since(first),
            _ => Duration::ZERO,
        };
        if points < MIN_POINTS {
            return TrendEstimate {
                bytes_per_hour: None,
                span,
                points,
                floor_bytes_per_hour: None,
            };
        }
        // Offsets from the first reading keep the sums small: absolute byte counts squared would
        // lose precision in f64.
        let (t0, y0) = self.points[0];
        let n = points as f64;
        let (mut sum_t, mut sum_y) = (0.0, 0.0);
        for &(t, y) in &self.points {
            sum_t += t.duration_since(t0).as_secs_f64();
            sum_y += y as f64 - y0 as f64;
        }
        let (mean_t, mean_y) = (sum_t / n, sum_y / n);
        let (mut s_ty, mut s_tt) = (0.0, 0.0);
        for &(t, y) in &self.points {
            let dt = t.duration_since(t0).as_secs_f64() - mean_t;
            let dy = y as f64 - y0 as f64 - mean_y;
            s_ty += dt * dy;
            s_tt += dt * dt;
        }
        let bytes_per_hour = (s_tt > 0.0).then(|| s_ty / s_tt * 3600.0);
        TrendEstimate {
            bytes_per_hour,
            span,
            points,
            floor_bytes_per_hour: self.floor_rate(),
        }
    }

    fn floor_rate(&self) -> Option<f64> {
        let n = self.points.len();
        if n < 8 {
            return None;
        }
        let q = n / 4;
        let (t0, _) = self.points[0];
        let quarter = |range: std::ops::Range<usize>| {
            let len = range.len() as f64;
            let (mut floor, mut sum_t) = (u64::MAX, 0.0);
            for i in range {
                let (t, y) = self.points[i];
                floor = floor.min(y);
                sum_t += t.duration_since(t0).as_secs_f64();
            }
            (floor as f64, sum_t / len)
        };
        let (old_floor, old_t) = quarter(0..q);
        let (new_floor, new_t) = quarter(n - q..n);
        (new_t > old_t).then(|| (new_floor - old_floor) / (new_t - old_t) * 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_few_points_or_one_instant_give_no_slope() {
        let mut t = GrowthTrend::new(Duration::from_secs(60));
        let now = Instant::now();
        t.record(now, 1);
        t.record(now + Duration::from_secs(1), 2);
        assert_eq!(t.estimate().bytes_per_hour, None);
        let mut same = GrowthTrend::new(Duration::from_secs(60));
        for _ in 0..5 {
            same.record(now, 10);
        }
        assert_eq!(same.estimate().bytes_per_hour, None);
    }

    #[test]
    fn window_slides_and_out_of_order_readings_are_ignored() {
        let mut t = GrowthTrend::new(Duration::from_secs(10));
        let now = Instant::now();
        for s in 0..30 {
            t.record(now + Duration::from_secs(s), s * 100);
        }
        let e = t.estimate();
        assert_eq!(e.points, 11);
        assert_eq!(e.span, Duration::from_secs(10));
        t.record(now, 0);
        assert_eq!(t.estimate().points, 11);
        assert!((e.bytes_per_hour.unwrap() - 360_000.0).abs() < 1e-6);
    }

    #[test]
    fn a_released_burst_tilts_the_slope_but_not_the_floor() {
        let mut t = GrowthTrend::new(Duration::from_secs(3600));
        let now = Instant::now();
        for s in 0..40u64 {
            let burst = if (34..38).contains(&s) {
                200_000_000
            } else {
                0
            };
            t.record(now + Duration::from_secs(s * 30), 300_000_000 + burst);
        }
        let e = t.estimate();
        assert!(e.bytes_per_hour.unwrap() > 100e6);
        assert_eq!(e.floor_bytes_per_hour, Some(0.0));
    }

    #[test]
    fn shrinking_usage_is_negative() {
        let mut t = GrowthTrend::new(Duration::from_secs(3600));
        let now = Instant::now();
        for s in 0..10u64 {
            t.record(
                now + Duration::from_secs(s * 60),
                1_000_000_000 - s * 1_000_000,
            );
        }
        assert!((t.estimate().bytes_per_hour.unwrap() + 60e6).abs() < 1.0);
    }
}
