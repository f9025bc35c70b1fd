//! The learned memory cost of one route: a decayed histogram of its requests' peak memory, the
//! quantile the governor reserves at admission, the probe that measures a route not seen yet, and
//! the route's governor counters.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::task::Waker;

/// What is known of a route's cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// No request of the route has told its cost yet; the next one becomes the probe.
    Unseen = 0,
    /// One request measures the route; the others wait for it (bounded).
    Probing = 1,
    /// The prediction is learned.
    Known = 2,
}

impl Phase {
    #[inline]
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Unseen,
            1 => Phase::Probing,
            _ => Phase::Known,
        }
    }
}

/// What admission should do with a request of this route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prediction {
    /// The learned cost in bytes.
    Known(u64),
    /// The route is unseen and this request is its probe: it runs while the others wait.
    Probe,
    /// Another request is probing the route: wait for it.
    Wait,
}

/// One route's cost model. Read on every admission (two relaxed loads), written when a request of
/// the route ends, so it sits on cache lines of its own, away from the ledger's counters.
#[repr(align(64))]
pub(crate) struct Cost {
    /// A [`Phase`], stored as its `u8`.
    state: AtomicU8,
    predicted: AtomicU64,
    /// The probe's largest holding so far, for requests that stop waiting for it.
    probe_peak: AtomicU64,
    histogram: Mutex<Histogram>,
    waiters: Mutex<Vec<Waker>>,
    pub(crate) counters: Counters,
}

/// The governor's decisions for one route (see `GOVERNOR_METRIC`).
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) admitted: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) parked: AtomicU64,
    pub(crate) aborted: AtomicU64,
}

impl Default for Cost {
    fn default() -> Self {
        Cost {
            state: AtomicU8::new(Phase::Unseen as u8),
            predicted: AtomicU64::new(0),
            probe_peak: AtomicU64::new(0),
            histogram: Mutex::new(Histogram::new()),
            waiters: Mutex::new(Vec::new()),
            counters: Counters::default(),
        }
    }
}

/// How the model learns: the quantile reserved and the decay of old samples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Learning {
    pub(crate) quantile: f64,
    /// Weight growth per sample (2^(1/half-life)): the newest sample counts most.
    pub(crate) growth: f64,
    /// Samples and predictions both under this are "tiny": nothing to learn, no lock taken.
    pub(crate) floor: u64,
}

impl Cost {
    #[inline]
    fn phase(&self) -> Phase {
        Phase::from_u8(self.state.load(Relaxed))
    }

    /// The admission decision; `Probe` is handed to one request only.
    #[inline]
    pub(crate) fn predict(&self) -> Prediction {
        match self.phase() {
            Phase::Known => Prediction::Known(self.predicted.load(Relaxed)),
            Phase::Unseen
                if self
                    .state
                    .compare_exchange(Phase::Unseen as u8, Phase::Probing as u8, Relaxed, Relaxed)
                    .is_ok() =>
            {
                Prediction::Probe
            }
            _ => Prediction::Wait,
        }
    }

    /// The prediction as it stands (`None` before the route is known), for reports and health.
    pub(crate) fn predicted(&self) -> Option<u64> {
        (self.phase() == Phase::Known).then(|| self.predicted.load(Relaxed))
    }

    /// Whether the route is known (a waiter may go on).
    pub(crate) fn is_known(&self) -> bool {
        self.phase() == Phase::Known
    }

    /// Registers a request waiting for the probe; returns false if it need not wait any more.
    pub(crate) fn wait_for_probe(&self, waker: &Waker) -> bool {
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if self.is_known() {
            return false;
        }
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            waiters.push(waker.clone());
        }
        true
    }

    /// The probe grew to `held` bytes.
    pub(crate) fn probe_held(&self, held: u64) {
        self.probe_peak.fetch_max(held, Relaxed);
    }

    /// Ends the probe (or stops waiting for it): the route becomes known with what was measured,
    /// at least `unseen_cost`, and the waiters go on.
    pub(crate) fn settle(&self, measured: Option<u64>, unseen_cost: u64, learning: &Learning) {
        if self.is_known() {
            return;
        }
        let waiters = {
            let mut histogram = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
            if self.is_known() {
                return;
            }
            let prediction = match measured {
                Some(bytes) => {
                    histogram.record(bytes, learning.growth);
                    histogram.quantile(learning.quantile)
                }
                None => self.probe_peak.load(Relaxed).max(unseen_cost),
            };
            self.predicted.store(prediction, Relaxed);
            self.state.store(Phase::Known as u8, Relaxed);
            std::mem::take(&mut *self.waiters.lock().unwrap_or_else(|e| e.into_inner()))
        };
        for w in waiters {
            w.wake();
        }
    }

    /// Learns from a request that ended holding at most `peak` bytes at a poll boundary.
    #[inline]
    pub(crate) fn learn(&self, peak: u64, learning: &Learning) {
        if peak < learning.floor && self.predicted.load(Relaxed) < learning.floor {
            // A tiny request of a tiny route: nothing to learn, nothing to lock.
            return;
        }
        self.learn_slow(peak, learning);
    }

    #[cold]
    fn learn_slow(&self, peak: u64, learning: &Learning) {
        let mut histogram = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
        histogram.record(peak, learning.growth);
        if self.is_known() {
            self.predicted
                .store(histogram.quantile(learning.quantile), Relaxed);
        }
    }

    /// A request of the route holds `held` bytes while still running: the route costs at least
    /// that now, whatever the histogram says (requests admitted from now on reserve it).
    pub(crate) fn raise(&self, held: u64) {
        if self.is_known() {
            self.predicted.fetch_max(held, Relaxed);
        }
    }
}

/// Buckets per power of two: 19% wide, so a prediction is at most that far above a sample.
const SUB: u32 = 4;
const BUCKETS: usize = 128;
/// Samples under 1 KiB share the first bucket.
const MIN_LOG2: u32 = 10;

/// Peak-memory samples in log-spaced buckets, each weighted more than the one before (the newest
/// counts most), and the largest sample seen in each bucket so that a prediction is a real
/// sample rather than a bucket's upper edge.
struct Histogram {
    weights: [f64; BUCKETS],
    max: [u64; BUCKETS],
    total: f64,
    next_weight: f64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            weights: [0.0; BUCKETS],
            max: [0; BUCKETS],
            total: 0.0,
            next_weight: 1.0,
        }
    }

    fn bucket(bytes: u64) -> usize {
        if bytes < 1 << MIN_LOG2 {
            return 0;
        }
        let log2 = 63 - bytes.leading_zeros();
        let sub = ((bytes >> (log2 - SUB.trailing_zeros())) & u64::from(SUB - 1)) as u32;
        (1 + (log2 - MIN_LOG2) * SUB + sub).min(BUCKETS as u32 - 1) as usize
    }

    fn record(&mut self, bytes: u64, growth: f64) {
        let i = Self::bucket(bytes);
        self.weights[i] += self.next_weight;
        self.total += self.next_weight;
        self.max[i] = self.max[i].max(bytes);
        self.next_weight *= growth;
        if self.next_weight > 1e100 {
            // Rescale before the weights overflow; only ratios matter.
            let scale = 1.0 / self.next_weight;
            self.weights.iter_mut().for_each(|w| *w *= scale);
            self.total *= scale;
            self.next_weight = 1.0;
        }
    }

    /// The smallest sampled size that at least `quantile` of the (weighted) samples do not
    /// exceed.
    fn quantile(&self, quantile: f64) -> u64 {
        let above = self.total * (1.0 - quantile);
        let mut seen = 0.0;
        for i in (0..BUCKETS).rev() {
            seen += self.weights[i];
            if self.weights[i] > 0.0 && seen > above {
                return self.max[i];
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learning() -> Learning {
        Learning {
            quantile: 0.95,
            growth: 2f64.powf(1.0 / 64.0),
            floor: 64 << 10,
        }
    }

    #[test]
    fn buckets_are_monotonic_and_narrow() {
        let mut last = 0;
        for shift in 0..60 {
            for x in [1u64 << shift, (1 << shift) + (1 << shift) / 3] {
                let b = Histogram::bucket(x);
                assert!(b >= last, "{x}");
                last = b;
            }
        }
        assert_eq!(Histogram::bucket(0), 0);
        assert_eq!(Histogram::bucket(1023), 0);
        assert_eq!(Histogram::bucket(1024), 1);
        assert_ne!(Histogram::bucket(40 << 20), Histogram::bucket(48 << 20));
    }

    #[test]
    fn the_quantile_follows_the_samples_and_forgets_old_ones() {
        let l = learning();
        let mut h = Histogram::new();
        h.record(40 << 20, l.growth);
        assert_eq!(
            h.quantile(l.quantile),
            40 << 20,
            "one sample predicts itself"
        );
        for _ in 0..99 {
            h.record(1 << 20, l.growth);
        }
        assert_eq!(h.quantile(l.quantile), 1 << 20, "1 in 100 is above the p95");
        for _ in 0..10 {
            h.record(64 << 20, l.growth);
        }
        assert_eq!(
            h.quantile(l.quantile),
            64 << 20,
            "recent heavy samples count most"
        );
        for _ in 0..400 {
            h.record(2 << 20, l.growth);
        }
        assert_eq!(h.quantile(l.quantile), 2 << 20, "old samples decay");
    }

    #[test]
    fn one_probe_then_known() {
        let l = learning();
        let cost = Cost::default();
        assert_eq!(cost.predict(), Prediction::Probe);
        assert_eq!(cost.predict(), Prediction::Wait);
        assert!(cost.wait_for_probe(Waker::noop()));
        cost.probe_held(3 << 20);
        cost.settle(Some(5 << 20), 1 << 20, &l);
        assert_eq!(cost.predict(), Prediction::Known(5 << 20));
        assert!(!cost.wait_for_probe(Waker::noop()));
        // A waiter that gave up on a probe still running uses what the probe held so far.
        let other = Cost::default();
        assert_eq!(other.predict(), Prediction::Probe);
        other.probe_held(7 << 20);
        other.settle(None, 1 << 20, &l);
        assert_eq!(other.predicted(), Some(7 << 20));
        other.raise(9 << 20);
        assert_eq!(other.predicted(), Some(9 << 20));
    }

    #[test]
    fn tiny_routes_take_no_lock() {
        let l = learning();
        let cost = Cost::default();
        assert_eq!(cost.predict(), Prediction::Probe);
        cost.settle(Some(512), 1 << 20, &l);
        assert_eq!(cost.predicted(), Some(512));
        cost.learn(700, &l);
        assert_eq!(cost.histogram.lock().unwrap().total, 1.0, "not recorded");
        cost.learn(1 << 20, &l);
        assert_eq!(cost.predicted(), Some(1 << 20));
    }
}
