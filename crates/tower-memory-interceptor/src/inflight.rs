//! `InFlight`: what the requests still running hold now, from the registry of in-flight accounts.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Method;

use crate::registry::Registry;
use crate::route::Route;

/// The requests in flight that hold memory now: the "what is holding memory" view, next to the
/// [`Ledger`](crate::Ledger)'s per-route history. Made by
/// [`MemoryInterceptorLayer::in_flight`](crate::MemoryInterceptorLayer::in_flight); cloning
/// shares it.
///
/// It lists the requests in the layer's registry: those that held at least
/// [`min_bytes`](Self::min_bytes) at a poll boundary (the governor's admission floor, 64 KiB by
/// default, or 1 MiB with pressure aborts alone) or reserved memory at admission. Small requests
/// never enter it, so keeping it costs them nothing. A listing locks each registry shard briefly:
/// call it for a health report or a scrape, not per request.
#[derive(Clone)]
pub struct InFlight {
    registry: Arc<Registry>,
    min_bytes: u64,
}

/// One request in flight, as [`InFlight::largest`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InFlightRequest {
    /// The request method.
    pub method: Method,
    /// The route label (never the raw path).
    pub route: Route,
    /// How long it has been running.
    pub age: Duration,
    /// Bytes it holds now (as of its last poll boundary).
    pub held_bytes: u64,
    /// The most it has held at a poll boundary.
    pub peak_bytes: u64,
}

/// What the requests in flight of one route hold, as [`InFlight::by_route`] sums it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouteInFlight {
    /// Requests listed.
    pub requests: usize,
    /// Bytes they hold now, summed.
    pub held_bytes: u64,
}

impl InFlight {
    pub(crate) fn new(registry: Arc<Registry>, min_bytes: u64) -> InFlight {
        InFlight {
            registry,
            min_bytes,
        }
    }

    /// Requests join the listing once they hold this many bytes (or reserve memory at
    /// admission).
    pub fn min_bytes(&self) -> u64 {
        self.min_bytes
    }

    /// The `n` requests holding the most now, largest first.
    pub fn largest(&self, n: usize) -> Vec<InFlightRequest> {
        self.registry
            .ranked(|a| Some(a.held()))
            .into_iter()
            .take(n)
            .map(|(held, a)| InFlightRequest {
                method: a.method.clone(),
                route: a.route(),
                age: a.age(),
                held_bytes: held.max(0) as u64,
                peak_bytes: a.peak().max(0) as u64,
            })
            .collect()
    }

    /// The listed requests' held bytes, summed per route.
    pub fn by_route(&self) -> BTreeMap<Route, RouteInFlight> {
        let mut routes: BTreeMap<Route, RouteInFlight> = BTreeMap::new();
        for (held, a) in self.registry.ranked(|a| Some(a.held())) {
            let entry = routes.entry(a.route()).or_default();
            entry.requests += 1;
            entry.held_bytes += held.max(0) as u64;
        }
        routes
    }
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlight")
            .field("min_bytes", &self.min_bytes)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for InFlightRequest {
    /// `GET /api/reports/heavy held=104857600 peak=104857600 age=1.204s`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} held={} peak={} age={:.3}s",
            self.method,
            self.route,
            self.held_bytes,
            self.peak_bytes,
            self.age.as_secs_f64()
        )
    }
}
