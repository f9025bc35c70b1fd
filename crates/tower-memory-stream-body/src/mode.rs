//! How the layer handed a request's body to the handler.

/// The request extension [`StreamBodyLayer`](crate::StreamBodyLayer) inserts into every request
/// it passes on, telling the handler how its body arrives.
///
/// With the `axum` feature it is also an extractor (`BodyMode` or `Option<BodyMode>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BodyMode {
    /// The layer read the whole body into memory (under the memory budget) before calling the
    /// handler, which gets it as a single frame of `len` bytes (none when `len` is 0).
    Buffered {
        /// Body length in bytes.
        len: u64,
    },
    /// The body streams to the handler in frames of at most `chunk_size` bytes, with the size
    /// limit and the slow-body guard applied as it goes.
    Streaming {
        /// The declared length, or `None` for a body of unknown length (chunked) that crossed the
        /// buffer threshold; the bytes read before the switch come first, nothing lost.
        content_length: Option<u64>,
    },
}

impl BodyMode {
    /// Whether the body is already in memory.
    pub fn is_buffered(&self) -> bool {
        matches!(self, BodyMode::Buffered { .. })
    }

    /// Whether the body streams.
    pub fn is_streaming(&self) -> bool {
        matches!(self, BodyMode::Streaming { .. })
    }
}
