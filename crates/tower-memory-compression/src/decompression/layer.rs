//! [`RequestDecompressionLayer`]: configuration and the `tower::Layer`.

use std::sync::Arc;

use tower_layer::Layer;

use super::config::Config;
use super::service::RequestDecompression;
use crate::Encoding;
use crate::limits::DecodeLimits;

/// Decodes compressed request bodies (`Content-Encoding` gzip, deflate, br, zstd, stacked in
/// any order), with the caps of [`DecodeLimits`] enforced inside the decoder.
///
/// - A coding the layer does not accept: `415 Unsupported Media Type` with an
///   `Accept-Encoding` header listing those it does (RFC 9110 section 15.5.16); the inner
///   service is not called.
/// - A cap crossed while the handler reads: `413 Content Too Large`.
/// - Corrupt or truncated data: `400 Bad Request`.
///
/// ```
/// use tower_memory_compression::RequestDecompressionLayer;
///
/// let layer = RequestDecompressionLayer::new()
///     .max_decoded_bytes(16 * 1024 * 1024)
///     .max_ratio(50)
///     .zstd_window_log_max(22);
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
pub struct RequestDecompressionLayer {
    config: Arc<Config>,
}

impl Default for RequestDecompressionLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestDecompressionLayer {
    /// Accepts every compiled coding, default [`DecodeLimits`], at most 2 stacked codings.
    #[must_use]
    pub fn new() -> Self {
        RequestDecompressionLayer {
            config: Arc::new(Config::default()),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Config)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// All caps at once.
    #[must_use]
    pub fn limits(self, limits: DecodeLimits) -> Self {
        self.edit(|c| c.limits = limits)
    }

    /// Most decoded bytes per request. Default 64 MiB.
    #[must_use]
    pub fn max_decoded_bytes(self, bytes: u64) -> Self {
        self.edit(|c| c.limits.max_decoded_bytes = bytes)
    }

    /// Largest decoded/encoded ratio (enforced past the grace of 1 MiB). Default 100; 0 turns
    /// the check off.
    #[must_use]
    pub fn max_ratio(self, ratio: u64) -> Self {
        self.edit(|c| c.limits.max_ratio = ratio)
    }

    /// Largest zstd window, base-two logarithm. Default 23 (8 MiB).
    #[must_use]
    pub fn zstd_window_log_max(self, log: u32) -> Self {
        self.edit(|c| c.limits.zstd_window_log_max = log)
    }

    /// Largest brotli window, base-two logarithm, 10 to 24. Default 24.
    #[must_use]
    pub fn brotli_window_bits_max(self, bits: u32) -> Self {
        self.edit(|c| c.limits.brotli_window_bits_max = bits)
    }

    /// How many codings may be stacked (`Content-Encoding: gzip, gzip`). Default 2; more is
    /// answered 415.
    #[must_use]
    pub fn max_codings(self, n: usize) -> Self {
        self.edit(|c| c.max_codings = n)
    }

    /// The codings accepted (only compiled ones count).
    #[must_use]
    pub fn accept(self, codings: &[Encoding]) -> Self {
        let accepted = codings
            .iter()
            .copied()
            .filter(|e| *e != Encoding::Identity && e.can_decompress())
            .collect();
        self.edit(|c| c.accepted = accepted)
    }
}

impl<S> Layer<S> for RequestDecompressionLayer {
    type Service = RequestDecompression<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestDecompression::new(inner, Arc::clone(&self.config))
    }
}
