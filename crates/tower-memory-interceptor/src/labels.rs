//! Metric labels and where a request's figures are recorded: the bounded `method` and `status`
//! labels, and a per-thread cache of metric handles and ledger entries.

use std::cell::RefCell;

use http::{Method, StatusCode};
use metrics::{Histogram, Label};

use crate::config::Config;
use crate::ledger::{Entry as LedgerEntry, Ledger};
use crate::metrics::{ALLOCATED, NET};
use crate::route::Route;

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
    // Three ASCII digits: the check cannot fail, and costs three byte comparisons.
    std::str::from_utf8(digits).unwrap_or("other")
}

pub(crate) fn labels(method: &'static str, route: &Route, status: &'static str) -> Vec<Label> {
    vec![
        Label::from_static_parts("method", method),
        Label::new("route", route.label()),
        Label::from_static_parts("status", status),
    ]
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
pub(crate) fn record_route(
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
                metrics::histogram!(ALLOCATED.get(), labels(method, route, status)),
                metrics::histogram!(NET.get(), labels(method, route, status)),
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
}
