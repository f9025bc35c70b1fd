//! When a compressed stream's output is sent.

use std::time::Duration;

/// How compressed output is framed and when a streaming response is flushed.
///
/// Output is coalesced into frames of at least [`frame_size`](Self::frame_size) bytes (or the
/// whole body), so a large response goes out in a few large writes instead of many 4 KiB
/// ones. A body that trickles (Server-Sent Events, NDJSON, long polling) would then sit in the
/// compressor, so the stream is also flushed (a codec sync flush, decodable at once by the
/// client) when its input has paused for [`idle`](Self::idle), or when the oldest unflushed
/// input is [`max_latency`](Self::max_latency) old while input keeps coming.
///
/// The layer's policy can be overridden per response by putting a `FlushPolicy` into the
/// response's extensions:
///
/// ```
/// use std::time::Duration;
/// use tower_memory_compression::FlushPolicy;
///
/// let mut response = http::Response::new(());
/// // flush every event as soon as the handler waits for the next one
/// response.extensions_mut().insert(FlushPolicy::immediate());
/// assert_eq!(FlushPolicy::immediate().idle, Some(Duration::ZERO));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushPolicy {
    /// Smallest output frame sent before the end of the body. Default 16 KiB.
    pub frame_size: usize,
    /// Flush when input has paused this long with data not yet flushed. `Some(ZERO)`: as soon
    /// as the body has nothing ready. `None`: never on a pause. Default 25 ms.
    pub idle: Option<Duration>,
    /// Flush when the oldest unflushed input is this old, even if input keeps coming.
    /// `None`: no bound. Default 100 ms.
    pub max_latency: Option<Duration>,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy {
            frame_size: 16 * 1024,
            idle: Some(Duration::from_millis(25)),
            max_latency: Some(Duration::from_millis(100)),
        }
    }
}

impl FlushPolicy {
    /// Flush as soon as the body has nothing ready (interactive streams).
    #[must_use]
    pub fn immediate() -> Self {
        FlushPolicy {
            idle: Some(Duration::ZERO),
            max_latency: Some(Duration::ZERO),
            ..FlushPolicy::default()
        }
    }

    /// Never flush on time: output goes out in frames of `frame_size` and at the end (large
    /// downloads, where latency does not matter and every flush costs a few bytes).
    #[must_use]
    pub fn never() -> Self {
        FlushPolicy {
            idle: None,
            max_latency: None,
            ..FlushPolicy::default()
        }
    }

    /// The same policy with another idle delay.
    #[must_use]
    pub fn with_idle(self, idle: Duration) -> Self {
        FlushPolicy {
            idle: Some(idle),
            ..self
        }
    }

    /// The same policy with another frame size.
    #[must_use]
    pub fn with_frame_size(self, frame_size: usize) -> Self {
        FlushPolicy { frame_size, ..self }
    }

    /// The same policy with another latency bound.
    #[must_use]
    pub fn with_max_latency(self, max_latency: Option<Duration>) -> Self {
        FlushPolicy {
            max_latency,
            ..self
        }
    }
}
