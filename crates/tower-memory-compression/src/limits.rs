//! The caps a request decoder enforces ([`DecodeLimits`]) and why decoding stops
//! ([`DecodeError`]): the configuration and error types at the bottom of the decoding side.

use http::StatusCode;

use crate::Encoding;

/// The caps a [`Decoder`](crate::Decoder) enforces.
///
/// Built from [`Default`] (the defaults are stated on each field) and the builder methods:
///
/// ```
/// use tower_memory_compression::DecodeLimits;
///
/// let limits = DecodeLimits::default().max_decoded_bytes(1 << 20).max_ratio(0);
/// assert_eq!(limits.max_decoded_bytes, 1 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecodeLimits {
    /// Most bytes any decoding stage may produce. Default 64 MiB.
    pub max_decoded_bytes: u64,
    /// Largest decoded/encoded ratio, enforced once [`ratio_grace_bytes`](Self::ratio_grace_bytes)
    /// are decoded. Default 100 (100:1). `0` disables the check.
    pub max_ratio: u64,
    /// Decoded bytes below which the ratio is not checked (tiny bodies compress extremely well).
    /// Default 1 MiB.
    pub ratio_grace_bytes: u64,
    /// Largest zstd window (base-two logarithm) a frame may declare. Default 23 (8 MiB, what
    /// RFC 8878 asks decoders to support).
    pub zstd_window_log_max: u32,
    /// Largest brotli window (base-two logarithm), 10 to 24. Default 24 (16 MiB, the largest a
    /// standard stream can declare). Large-window streams (RFC 7932 extension, up to 1 GiB) are
    /// always refused.
    pub brotli_window_bits_max: u32,
    /// Size of the decoded chunks handed on. Default 64 KiB.
    pub chunk_size: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_decoded_bytes: 64 * 1024 * 1024,
            max_ratio: 100,
            ratio_grace_bytes: 1024 * 1024,
            zstd_window_log_max: 23,
            brotli_window_bits_max: 24,
            chunk_size: 64 * 1024,
        }
    }
}

impl DecodeLimits {
    /// Sets [`max_decoded_bytes`](Self::max_decoded_bytes).
    #[must_use]
    pub fn max_decoded_bytes(mut self, bytes: u64) -> Self {
        self.max_decoded_bytes = bytes;
        self
    }

    /// Sets [`max_ratio`](Self::max_ratio) (`0`: no ratio check).
    #[must_use]
    pub fn max_ratio(mut self, ratio: u64) -> Self {
        self.max_ratio = ratio;
        self
    }

    /// Sets [`ratio_grace_bytes`](Self::ratio_grace_bytes).
    #[must_use]
    pub fn ratio_grace_bytes(mut self, bytes: u64) -> Self {
        self.ratio_grace_bytes = bytes;
        self
    }

    /// Sets [`zstd_window_log_max`](Self::zstd_window_log_max).
    #[must_use]
    pub fn zstd_window_log_max(mut self, log: u32) -> Self {
        self.zstd_window_log_max = log;
        self
    }

    /// Sets [`brotli_window_bits_max`](Self::brotli_window_bits_max).
    #[must_use]
    pub fn brotli_window_bits_max(mut self, bits: u32) -> Self {
        self.brotli_window_bits_max = bits;
        self
    }

    /// Sets [`chunk_size`](Self::chunk_size).
    #[must_use]
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes;
        self
    }
}

/// Why decoding stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The decoded body would exceed [`DecodeLimits::max_decoded_bytes`].
    #[error("decoded body exceeds {limit} bytes")]
    TooLarge {
        /// The cap in bytes.
        limit: u64,
    },
    /// The decoded/encoded ratio exceeds [`DecodeLimits::max_ratio`].
    #[error("compression ratio exceeds {limit}:1 ({decoded} bytes from {encoded})")]
    RatioExceeded {
        /// The cap.
        limit: u64,
        /// Decoded bytes so far.
        decoded: u64,
        /// Encoded bytes read so far.
        encoded: u64,
    },
    /// A zstd frame or brotli stream declares a window above the cap, or is a large-window
    /// brotli stream.
    #[error("{encoding} stream needs a window above the limit of 2^{limit_log} bytes")]
    WindowTooLarge {
        /// The coding.
        encoding: Encoding,
        /// The cap, base-two logarithm.
        limit_log: u32,
    },
    /// The data is not valid for its coding.
    #[error("corrupt {encoding} data: {reason}")]
    Corrupt {
        /// The coding.
        encoding: Encoding,
        /// What the codec said.
        reason: String,
    },
    /// The body ended inside a compressed stream.
    #[error("{encoding} data ends early")]
    Truncated {
        /// The coding.
        encoding: Encoding,
    },
    /// The coding is not supported by this decoder.
    #[error("unsupported content coding {0:?}")]
    Unsupported(String),
}

impl DecodeError {
    /// Whether a cap stopped decoding (as opposed to bad data).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            DecodeError::TooLarge { .. }
                | DecodeError::RatioExceeded { .. }
                | DecodeError::WindowTooLarge { .. }
        )
    }

    /// The status a server answers with: 413 for a cap, 415 for an unsupported coding, 400 for
    /// bad data.
    pub fn status(&self) -> StatusCode {
        match self {
            DecodeError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            e if e.is_limit() => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}
