//! `MemoryReport`, the one record each request leaves, and where it goes: `tracing`, `metrics`,
//! the `Ledger`, the `Reclaimer` and the user's callback.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Method, StatusCode};
use std::cell::RefCell;

use metrics::{Histogram, Label, SharedString};

use crate::layer::Config;
use crate::ledger::{Entry as LedgerEntry, Ledger};

/// The route label of requests whose route is unknown (no axum `MatchedPath`, no classifier
/// match, no [`RequestMemory::set_route`](crate::RequestMemory::set_route)). Raw paths are never
/// used as labels: clients could create any number of them.
pub const UNMATCHED_ROUTE: &str = "<unmatched>";

/// Metric: histogram of bytes allocated per request (labels `method`, `route`, `status`).
pub const ALLOCATED_METRIC: &str = "http_request_allocated_bytes";
/// Metric: histogram of bytes a request still held at its end (labels `method`, `route`,
/// `status`).
pub const NET_METRIC: &str = "http_request_net_allocated_bytes";
/// Metric: counter of requests that allocated at least the heavy threshold (labels `method`,
/// `route`, `status`).
pub const HEAVY_METRIC: &str = "http_heavy_requests_total";
/// Metric: counter of requests the layer aborted (labels `reason`: `quota`, `pressure` or
/// `overcommit`, and `route`).
pub const ABORTED_METRIC: &str = "http_requests_aborted_total";

/// A route label: a matched route template such as `/api/items/{id}`, never a raw path.
///
/// Cheap to clone (a static string or a shared one). Compares, orders and hashes as its text.
#[derive(Clone)]
pub struct Route(RouteRepr);

#[derive(Clone)]
enum RouteRepr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Route {
    /// Whether `self` and `other` are the same route, comparing the text's address first (a
    /// router hands out clones of one label).
    #[inline]
    pub(crate) fn same(&self, other: &Route) -> bool {
        let (a, b) = (self.as_str(), other.as_str());
        std::ptr::eq(a, b) || a == b
    }

    /// A route from a static string.
    pub const fn from_static(route: &'static str) -> Route {
        Route(RouteRepr::Static(route))
    }

    /// A route from a string that is not static (a router's matched path).
    pub fn new(route: &str) -> Route {
        Route(RouteRepr::Shared(Arc::from(route)))
    }

    /// The route as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            RouteRepr::Static(s) => s,
            RouteRepr::Shared(s) => s,
        }
    }

    fn label(&self) -> SharedString {
        match &self.0 {
            RouteRepr::Static(s) => SharedString::const_str(s),
            RouteRepr::Shared(s) => SharedString::from(Arc::clone(s)),
        }
    }
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for Route {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Route) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl std::hash::Hash for Route {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialOrd for Route {
    fn partial_cmp(&self, other: &Route) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Route {
    fn cmp(&self, other: &Route) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialEq<str> for Route {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Route {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Why the layer aborted a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbortReason {
    /// The request held more than `max_request_memory` at a poll boundary.
    Quota,
    /// Memory pressure was critical and the request was among the largest in flight.
    Pressure,
    /// The memory budget stayed over capacity while the request was parked, and it was the
    /// request furthest over its reservation (or it stayed parked too long).
    Overcommit,
}

impl AbortReason {
    /// `"quota"`, `"pressure"` or `"overcommit"`, the `reason` label of
    /// `http_requests_aborted_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            AbortReason::Quota => "quota",
            AbortReason::Pressure => "pressure",
            AbortReason::Overcommit => "overcommit",
        }
    }
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// The response body reached its end.
    Completed,
    /// The response body was dropped before its end (typically: the client went away).
    BodyDropped,
    /// The response future was dropped before it produced a response.
    Cancelled,
    /// The service returned an error, or the response body yielded one.
    Failed,
    /// The handler panicked while the layer polled it (a panic-catching layer outside this one
    /// turned it into a response).
    Panicked,
    /// The layer aborted the request.
    Aborted(AbortReason),
    /// The memory governor refused the request before it ran (503): its predicted cost found no
    /// room in the budget within the queue's wait, or the queue was full.
    Rejected,
}

impl Outcome {
    /// A short name: `completed`, `body_dropped`, `cancelled`, `failed`, `panicked`,
    /// `aborted_quota`, `aborted_pressure`, `aborted_overcommit`, `rejected`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::BodyDropped => "body_dropped",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed => "failed",
            Outcome::Panicked => "panicked",
            Outcome::Aborted(AbortReason::Quota) => "aborted_quota",
            Outcome::Aborted(AbortReason::Pressure) => "aborted_pressure",
            Outcome::Aborted(AbortReason::Overcommit) => "aborted_overcommit",
            Outcome::Rejected => "rejected",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one request allocated, emitted exactly once when it ends.
///
/// The counters cover every poll of the response future and of the response body, their drops,
/// the inner service's `call`, and work charged through
/// [`RequestMemory::instrument`](crate::RequestMemory::instrument) up to the end of the request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MemoryReport {
    /// The request method.
    pub method: Method,
    /// The route label (see [`UNMATCHED_ROUTE`]).
    pub route: Route,
    /// The request's path and query (for logs; never a metric label).
    pub path_and_query: PathAndQuery,
    /// The response status, when a response was produced (503 for aborts).
    pub status: Option<StatusCode>,
    /// How the request ended.
    pub outcome: Outcome,
    /// Bytes allocated.
    pub allocated: u64,
    /// Bytes freed.
    pub deallocated: u64,
    /// Bytes of response data handed to the server, counted as released when handed over (the
    /// server frees them outside the request's polls), up to what the request held then.
    pub handed_off: u64,
    /// `allocated - deallocated - handed_off`: what the request still held at its end. Positive
    /// when it left memory behind (caches, leaks) or when memory it allocated was freed elsewhere.
    pub net: i64,
    /// The largest amount held at a poll boundary.
    pub peak_net: i64,
    /// Polls of the response future plus polls of the response body.
    pub polls: u64,
    /// Response body data bytes handed to the server.
    pub body_bytes: u64,
    /// From the call of the service to the end of the request. (Zero only when nothing could
    /// read it: no `on_report` and no `tracing` subscriber for this crate's events at the start
    /// of the request; the clock is then not read.)
    pub duration: Duration,
    /// Whether `allocated` reached the heavy threshold.
    pub heavy: bool,
}

/// The `method` label: standard methods by name, anything else `OTHER` (bounded).
pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

// Three ASCII digits for every status code, so a status label is a static string and costs no
// allocation per request (`StatusCode::as_str` borrows from the code).
const fn status_digits() -> [u8; 2700] {
    let mut out = [0u8; 2700];
    let mut code = 100;
    while code < 1000 {
        let i = (code - 100) * 3;
        out[i] = b'0' + (code / 100) as u8;
        out[i + 1] = b'0' + (code / 10 % 10) as u8;
        out[i + 2] = b'0' + (code % 10) as u8;
        code += 1;
    }
    out
}

static STATUS_DIGITS: [u8; 2700] = status_digits();

/// The `status` label: the three digits, or `none` when no response was produced.
pub(crate) fn status_label(status: Option<StatusCode>) -> &'static str {
    let Some(status) = status else { return "none" };
    let i = (status.as_u16() as usize - 100) * 3;
    let digits = &STATUS_DIGITS[i..i + 3];
    debug_assert!(digits.is_ascii());
    // SAFETY: `status_digits` writes only ASCII digits, which are valid UTF-8.
    unsafe { std::str::from_utf8_unchecked(digits) }
}

fn labels(method: &'static str, route: &Route, status: &'static str) -> Vec<Label> {
    vec![
        Label::from_static_parts("method", method),
        Label::new("route", route.label()),
        Label::from_static_parts("status", status),
    ]
}

/// What logs show of a request's target: the path alone, or with its query string when the
/// layer was told to log queries (they carry tokens often enough to stay out by default).
pub(crate) fn logged_path<'a>(config: &Config, target: &'a PathAndQuery) -> &'a str {
    if config.log_query {
        target.as_str()
    } else {
        target.path()
    }
}

/// What one label set records into: the histograms registered with one recorder, and the entry
/// of one ledger.
struct Handles {
    recorder: *const (),
    ledger: *const (),
    method: &'static str,
    status: &'static str,
    route: Route,
    histograms: Option<(Histogram, Histogram)>,
    entry: Option<&'static LedgerEntry>,
}

const HANDLE_SLOTS: usize = 32;

thread_local! {
    // Building a metric key per call (a label vector, sorted and hashed, then a registry lookup)
    // costs more than everything else the layer does per request, and a ledger lookup (a lock and
    // a hashed string) is not far behind; the `metrics` docs recommend keeping handles. Per
    // thread (no lock), bounded, keyed by the recorder and the ledger too, so a recorder installed
    // later gets handles of its own.
    static HANDLES: RefCell<Vec<Handles>> = const { RefCell::new(Vec::new()) };
}

/// Records a request's bytes in the histograms (when metrics are on) and the ledger (when there is
/// one).
fn record_route(
    config: &Config,
    method: &'static str,
    route: &Route,
    status: &'static str,
    allocated: u64,
    net: i64,
) {
    if !config.metrics && config.ledger.is_none() {
        return;
    }
    let recorder = if config.metrics {
        metrics::with_recorder(|r| r as *const dyn metrics::Recorder as *const ())
    } else {
        std::ptr::null()
    };
    let ledger = config.ledger.as_ref().map_or(std::ptr::null(), Ledger::id);
    let register = || Handles {
        recorder,
        ledger,
        method,
        status,
        route: route.clone(),
        histograms: config.metrics.then(|| {
            (
                metrics::histogram!(ALLOCATED_METRIC, labels(method, route, status)),
                metrics::histogram!(NET_METRIC, labels(method, route, status)),
            )
        }),
        entry: config.ledger.as_ref().map(|l| l.entry(route.as_str())),
    };
    let record = |h: &Handles| {
        if let Some((a, n)) = &h.histograms {
            a.record(allocated as f64);
            n.record(net as f64);
        }
        if let Some(entry) = &h.entry {
            entry.record(allocated, net);
        }
    };
    let cached = HANDLES.try_with(|cell| {
        let Ok(mut cache) = cell.try_borrow_mut() else {
            return false;
        };
        let hit = cache.iter().position(|h| {
            std::ptr::eq(h.recorder, recorder)
                && std::ptr::eq(h.ledger, ledger)
                && std::ptr::eq(h.method, method)
                && std::ptr::eq(h.status, status)
                && h.route == *route
        });
        let index = match hit {
            // One step toward the front: hot label sets stay near it.
            Some(i) if i > 0 => {
                cache.swap(i, i - 1);
                i - 1
            }
            Some(i) => i,
            None => {
                if cache.len() == HANDLE_SLOTS {
                    cache.pop();
                }
                cache.push(register());
                cache.len() - 1
            }
        };
        record(&cache[index]);
        true
    });
    if cached != Ok(true) {
        // Thread being torn down (or re-entered): register afresh.
        record(&register());
    }
}

/// Sends the report everywhere it is configured to go.
/// A finished request's figures, borrowing what the account holds: a [`MemoryReport`] (which owns
/// copies) is only built when a callback wants one.
pub(crate) struct Ended<'a> {
    pub(crate) method: &'a Method,
    pub(crate) route: &'a Route,
    pub(crate) path_and_query: &'a PathAndQuery,
    pub(crate) status: Option<StatusCode>,
    pub(crate) outcome: Outcome,
    pub(crate) allocated: u64,
    pub(crate) deallocated: u64,
    pub(crate) handed_off: u64,
    pub(crate) net: i64,
    pub(crate) peak_net: i64,
    pub(crate) polls: u64,
    pub(crate) body_bytes: u64,
    /// When the call started; the end is read only when something consumes the duration (an
    /// enabled event, a callback), once.
    pub(crate) start: Option<quanta::Instant>,
    pub(crate) duration: std::cell::Cell<Option<Duration>>,
    pub(crate) heavy: bool,
}

impl Ended<'_> {
    fn duration(&self) -> Duration {
        if let Some(d) = self.duration.get() {
            return d;
        }
        let d = self.start.map_or(Duration::ZERO, |start| {
            quanta::Instant::now().saturating_duration_since(start)
        });
        self.duration.set(Some(d));
        d
    }

    fn to_report(&self) -> MemoryReport {
        MemoryReport {
            method: self.method.clone(),
            route: self.route.clone(),
            path_and_query: self.path_and_query.clone(),
            status: self.status,
            outcome: self.outcome,
            allocated: self.allocated,
            deallocated: self.deallocated,
            handed_off: self.handed_off,
            net: self.net,
            peak_net: self.peak_net,
            polls: self.polls,
            body_bytes: self.body_bytes,
            duration: self.duration(),
            heavy: self.heavy,
        }
    }
}

pub(crate) fn emit(config: &Config, report: &Ended<'_>) {
    let status = status_label(report.status);
    let method = method_label(report.method);
    record_route(
        config,
        method,
        report.route,
        status,
        report.allocated,
        report.net,
    );
    if config.metrics {
        if report.heavy {
            metrics::counter!(HEAVY_METRIC, labels(method, report.route, status)).increment(1);
        }
        if let Outcome::Aborted(reason) = report.outcome {
            metrics::counter!(
                ABORTED_METRIC,
                "reason" => reason.as_str(),
                "route" => report.route.label()
            )
            .increment(1);
        }
    }

    macro_rules! event {
        ($level:expr, $message:expr) => {
            tracing::event!(
                target: "memory_interceptor",
                $level,
                method = %report.method,
                route = %report.route,
                path = logged_path(config, report.path_and_query),
                status,
                outcome = report.outcome.as_str(),
                allocated = report.allocated,
                deallocated = report.deallocated,
                net = report.net,
                peak_net = report.peak_net,
                polls = report.polls,
                body_bytes = report.body_bytes,
                duration_ms = report.duration().as_secs_f64() * 1e3,
                $message
            )
        };
    }
    match report.outcome {
        Outcome::Aborted(AbortReason::Quota) => event!(
            tracing::Level::WARN,
            "request aborted: over the per-request memory quota"
        ),
        Outcome::Aborted(AbortReason::Pressure) => event!(
            tracing::Level::WARN,
            "request aborted: memory pressure is critical and it held the most memory"
        ),
        Outcome::Aborted(AbortReason::Overcommit) => event!(
            tracing::Level::WARN,
            "request aborted: the memory budget is over capacity and it was the furthest over its reservation"
        ),
        // The governor logged the refusal with its reason when it decided.
        Outcome::Rejected => event!(tracing::Level::DEBUG, "request memory"),
        _ if report.heavy => event!(tracing::Level::WARN, "heavy request"),
        _ => event!(tracing::Level::DEBUG, "request memory"),
    }

    if report.heavy
        && let Some(reclaimer) = &config.reclaimer
    {
        // Non-blocking: starts a rate-limited, single-flight run on the blocking pool, or nothing.
        reclaimer.reclaim_in_background(memory_probe::ReclaimTrigger::HeavyRequest);
    }
    if let Some(on_report) = &config.on_report {
        on_report(&report.to_report());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_and_static() {
        assert_eq!(status_label(Some(StatusCode::OK)), "200");
        assert_eq!(
            status_label(Some(StatusCode::from_u16(999).unwrap())),
            "999"
        );
        assert_eq!(status_label(Some(StatusCode::CONTINUE)), "100");
        assert_eq!(status_label(None), "none");
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(
            method_label(&Method::from_bytes(b"RANDOM").unwrap()),
            "OTHER"
        );
    }

    #[test]
    fn routes_compare_as_text() {
        assert_eq!(Route::from_static("/a"), Route::new("/a"));
        assert_eq!(Route::new("/a/{id}"), "/a/{id}");
        assert_eq!(format!("{:?}", Route::from_static("/x")), "\"/x\"");
    }
}
