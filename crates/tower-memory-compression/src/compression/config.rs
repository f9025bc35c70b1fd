//! [`Settings`]: what every clone of a [`CompressionLayer`](super::CompressionLayer) and its
//! services share. At the bottom of the compression module's imports: it reads no layer,
//! service, future or body.

#[cfg(feature = "compression-zstd")]
use std::sync::Arc;
use std::time::Duration;

use tower_memory_probe::{Pressure, PressureSignal};

use super::flush::FlushPolicy;
use super::skip::SkipRules;
use crate::Encoding;
use crate::codec::EncoderConfig;
#[cfg(feature = "compression-zstd")]
use crate::codec::ZstdPool;
use crate::params::{BrotliParams, DeflateParams, ZstdParams};

/// Everything a service needs, shared by every clone.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) enabled: bool,
    /// Codings offered, in server preference, compiled ones only.
    pub(crate) offered: Vec<Encoding>,
    pub(crate) gzip: DeflateParams,
    pub(crate) deflate: DeflateParams,
    pub(crate) brotli: BrotliParams,
    pub(crate) zstd: ZstdParams,
    #[cfg(feature = "compression-zstd")]
    pub(crate) zstd_pool: Arc<ZstdPool>,
    pub(crate) threshold: u64,
    pub(crate) skip: SkipRules,
    pub(crate) flush: FlushPolicy,
    /// How long a body of unknown size may hold its first bytes below the threshold.
    pub(crate) hold: Duration,
    pub(crate) pressure: Option<PressureSignal>,
}

impl Default for Settings {
    fn default() -> Self {
        let zstd = ZstdParams::default();
        Settings {
            enabled: true,
            offered: Encoding::CODINGS
                .into_iter()
                .filter(|e| e.can_compress())
                .collect(),
            gzip: DeflateParams::default(),
            deflate: DeflateParams::default(),
            brotli: BrotliParams::default(),
            #[cfg(feature = "compression-zstd")]
            zstd_pool: Arc::new(ZstdPool::new(zstd.pool_size, None)),
            zstd,
            threshold: 1024,
            skip: SkipRules::default(),
            flush: FlushPolicy::default(),
            hold: Duration::from_millis(25),
            pressure: None,
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompressionLayer")
            .field("enabled", &self.enabled)
            .field("offered", &self.offered)
            .field("gzip", &self.gzip)
            .field("deflate", &self.deflate)
            .field("brotli", &self.brotli)
            .field("zstd", &self.zstd)
            .field("threshold", &self.threshold)
            .field("skip", &self.skip)
            .field("flush", &self.flush)
            .field("pressure", &self.pressure)
            .finish()
    }
}

impl Settings {
    /// The pressure now (`Normal` without a signal).
    pub(crate) fn pressure(&self) -> Pressure {
        self.pressure
            .as_ref()
            .map_or(Pressure::Normal, PressureSignal::current)
    }

    /// The encoder configuration for `encoding` at `pressure`; `None` for a coding not compiled
    /// in. Reading it changes nothing (the zstd pool's reaction to pressure is
    /// `release_idle_contexts`).
    pub(crate) fn encoder_config(
        &self,
        encoding: Encoding,
        pressure: Pressure,
    ) -> Option<EncoderConfig> {
        match encoding {
            #[cfg(feature = "compression-gzip")]
            Encoding::Gzip => Some(EncoderConfig::Gzip(self.gzip.at(pressure))),
            #[cfg(feature = "compression-deflate")]
            Encoding::Deflate => Some(EncoderConfig::Deflate(self.deflate.at(pressure))),
            #[cfg(feature = "compression-br")]
            Encoding::Brotli => Some(EncoderConfig::Brotli(self.brotli.at(pressure))),
            #[cfg(feature = "compression-zstd")]
            Encoding::Zstd => Some(EncoderConfig::Zstd(
                self.zstd.at(pressure),
                Arc::clone(&self.zstd_pool),
            )),
            _ => None,
        }
    }

    /// A response is about to be compressed with `encoding` at `pressure`: under `Warning`, a
    /// zstd response first drops the idle zstd contexts (it takes a fresh, smaller one).
    #[cfg(feature = "compression-zstd")]
    pub(crate) fn release_idle_contexts(&self, encoding: Encoding, pressure: Pressure) {
        if encoding == Encoding::Zstd && pressure >= Pressure::Warning {
            self.zstd_pool.clear();
        }
    }
}
