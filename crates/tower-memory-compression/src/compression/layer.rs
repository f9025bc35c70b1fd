//! [`CompressionLayer`]: configuration and the `tower::Layer`.

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;
use tower_memory_probe::PressureSignal;

use super::config::Settings;
use super::flush::FlushPolicy;
use super::service::Compression;
use super::skip::SkipRules;
use crate::Encoding;
#[cfg(feature = "compression-zstd")]
use crate::codec::ZstdPool;
use crate::params::{BrotliParams, DeflateParams, ZstdParams};

/// Compresses response bodies with the best coding the client accepts.
///
/// Defaults: gzip, deflate, br and zstd (those compiled in), preferred in the order zstd, br,
/// gzip, deflate when the client rates them equally; levels gzip 6, deflate 6, br 4, zstd 3;
/// threshold 1024 bytes; the default [`SkipRules`] and [`FlushPolicy`]; no pressure signal.
///
/// ```
/// use tower_memory_compression::{CompressionLayer, DeflateParams, Encoding};
///
/// let layer = CompressionLayer::new()
///     .level(5)                                   // gzip and deflate (COMPRESSION_LEVEL)
///     .threshold(2048)                            // COMPRESSION_THRESHOLD
///     .gzip_params(DeflateParams::default().mem_level(9))
///     .preference(&[Encoding::Brotli, Encoding::Gzip])   // only these two, br first
///     .pressure(tower_memory_probe::PressureSignal::new());
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct CompressionLayer {
    settings: Arc<Settings>,
}

impl std::fmt::Debug for CompressionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.settings.fmt(f)
    }
}

impl Default for CompressionLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CompressionLayer {
    /// A layer with the defaults.
    #[must_use]
    pub fn new() -> Self {
        CompressionLayer {
            settings: Arc::new(Settings::default()),
        }
    }

    pub(crate) fn settings(&self) -> &Settings {
        &self.settings
    }

    fn edit(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        let settings = Arc::make_mut(&mut self.settings);
        f(settings);
        #[cfg(feature = "compression-zstd")]
        {
            // The pool follows the (possibly changed) size and pressure signal.
            settings.zstd_pool = Arc::new(ZstdPool::new(
                settings.zstd.pool_size,
                settings.pressure.clone(),
            ));
        }
        self
    }

    /// Turns compression off (`COMPRESSION_ENABLED=false`): every response passes through,
    /// counted as skipped with reason `disabled`.
    #[must_use]
    pub fn enabled(self, enabled: bool) -> Self {
        self.edit(|s| s.enabled = enabled)
    }

    /// The codings to offer, in the order preferred when the client rates several equally.
    /// Codings not compiled in are dropped; `identity` is ignored (it is always possible unless
    /// the client refuses it).
    #[must_use]
    pub fn preference(self, codings: &[Encoding]) -> Self {
        let mut offered = Vec::new();
        for &e in codings {
            if e != Encoding::Identity && e.can_compress() && !offered.contains(&e) {
                offered.push(e);
            }
        }
        self.edit(|s| s.offered = offered)
    }

    fn toggle(self, coding: Encoding, on: bool) -> Self {
        self.edit(|s| {
            s.offered.retain(|e| *e != coding);
            if on && coding.can_compress() {
                s.offered.push(coding);
            }
        })
    }

    /// Offers gzip or not (appended last in preference when turned on again).
    #[must_use]
    pub fn gzip(self, on: bool) -> Self {
        self.toggle(Encoding::Gzip, on)
    }

    /// Offers deflate or not.
    #[must_use]
    pub fn deflate(self, on: bool) -> Self {
        self.toggle(Encoding::Deflate, on)
    }

    /// Offers br or not.
    #[must_use]
    pub fn br(self, on: bool) -> Self {
        self.toggle(Encoding::Brotli, on)
    }

    /// Offers zstd or not.
    #[must_use]
    pub fn zstd(self, on: bool) -> Self {
        self.toggle(Encoding::Zstd, on)
    }

    /// The gzip and deflate level, 0 to 9 (`COMPRESSION_LEVEL`). Default 6.
    #[must_use]
    pub fn level(self, level: u32) -> Self {
        self.edit(|s| {
            s.gzip.level = level;
            s.deflate.level = level;
        })
    }

    /// gzip parameters.
    #[must_use]
    pub fn gzip_params(self, params: DeflateParams) -> Self {
        self.edit(|s| s.gzip = params)
    }

    /// deflate (zlib) parameters.
    #[must_use]
    pub fn deflate_params(self, params: DeflateParams) -> Self {
        self.edit(|s| s.deflate = params)
    }

    /// brotli parameters.
    #[must_use]
    pub fn brotli_params(self, params: BrotliParams) -> Self {
        self.edit(|s| s.brotli = params)
    }

    /// zstd parameters.
    #[must_use]
    pub fn zstd_params(self, params: ZstdParams) -> Self {
        self.edit(|s| s.zstd = params)
    }

    /// Bodies smaller than this are never compressed (`COMPRESSION_THRESHOLD`). Default 1024.
    ///
    /// A body of known size below it passes through at once. A body of unknown size is held
    /// until this many bytes have arrived (then it is compressed) or it ends (then it is sent
    /// as it is). If it pauses for longer than the hold delay first, a streaming type
    /// (`text/event-stream`, NDJSON) is compressed, anything else is sent as it is.
    #[must_use]
    pub fn threshold(self, bytes: u64) -> Self {
        self.edit(|s| s.threshold = bytes)
    }

    /// How long a body of unknown size may pause below the threshold before the decision is
    /// made without it. Default 25 ms.
    #[must_use]
    pub fn hold_delay(self, delay: Duration) -> Self {
        self.edit(|s| s.hold = delay)
    }

    /// Content types that are not compressed.
    #[must_use]
    pub fn skip_rules(self, rules: SkipRules) -> Self {
        self.edit(|s| s.skip = rules)
    }

    /// Framing and flushing of compressed output (overridable per response).
    #[must_use]
    pub fn flush_policy(self, policy: FlushPolicy) -> Self {
        self.edit(|s| s.flush = policy)
    }

    /// Reacts to memory pressure: under `Warning`, new responses use the fastest level and
    /// smaller windows and idle zstd contexts are released; under `Critical`, new responses
    /// are not compressed. Responses already streaming keep their encoder.
    #[must_use]
    pub fn pressure(self, signal: PressureSignal) -> Self {
        self.edit(|s| s.pressure = Some(signal))
    }
}

impl<S> Layer<S> for CompressionLayer {
    type Service = Compression<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Compression::new(inner, Arc::clone(&self.settings))
    }
}
