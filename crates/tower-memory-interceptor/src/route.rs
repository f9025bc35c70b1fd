//! `Route`: the label a request is counted under, a matched template, never a raw path.

use std::fmt;
use std::sync::Arc;

use metrics::SharedString;

/// The route label of requests whose route is unknown (no axum `MatchedPath`, no classifier
/// match, no [`RequestMemory::set_route`](crate::RequestMemory::set_route)). Raw paths are never
/// used as labels: clients could create any number of them.
pub const UNMATCHED_ROUTE: &str = "<unmatched>";

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

    /// The text as a metric label value, without a copy.
    pub(crate) fn label(&self) -> SharedString {
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

/// The `Route` of an axum matched path. A server has few routes and they come back all the time:
/// each thread keeps the last ones it saw (bounded, move-to-front) instead of allocating a copy
/// per request.
#[cfg(feature = "axum")]
pub(crate) fn matched_route(path: &str) -> Route {
    const SLOTS: usize = 32;
    thread_local! {
        static ROUTES: std::cell::RefCell<Vec<Route>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    ROUTES
        .try_with(|cell| {
            let mut routes = cell.try_borrow_mut().ok()?;
            if let Some(i) = routes.iter().position(|r| r.as_str() == path) {
                let at = i.saturating_sub(1);
                routes.swap(i, at);
                return Some(routes[at].clone());
            }
            let route = Route::new(path);
            if routes.len() == SLOTS {
                routes.pop();
            }
            routes.push(route.clone());
            Some(route)
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| Route::new(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_compare_as_text() {
        assert_eq!(Route::from_static("/a"), Route::new("/a"));
        assert_eq!(Route::new("/a/{id}"), "/a/{id}");
        assert_eq!(format!("{:?}", Route::from_static("/x")), "\"/x\"");
    }
}
