//! Reading a running example's state through its own endpoints: the `/api/health` report, the
//! budget section, liveness and the Prometheus text.
#![allow(dead_code)]

use std::time::Duration;

use super::load;

/// `GET /api/health` as JSON (200 or, under critical pressure, 503: both carry the report).
pub(crate) async fn health(addr: &str) -> serde_json::Value {
    let answer = load::send(addr, "GET", "/api/health", None, Duration::from_secs(10))
        .await
        .expect("/api/health answers");
    assert!(
        matches!(answer.status, 200 | 503),
        "/api/health: {}",
        answer.status
    );
    serde_json::from_slice(&answer.body).expect("JSON")
}

/// Whether the governor's budget holds nothing and nobody waits or is parked.
pub(crate) fn budget_is_full(health: &serde_json::Value) -> bool {
    let b = &health["budget"];
    b["charged_bytes"] == 0
        && b["reserved_bytes"] == 0
        && b["queue"]["length"] == 0
        && b["parked"] == 0
}

/// Waits (at most 5 s) until the budget holds nothing and nobody waits: every byte went back.
pub(crate) async fn budget_back_to_full(addr: &str) -> serde_json::Value {
    for _ in 0..100 {
        let h = health(addr).await;
        if budget_is_full(&h) {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("budget not back to full: {}", health(addr).await["budget"]);
}

/// `GET /api/health/live`'s status.
pub(crate) async fn live(addr: &str) -> u16 {
    load::send(
        addr,
        "GET",
        "/api/health/live",
        None,
        Duration::from_secs(10),
    )
    .await
    .map(|a| a.status)
    .unwrap_or_else(|e| panic!("/api/health/live: {e}"))
}

/// `GET /api/metrics` as text.
pub(crate) async fn metrics(addr: &str) -> String {
    let answer = load::send(addr, "GET", "/api/metrics", None, Duration::from_secs(10))
        .await
        .expect("/api/metrics answers");
    assert_eq!(answer.status, 200);
    String::from_utf8(answer.body.to_vec()).expect("UTF-8 exposition")
}

/// The value of the sample `name` (with exactly `labels`, e.g. `{reason="too_large"}`, or ""),
/// 0 when absent.
pub(crate) fn sample(text: &str, name: &str, labels: &str) -> f64 {
    let key = format!("{name}{labels} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map(|v| v.trim().parse().expect("numeric sample"))
        .unwrap_or(0.0)
}

/// Every series (name and labels) of the exposition, comments left out.
pub(crate) fn series(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_string()))
        .collect()
}
