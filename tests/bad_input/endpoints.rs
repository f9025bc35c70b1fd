//! Endpoints: the heap profile's token, query parameters out of range on every example route,
//! wrong methods and media types, and random paths that must not become metric label values.

use std::time::Duration;

use bytes::Bytes;

use crate::support::health::{metrics, series};
use crate::support::invariants::{MIB, Watch};
use crate::support::load::send;
use crate::support::raw::{Raw, head};
use crate::{matrix_server, run};

const T: Duration = Duration::from_secs(10);
const TOKEN: &str = "matrix-token-0123456789";

async fn status_of(addr: &str, request: &[u8]) -> u16 {
    let mut c = Raw::connect(addr).await;
    c.exchange(request, T).await.expect("a response").status
}

#[test]
fn heap_profile_token() {
    let server = matrix_server(&[("HEAP_PROFILE_TOKEN", TOKEN)]);
    let watch = Watch::of(&server);
    let addr = server.addr.clone();
    run(Duration::from_secs(60), async {
        let path = "/api/debug/pprof/heap";
        for (name, auth, status) in [
            ("heap profile without a token", None, 401),
            (
                "heap profile with a wrong token",
                Some("Bearer matrix-token-0123456780".to_string()),
                401,
            ),
            (
                "heap profile with a prefix of the token",
                Some(format!("Bearer {}", &TOKEN[..10])),
                401,
            ),
            (
                "heap profile with another scheme",
                Some(format!("Basic {TOKEN}")),
                401,
            ),
        ] {
            let case = watch.case(name, 4 * MIB);
            let headers: Vec<String> = auth.iter().map(|a| format!("Authorization: {a}")).collect();
            let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
            assert_eq!(
                status_of(&addr, &head("GET", path, &refs)).await,
                status,
                "{name}"
            );
            case.finish(status.to_string(), 0).await;
        }
        // Dumping and converting the profile allocates; bounded all the same.
        let case = watch.case("heap profile with the right token", 32 * MIB);
        let mut c = Raw::connect(&addr).await;
        let r = c
            .exchange(
                &head("GET", path, &[&format!("Authorization: Bearer {TOKEN}")]),
                T,
            )
            .await
            .expect("a response");
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..2], &[0x1f, 0x8b], "a gzipped profile");
        case.finish(format!("200 ({} bytes of pprof)", r.body.len()), 0)
            .await;
    });
}

#[test]
fn query_parameters_and_methods() {
    let server = matrix_server(&[]);
    let watch = Watch::of(&server);
    let addr = server.addr.clone();
    let bad_numbers = [
        "-1",
        "abc",
        "1e3",
        "1.5",
        "",
        "0x10",
        "99999999999999999999999",
        "18446744073709551616",
        "%00",
        "%ff%fe",
        "1%20",
    ];
    run(Duration::from_secs(60), async {
        let case = watch.case("query parameters out of range, every route", 4 * MIB);
        let mut tried = 0;
        for route in [
            "/api/documents?count=",
            "/api/events?count=",
            "/api/events?interval_ms=",
            "/api/reports/heavy?mib=",
        ] {
            for value in bad_numbers {
                let status = status_of(&addr, &head("GET", &format!("{route}{value}"), &[])).await;
                assert_eq!(status, 400, "{route}{value}");
                tried += 1;
            }
        }
        // In range for the type, out of range for the route.
        for path in [
            "/api/documents?count=100001",
            "/api/events?count=10001",
            "/api/events?interval_ms=60001",
            "/api/reports/heavy?mib=0",
            "/api/reports/heavy?mib=4097",
            "/api/documents?count=1&count=2",
        ] {
            assert_eq!(
                status_of(&addr, &head("GET", path, &[])).await,
                400,
                "{path}"
            );
            tried += 1;
        }
        case.finish(format!("400 for all {tried}"), 0).await;

        let case = watch.case("wrong methods and media types", 4 * MIB);
        let json = |ct: &str, body: &str| {
            let mut b = head(
                "POST",
                "/api/documents",
                &[ct, &format!("Content-Length: {}", body.len())],
            );
            b.extend_from_slice(body.as_bytes());
            b
        };
        for (name, request, status) in [
            ("DELETE /api/hello", head("DELETE", "/api/hello", &[]), 405),
            ("GET /api/uploads", head("GET", "/api/uploads", &[]), 405),
            (
                "JSON without a content type",
                json("X-Nothing: 1", "[1]"),
                415,
            ),
            (
                "JSON as text/plain",
                json("Content-Type: text/plain", "[1]"),
                415,
            ),
            (
                "broken JSON",
                json("Content-Type: application/json", "[1, {"),
                400,
            ),
            (
                "JSON of the wrong shape",
                json("Content-Type: application/json", r#"{"a": 1}"#),
                422,
            ),
        ] {
            assert_eq!(status_of(&addr, &request).await, status, "{name}");
        }
        case.finish("405, 415, 400, 422 as axum answers them", 0)
            .await;
    });
}

#[test]
fn random_paths_create_no_metric_labels() {
    let server = matrix_server(&[]);
    let watch = Watch::of(&server);
    let addr = server.addr.clone();
    run(Duration::from_secs(60), async {
        // One unmatched request per method first: their fixed labels (`<unmatched>`, the method,
        // 404) may appear once.
        for method in ["GET", "POST", "PUT", "DELETE"] {
            let body = (method != "GET").then(|| Bytes::from_static(b"x"));
            let first = send(&addr, method, "/no/such/path", body, T).await.unwrap();
            assert_eq!(first.status, 404);
        }
        // Request series only: the monitor's gauges appear with its samples, whenever they come.
        let requests = |text: String| -> std::collections::BTreeSet<String> {
            series(&text)
                .into_iter()
                .filter(|s| s.starts_with("http_"))
                .collect()
        };
        let before = requests(metrics(&addr).await);

        let case = watch.case("500 random paths", 4 * MIB);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for i in 0..500u32 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let method = ["GET", "POST", "PUT", "DELETE"][(seed % 4) as usize];
            let path = match i % 5 {
                0 => format!("/random/{seed:x}"),
                1 => format!("/api/{seed:x}/x?y={i}"),
                2 => format!("/api/hello/{seed}"),
                3 => format!("/%{:02x}%{:02x}/{i}", seed as u8, (seed >> 8) as u8),
                _ => format!("/{}", "a".repeat((seed % 4000) as usize)),
            };
            let body = (method != "GET").then(|| Bytes::from_static(b"x"));
            let r = send(&addr, method, &path, body, T)
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            assert!(
                matches!(r.status, 404 | 405 | 400),
                "{method} {path}: {}",
                r.status
            );
        }
        let after = requests(metrics(&addr).await);
        let new: Vec<&String> = after.difference(&before).collect();
        // Counters of the fixed labels move; no series is new, no route label value either.
        assert!(new.is_empty(), "new series: {new:?}");
        assert_eq!(route_labels(&before), route_labels(&after));
        assert!(
            !after.iter().any(|s| s.contains("/random/")),
            "raw paths leaked into labels"
        );
        case.finish(
            format!(
                "404, the same {} request series before and after",
                before.len()
            ),
            0,
        )
        .await;
    });
}

/// The values of the `route` label across the series.
fn route_labels(series: &std::collections::BTreeSet<String>) -> std::collections::BTreeSet<String> {
    series
        .iter()
        .filter_map(|s| s.split("route=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}
