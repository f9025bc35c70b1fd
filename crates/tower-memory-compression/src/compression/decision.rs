//! The skip decision: whether a response is compressed, and if so with what. Every reason a
//! response goes out uncompressed before its body is read is decided here, in order of cost;
//! the reasons found while reading ahead (below the threshold, incompressible) are in
//! `read_ahead.rs`.

use std::sync::Arc;

use http::StatusCode;
use http::header::{CONTENT_ENCODING, CONTENT_RANGE, CONTENT_TYPE};
use http::response::Parts;
use http_body::Body;
use tower_memory_probe::Pressure;

use super::config::Settings;
use super::flush::FlushPolicy;
use super::skip::{
    STREAMING_TYPES, SkipCompression, SkipReason, essence, has_no_transform, is_grpc,
};
use crate::codec::EncoderConfig;
use crate::negotiation::Negotiated;

/// What the service knew when it called the inner service.
pub(crate) struct RequestInfo {
    pub(crate) settings: Arc<Settings>,
    pub(crate) negotiated: Negotiated,
    pub(crate) head: bool,
}

/// What to do with a response.
pub(crate) enum Verdict {
    /// Send it as it is, counted under `reason`; `vary`: the answer depended on the request's
    /// `Accept-Encoding`, so the response says so.
    Skip { reason: SkipReason, vary: bool },
    /// Read the body ahead until the rest can be decided, then compress it this way (or not).
    ReadAhead(Plan),
}

/// How a response that passed the decision is to be compressed.
pub(crate) struct Plan {
    pub(crate) config: EncoderConfig,
    pub(crate) policy: FlushPolicy,
    /// A type that trickles (SSE, NDJSON): compressed even if it pauses below the threshold.
    pub(crate) streaming_type: bool,
    /// The body's exact length, when known.
    pub(crate) known: Option<u64>,
}

pub(crate) fn decide<B: Body>(info: &RequestInfo, parts: &Parts, body: &B) -> Verdict {
    let settings = &info.settings;
    let skip = |reason: SkipReason, vary: bool| Verdict::Skip { reason, vary };
    if !settings.enabled || parts.extensions.get::<SkipCompression>().is_some() {
        return skip(SkipReason::Disabled, false);
    }
    if info.head {
        return skip(SkipReason::Head, false);
    }
    let status = parts.status;
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return skip(SkipReason::Status, false);
    }
    // First of the rest because it is the cheapest and, for small API answers, the common case:
    // a body known to be under the threshold is never compressed, whatever the client accepts,
    // so it needs no `Vary` and no look at its headers.
    let known = body.size_hint().exact();
    if body.is_end_stream() || known.is_some_and(|n| n < settings.threshold) {
        return skip(SkipReason::BelowThreshold, false);
    }
    let headers = &parts.headers;
    if headers
        .get(CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return skip(SkipReason::AlreadyEncoded, false);
    }
    if headers.contains_key(CONTENT_RANGE) {
        return skip(SkipReason::ContentRange, false);
    }
    if has_no_transform(headers) {
        return skip(SkipReason::NoTransform, false);
    }
    let media = essence(
        headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    );
    if is_grpc(media) {
        return skip(SkipReason::Grpc, false);
    }
    if settings.skip.skips_essence(media) {
        return skip(SkipReason::ContentType, false);
    }
    let streaming_type = STREAMING_TYPES
        .iter()
        .any(|t| media.eq_ignore_ascii_case(t));
    let Negotiated::Encode(encoding) = info.negotiated else {
        return skip(SkipReason::NotAccepted, true);
    };
    let pressure = settings.pressure();
    if pressure == Pressure::Critical {
        return skip(SkipReason::Pressure, true);
    }
    let Some(config) = settings.encoder_config(encoding, pressure) else {
        return skip(SkipReason::NotAccepted, true);
    };
    #[cfg(feature = "compression-zstd")]
    settings.release_idle_contexts(encoding, pressure);
    let policy = parts
        .extensions
        .get::<FlushPolicy>()
        .copied()
        .unwrap_or(settings.flush);
    Verdict::ReadAhead(Plan {
        config,
        policy,
        streaming_type,
        known,
    })
}
