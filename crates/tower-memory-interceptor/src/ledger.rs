//! `Ledger`: per-route allocation totals, bounded in the number of routes it keeps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::cost::Cost;

/// The route label that collects requests once the ledger holds `max_routes` routes.
pub const OTHER_ROUTE: &str = "<other>";

/// Allocation figures of one route, as [`Ledger::top`] returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteStats {
    /// The route (a matched path such as `/api/documents/{id}`, never a raw path).
    pub route: String,
    /// Requests recorded.
    pub requests: u64,
    /// Bytes allocated by all of them.
    pub allocated_bytes_total: u64,
    /// Bytes allocated by the hungriest one.
    pub allocated_bytes_max: u64,
    /// Bytes the requests left behind when they ended, summed (each request's `net`: allocated
    /// minus freed minus handed to the server). Growing steadily: the route keeps something
    /// (a cache, a leak); negative: it freed memory allocated elsewhere.
    pub retained_bytes: i64,
    /// What the memory governor reserves for the route's next request: the learned high quantile
    /// of its requests' peak memory (`None` before the governor has seen the route, or without a
    /// governor).
    pub predicted_cost_bytes: Option<u64>,
    /// The governor's decisions for the route's requests that reserved memory (those predicted
    /// under the floor are not counted here).
    pub governor: GovernorCounts,
}

/// The memory governor's decisions for one route, counted since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GovernorCounts {
    /// Admitted without waiting.
    pub admitted: u64,
    /// Admitted after waiting in the queue.
    pub queued: u64,
    /// Refused (503): the queue was full or the wait ran out.
    pub rejected: u64,
    /// Parked at a poll boundary because the budget was over capacity.
    pub parked: u64,
    /// Aborted (503, or the body's error) because they were furthest over their reservation.
    pub aborted: u64,
}

/// One route's counters and its learned cost; the layer keeps the entries of hot routes at hand
/// (see `labels.rs` and `governor/entries.rs`).
#[derive(Default)]
pub(crate) struct Entry {
    requests: AtomicU64,
    total: AtomicU64,
    max: AtomicU64,
    retained: AtomicI64,
    /// The governor's cost model of the route.
    pub(crate) cost: Cost,
}

/// Per-route request count, total and maximum allocated bytes: the "memory-intensive endpoints"
/// view. Cloning shares the ledger.
///
/// Recording takes a read lock and three atomic updates for a known route; only the first request
/// of a new route takes the write lock. Once `max_routes` routes are known, further routes are
/// counted under [`OTHER_ROUTE`], so the memory it uses is bounded whatever paths clients send.
///
/// ```
/// use tower_memory_interceptor::Ledger;
///
/// let ledger = Ledger::new(64);
/// ledger.record("/api/reports", 50 << 20);
/// ledger.record("/api/hello", 1_000);
/// ledger.record("/api/reports", 10 << 20);
/// let top = ledger.top(1);
/// assert_eq!(top[0].route, "/api/reports");
/// assert_eq!(top[0].requests, 2);
/// assert_eq!(top[0].allocated_bytes_max, 50 << 20);
/// ```
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    max_routes: usize,
    /// Entries are leaked on purpose: they are never removed (at most `max_routes + 1` per
    /// ledger), and a `'static` reference costs no reference counting on the request path, where
    /// an `Arc` clone and drop per request would bounce one cache line between the cores.
    routes: RwLock<HashMap<Arc<str>, &'static Entry>>,
}

impl Entry {
    /// Adds one request that allocated `allocated_bytes` and ended holding `net`.
    pub(crate) fn record(&self, allocated_bytes: u64, net: i64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(allocated_bytes, Ordering::Relaxed);
        self.max.fetch_max(allocated_bytes, Ordering::Relaxed);
        if net != 0 {
            self.retained.fetch_add(net, Ordering::Relaxed);
        }
    }
}

impl Ledger {
    /// A ledger that keeps at most `max_routes` distinct routes (at least 1) plus [`OTHER_ROUTE`].
    pub fn new(max_routes: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                max_routes: max_routes.max(1),
                routes: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// Adds one request of `route` that allocated `allocated_bytes` (and left nothing behind).
    pub fn record(&self, route: &str, allocated_bytes: u64) {
        self.entry(route).record(allocated_bytes, 0);
    }

    /// Adds one request of `route` that allocated `allocated_bytes` and still held `net` bytes
    /// when it ended (see [`RouteStats::retained_bytes`]).
    pub fn record_request(&self, route: &str, allocated_bytes: u64, net: i64) {
        self.entry(route).record(allocated_bytes, net);
    }

    /// The entry `route` is counted under (its own, or [`OTHER_ROUTE`]'s once the ledger is full).
    /// Entries are never removed, so a caller may keep one and record through it.
    pub(crate) fn entry(&self, route: &str) -> &'static Entry {
        if let Some(e) = self.read().get(route) {
            return e;
        }
        let mut routes = self.inner.routes.write().unwrap_or_else(|e| e.into_inner());
        let known = routes.keys().filter(|k| &***k != OTHER_ROUTE).count();
        let key = if routes.contains_key(route) || known < self.inner.max_routes {
            route
        } else {
            OTHER_ROUTE
        };
        routes
            .entry(Arc::from(key))
            .or_insert_with(|| Box::leak(Box::default()))
    }

    /// Identifies the ledger (clones share it).
    pub(crate) fn id(&self) -> *const () {
        Arc::as_ptr(&self.inner) as *const ()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, &'static Entry>> {
        // A panic while holding the lock cannot leave the map inconsistent (entries are atomics).
        self.inner.routes.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The `n` routes with the most bytes allocated in total, largest first.
    pub fn top(&self, n: usize) -> Vec<RouteStats> {
        let mut all = self.snapshot();
        all.sort_by(|a, b| {
            b.allocated_bytes_total
                .cmp(&a.allocated_bytes_total)
                .then_with(|| a.route.cmp(&b.route))
        });
        all.truncate(n);
        all
    }

    /// Every route's figures, in no particular order.
    pub fn snapshot(&self) -> Vec<RouteStats> {
        self.read()
            .iter()
            .map(|(route, e)| RouteStats {
                route: route.to_string(),
                requests: e.requests.load(Ordering::Relaxed),
                allocated_bytes_total: e.total.load(Ordering::Relaxed),
                allocated_bytes_max: e.max.load(Ordering::Relaxed),
                retained_bytes: e.retained.load(Ordering::Relaxed),
                predicted_cost_bytes: e.cost.predicted(),
                governor: {
                    let c = &e.cost.counters;
                    GovernorCounts {
                        admitted: c.admitted.load(Ordering::Relaxed),
                        queued: c.queued.load(Ordering::Relaxed),
                        rejected: c.rejected.load(Ordering::Relaxed),
                        parked: c.parked.load(Ordering::Relaxed),
                        aborted: c.aborted.load(Ordering::Relaxed),
                    }
                },
            })
            .collect()
    }

    /// The number of routes held, [`OTHER_ROUTE`] included.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }
}

impl Default for Ledger {
    /// A ledger of at most 256 routes.
    fn default() -> Self {
        Self::new(256)
    }
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("max_routes", &self.inner.max_routes)
            .field("routes", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_in_routes_with_the_rest_under_other() {
        let ledger = Ledger::new(3);
        for i in 0..100 {
            ledger.record(&format!("/random/{i}"), 10);
        }
        assert_eq!(ledger.len(), 4);
        let other = ledger
            .snapshot()
            .into_iter()
            .find(|r| r.route == OTHER_ROUTE)
            .unwrap();
        assert_eq!(other.requests, 97);
        assert_eq!(other.allocated_bytes_total, 970);
        // A route already known keeps its own entry.
        ledger.record("/random/1", 5);
        assert_eq!(ledger.len(), 4);
    }

    #[test]
    fn top_orders_by_total_then_name_and_tracks_max() {
        let ledger = Ledger::default();
        ledger.record("/b", 100);
        ledger.record("/a", 100);
        ledger.record("/c", 300);
        ledger.record("/c", 1);
        let top = ledger.top(10);
        let names: Vec<_> = top.iter().map(|r| r.route.as_str()).collect();
        assert_eq!(names, ["/c", "/a", "/b"]);
        assert_eq!(top[0].allocated_bytes_max, 300);
        assert_eq!(top[0].allocated_bytes_total, 301);
        assert_eq!(ledger.top(1).len(), 1);
        ledger.record_request("/c", 10, 4096);
        ledger.record_request("/c", 10, -96);
        assert_eq!(ledger.top(1)[0].retained_bytes, 4000);
    }

    #[test]
    fn concurrent_recording_loses_nothing() {
        let ledger = Ledger::new(8);
        std::thread::scope(|s| {
            for t in 0..4 {
                let ledger = ledger.clone();
                s.spawn(move || {
                    for i in 0..1000 {
                        ledger.record(&format!("/r{}", (i + t) % 4), 1);
                    }
                });
            }
        });
        let total: u64 = ledger.snapshot().iter().map(|r| r.requests).sum();
        assert_eq!(total, 4000);
    }
}
