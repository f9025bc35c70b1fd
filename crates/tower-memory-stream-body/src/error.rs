//! [`BodyError`]: what the handler sees when a request body fails under the layer.

use std::time::Duration;

use http::StatusCode;
use tower_memory_probe::BoxError;

/// What went wrong with a request body the handler was reading.
///
/// When the handler sees one of these, [`StreamBodyLayer`](crate::StreamBodyLayer) answers the
/// client itself with [`BodyError::status`], whatever response the handler makes of it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body grew past `max_body_size`.
    #[error("request body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// No data arrived within `idle_timeout`.
    #[error("no request body data for {0:?}")]
    IdleTimeout(Duration),
    /// The client sent slower than `min_rate` once the grace period had passed.
    #[error(
        "request body too slow: {received} bytes in {waited:?} of waiting, under {min_rate} B/s"
    )]
    TooSlow {
        /// Bytes received.
        received: u64,
        /// Time spent waiting on the client.
        waited: Duration,
        /// The configured minimum in bytes per second.
        min_rate: u64,
    },
    /// The underlying body failed: the client disconnected or sent fewer bytes than declared.
    #[error("reading the request body failed: {0}")]
    Read(#[source] BoxError),
    /// The body ended before, or ran past, its declared `Content-Length` (hyper enforces the
    /// length itself; a body type that does not is checked here).
    #[error(
        "request body of {received} bytes does not match its declared length of {declared} bytes"
    )]
    LengthMismatch {
        /// The declared length.
        declared: u64,
        /// Bytes received (when running past the length: at least this many).
        received: u64,
    },
}

impl BodyError {
    /// The status the layer answers with: 413, 408 or 400.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::IdleTimeout(_) | BodyError::TooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
            BodyError::Read(_) | BodyError::LengthMismatch { .. } => StatusCode::BAD_REQUEST,
        }
    }
}
