//! The bad-input matrix: the example server, as a real process on 127.0.0.1, against inputs that
//! are malformed, oversized, slow or hostile, one case per row. Each case asserts the status the
//! client gets, a bound on the server's peak RSS growth, that no temporary file is left, that the
//! budget (the governor's, which buffered bodies share) is back to full, and that
//! `/api/health/live` still answers 200 (tests/support/invariants.rs). Raw TCP where a client
//! library would refuse to send the input; h2 for HTTP/2 frames.
//!
//! Each test prints its rows as `case | name | answer | peak growth (bound)`; the README's
//! reliability table summarises them.

#[path = "../support/mod.rs"]
mod support;

mod encodings;
mod endpoints;
mod framing;
mod http2;
mod limits;
mod slow;

use std::time::Duration;

use support::Server;

/// The server every group starts from: limits small enough that a case reaches them quickly.
/// Bodies over 4 MiB (or of unknown length, past 4 MiB) stream, over 16 MiB get 413; requests
/// share a 64 MiB budget.
pub const MATRIX_ENV: &[(&str, &str)] = &[
    ("MAX_BODY_SIZE", "16777216"),
    ("STREAM_BUFFER_THRESHOLD", "4194304"),
    ("MEMORY_REQUEST_BUDGET", "67108864"),
];

/// The example server with [`MATRIX_ENV`] and then `extra` (later values win).
pub(crate) fn matrix_server(extra: &[(&str, &str)]) -> Server {
    let env: Vec<(&str, &str)> = MATRIX_ENV.iter().chain(extra).copied().collect();
    Server::start("server", &env)
}

/// Runs a group's cases on a runtime of its own, bounded in time.
pub fn run<F: std::future::Future<Output = ()>>(limit: Duration, f: F) {
    test_support::run_bounded("the group", limit, f)
}
