//! The one convention for the workspace's memory 503s.
//!
//! Three layers refuse work for lack of memory (the interceptor's governor and pressure aborts,
//! tower-memory-health's pressure shedding, the body layer's exhausted budget). A client, a load
//! balancer or a dashboard should not have to tell them apart by format, so they all answer the
//! same way: status 503, `Retry-After` in whole seconds (rounded up, at least 1), and a JSON body
//! `{"error": "...", "reason": "...", "retry_after_seconds": N}` with
//! `Content-Type: application/json`. This crate has no HTTP dependency; the layers build the
//! response from these pieces.

use std::fmt::Write as _;
use std::time::Duration;

/// The default `Retry-After` of every memory 503: one second. Pressure is re-evaluated at least
/// that often (the monitor's default interval, the kernel's notifications sooner), and a budget
/// frees as soon as a request ends, so a longer wait only adds latency to a retry.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The `Content-Type` of a memory 503's body.
pub const OVERLOAD_CONTENT_TYPE: &str = "application/json";

/// The value of `Retry-After` for `after`: whole seconds, rounded up, at least 1.
pub fn retry_after_seconds(after: Duration) -> u64 {
    let whole = after.as_secs() + u64::from(after.subsec_nanos() > 0);
    whole.max(1)
}

/// The JSON body of a memory 503: `error` a sentence for people, `reason` a stable token for
/// programs (the same token the layer's metrics use as a label), `retry_after_seconds` the value
/// of the `Retry-After` header.
pub fn overload_body(error: &str, reason: &str, retry_after_seconds: u64) -> String {
    let mut body = String::with_capacity(error.len() + reason.len() + 64);
    body.push_str("{\"error\":");
    push_json_string(&mut body, error);
    body.push_str(",\"reason\":");
    push_json_string(&mut body, reason);
    let _ = write!(body, ",\"retry_after_seconds\":{retry_after_seconds}}}");
    body
}

fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_at_least_one() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(250)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(5)), 5);
    }

    #[test]
    fn body_is_json_with_escaped_text() {
        let body = overload_body("budget \"full\"\n\u{1}", "budget_exhausted", 3);
        assert_eq!(
            body,
            r#"{"error":"budget \"full\"\n\u0001","reason":"budget_exhausted","retry_after_seconds":3}"#
        );
    }
}
