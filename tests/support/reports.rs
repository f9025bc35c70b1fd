//! The interceptor's per-request reports as a running example logs them: start the server with
//! `LOG_FORMAT=json` and `RUST_LOG` including `memory_interceptor=debug` (and `server=info`, the
//! line with the address), and every request ends
//! in one JSON line with target `memory_interceptor` (route, status, outcome, figures).
#![allow(dead_code)]

use std::time::{Duration, Instant};

use super::Server;

/// The environment that makes the example log every report.
pub(crate) const REPORT_LOGS: &[(&str, &str)] = &[
    ("LOG_FORMAT", "json"),
    ("RUST_LOG", "warn,server=info,memory_interceptor=debug"),
];

/// The reports logged so far for `route` (the matched route, e.g. `/api/uploads`).
pub(crate) fn reports(server: &Server, route: &str) -> Vec<serde_json::Value> {
    server
        .lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["target"] == "memory_interceptor" && v["route"] == route)
        .collect()
}

/// Waits (at most 5 s) for `n` reports of `route`, then 200 ms more to see that no more come.
pub(crate) async fn exactly(server: &Server, route: &str, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while reports(server, route).len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let found = reports(server, route);
    assert_eq!(found.len(), n, "reports of {route}: {found:#?}");
    found
}
