//! Per-algorithm compression parameters, and what memory pressure makes of them.
//!
//! (Just over 400 lines: three option structs, each with its builder methods, its pressure
//! variant and its tests.)
//!
//! Each struct is built from `Default` (the defaults are stated on each field) and its builder
//! methods, e.g. `DeflateParams::default().level(9)`.

#[cfg(any_encoder)]
use tower_memory_probe::Pressure;

/// Parameters of a gzip or deflate (zlib) stream, compressed with zlib-rs.
///
/// Memory per stream is about `2^(window_bits+2) + 2^(mem_level+8) + 128 KiB` (window, previous
/// links, literal buffers, and zlib-rs's fixed 64 Ki-entry hash head), about 370 KiB with the
/// defaults, of which only the pages a stream has reached are resident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateParams {
    /// Compression level, 0 (stored) to 9 (best). Default 6.
    pub level: u32,
    /// zlib `memLevel`, 1 to 9: sizes the literal buffer (`2^(mem_level+6)` symbols). Default 8.
    pub mem_level: u8,
    /// Base-two logarithm of the LZ77 window, 9 to 15. Default 15 (32 KiB).
    pub window_bits: u8,
}

impl Default for DeflateParams {
    fn default() -> Self {
        DeflateParams {
            level: 6,
            mem_level: 8,
            window_bits: 15,
        }
    }
}

impl DeflateParams {
    /// Sets [`level`](Self::level).
    #[must_use]
    pub fn level(mut self, level: u32) -> Self {
        self.level = level;
        self
    }

    /// Sets [`mem_level`](Self::mem_level).
    #[must_use]
    pub fn mem_level(mut self, mem_level: u8) -> Self {
        self.mem_level = mem_level;
        self
    }

    /// Sets [`window_bits`](Self::window_bits).
    #[must_use]
    pub fn window_bits(mut self, window_bits: u8) -> Self {
        self.window_bits = window_bits;
        self
    }
}

#[cfg(zlib_encoder)]
impl DeflateParams {
    /// The values zlib-rs accepts (out-of-range fields are clamped).
    pub(crate) fn clamped(self) -> DeflateParams {
        DeflateParams {
            level: self.level.min(9),
            mem_level: self.mem_level.clamp(1, 9),
            window_bits: self.window_bits.clamp(9, 15),
        }
    }

    /// These parameters at `pressure`: [`under_pressure`](Self::under_pressure) from `Warning` on.
    pub(crate) fn at(self, pressure: Pressure) -> DeflateParams {
        if pressure >= Pressure::Warning {
            self.under_pressure()
        } else {
            self
        }
    }

    /// Under `Warning` pressure: the fastest level, a 8 KiB window and a small literal buffer
    /// (about 205 KiB per stream instead of 350 KiB, measured: `BENCHMARKS.md`).
    pub(crate) fn under_pressure(self) -> DeflateParams {
        let p = self.clamped();
        DeflateParams {
            level: p.level.min(1),
            mem_level: p.mem_level.min(6),
            window_bits: p.window_bits.min(13),
        }
    }
}

/// Parameters of a zstd frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ZstdParams {
    /// Compression level, 1 to 22 (negative levels are the "fast" levels). Default 3.
    pub level: i32,
    /// The largest window (base-two logarithm) a frame may require: the client must hold this
    /// much to decode. Default 23 (8 MiB), the limit RFC 8878 recommends and browsers enforce.
    /// Levels whose own window is larger are capped to it.
    pub window_log_max: u32,
    /// The window (base-two logarithm) for bodies compressed as they stream (a body that is
    /// complete at once is compressed in one shot with zstd's own parameters for its length,
    /// which is pledged). A known length is pledged for streams too, and zstd shrinks the
    /// window to it. `None` keeps
    /// the level's own window (2 MiB at level 3). Default `Some(18)` (256 KiB): a long stream's
    /// window becomes resident in full, and on JSON a 256 KiB window with the stream tables
    /// below compresses within 0.5% of zstd's own level-3 parameters.
    pub stream_window_log: Option<u32>,
    /// Hash table size (base-two logarithm of entries) for bodies compressed as they stream; `None`
    /// keeps the level's own. The tables are cleared when a frame starts, so they are resident
    /// for the whole stream: at level 3 zstd's own are 512 KiB + 256 KiB. Default `Some(13)`
    /// (32 KiB).
    pub stream_hash_log: Option<u32>,
    /// Chain (or, at levels 3 and 4, second hash) table size for bodies compressed as they stream;
    /// `None` keeps the level's own. Default `Some(11)` (8 KiB).
    pub stream_chain_log: Option<u32>,
    /// How many idle compression contexts are kept for reuse across responses. A context costs
    /// a few hundred KiB to a few MiB once warmed; reuse saves allocating and clearing its tables
    /// for every response. Default: the number of CPUs (at least 2).
    pub pool_size: usize,
    /// Whether frames carry a checksum of the content. Default false (HTTP has its own framing
    /// and TCP/TLS their own integrity).
    pub checksum: bool,
}

impl Default for ZstdParams {
    fn default() -> Self {
        ZstdParams {
            level: 3,
            window_log_max: 23,
            stream_window_log: Some(18),
            stream_hash_log: Some(13),
            stream_chain_log: Some(11),
            pool_size: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(2),
            checksum: false,
        }
    }
}

impl ZstdParams {
    /// Sets [`level`](Self::level).
    #[must_use]
    pub fn level(mut self, level: i32) -> Self {
        self.level = level;
        self
    }

    /// Sets [`window_log_max`](Self::window_log_max).
    #[must_use]
    pub fn window_log_max(mut self, window_log_max: u32) -> Self {
        self.window_log_max = window_log_max;
        self
    }

    /// Sets [`stream_window_log`](Self::stream_window_log).
    #[must_use]
    pub fn stream_window_log(mut self, stream_window_log: Option<u32>) -> Self {
        self.stream_window_log = stream_window_log;
        self
    }

    /// Sets [`stream_hash_log`](Self::stream_hash_log).
    #[must_use]
    pub fn stream_hash_log(mut self, stream_hash_log: Option<u32>) -> Self {
        self.stream_hash_log = stream_hash_log;
        self
    }

    /// Sets [`stream_chain_log`](Self::stream_chain_log).
    #[must_use]
    pub fn stream_chain_log(mut self, stream_chain_log: Option<u32>) -> Self {
        self.stream_chain_log = stream_chain_log;
        self
    }

    /// Sets [`pool_size`](Self::pool_size).
    #[must_use]
    pub fn pool_size(mut self, pool_size: usize) -> Self {
        self.pool_size = pool_size;
        self
    }

    /// Sets [`checksum`](Self::checksum).
    #[must_use]
    pub fn checksum(mut self, checksum: bool) -> Self {
        self.checksum = checksum;
        self
    }
}

#[cfg(feature = "compression-zstd")]
impl ZstdParams {
    /// The window log zstd's own tables pick for `level` on large inputs (zstd 1.5 `clevels.h`,
    /// inputs above 256 KiB); used to know when [`window_log_max`](Self::window_log_max) binds.
    pub(crate) fn default_window_log(level: i32) -> u32 {
        match level {
            i32::MIN..=1 => 19,
            2 => 20,
            3..=8 => 21,
            9..=16 => 22,
            17..=19 => 23,
            20 => 25,
            21 => 26,
            _ => 27,
        }
    }

    /// The window log to set explicitly for a frame, if any (`streaming`: compressed as it
    /// arrives, rather than in one shot).
    pub(crate) fn window_log_for(&self, streaming: bool) -> Option<u32> {
        let cap = self.window_log_max.clamp(10, 31);
        let own = Self::default_window_log(self.level);
        let stream = if streaming {
            self.stream_window_log.map(|w| w.clamp(10, 31))
        } else {
            None
        };
        match stream {
            Some(w) if w.min(cap) < own => Some(w.min(cap)),
            _ if own > cap => Some(cap),
            _ => None,
        }
    }

    /// These parameters at `pressure`: [`under_pressure`](Self::under_pressure) from `Warning` on.
    pub(crate) fn at(self, pressure: Pressure) -> ZstdParams {
        if pressure >= Pressure::Warning {
            self.under_pressure()
        } else {
            self
        }
    }

    /// Under `Warning` pressure: level 1 and a window of at most 128 KiB.
    pub(crate) fn under_pressure(self) -> ZstdParams {
        let cap = self.window_log_max.min(17);
        ZstdParams {
            level: self.level.min(1),
            window_log_max: cap,
            stream_window_log: Some(cap),
            stream_hash_log: Some(self.stream_hash_log.unwrap_or(13).min(13)),
            stream_chain_log: Some(self.stream_chain_log.unwrap_or(11).min(11)),
            ..self
        }
    }
}

/// Parameters of a brotli stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrotliParams {
    /// Quality, 0 to 11. Default 4 (what NGINX and tower-http use for on-the-fly compression).
    pub quality: u32,
    /// Base-two logarithm of the window, 10 to 24. Default 22 (4 MiB). Bodies of known length get
    /// a window just large enough for themselves, and their length as the encoder's size hint.
    /// Streams use at most [`stream_window_bits`](Self::stream_window_bits).
    pub window_bits: u32,
    /// The window for bodies compressed as they stream, 10 to 24. Default 18 (256 KiB): the encoder's
    /// ring buffer (twice the window) becomes resident as a stream goes on, so this bounds a
    /// long stream's memory.
    pub stream_window_bits: u32,
    /// The quality for bodies compressed as they stream. Default 3: at quality 4 the `brotli` crate's
    /// encoder keeps about 1.4 MiB resident per in-flight stream (its quality-4 hasher and
    /// 64 KiB blocks), at 3 about 0.75 MiB, for output about 4% larger on JSON. Bodies that are
    /// complete at once, compressed in one shot and released, use [`quality`](Self::quality).
    pub stream_quality: u32,
}

impl Default for BrotliParams {
    fn default() -> Self {
        BrotliParams {
            quality: 4,
            window_bits: 22,
            stream_window_bits: 18,
            stream_quality: 3,
        }
    }
}

impl BrotliParams {
    /// Sets [`quality`](Self::quality).
    #[must_use]
    pub fn quality(mut self, quality: u32) -> Self {
        self.quality = quality;
        self
    }

    /// Sets [`window_bits`](Self::window_bits).
    #[must_use]
    pub fn window_bits(mut self, window_bits: u32) -> Self {
        self.window_bits = window_bits;
        self
    }

    /// Sets [`stream_window_bits`](Self::stream_window_bits).
    #[must_use]
    pub fn stream_window_bits(mut self, stream_window_bits: u32) -> Self {
        self.stream_window_bits = stream_window_bits;
        self
    }

    /// Sets [`stream_quality`](Self::stream_quality).
    #[must_use]
    pub fn stream_quality(mut self, stream_quality: u32) -> Self {
        self.stream_quality = stream_quality;
        self
    }
}

#[cfg(feature = "compression-br")]
impl BrotliParams {
    /// The window for a body of `size` bytes (`None`: unknown), compressed in one shot or as it
    /// streams.
    pub(crate) fn window_for(&self, size: Option<u64>, streaming: bool) -> u32 {
        let mut max = self.window_bits.clamp(10, 24);
        if streaming {
            max = self.stream_window_bits.clamp(10, max);
        }
        match size {
            // The usable window is 2^lgwin - 16 bytes.
            Some(n) => {
                let need = 64 - (n + 16).saturating_sub(1).leading_zeros();
                need.clamp(10, max)
            }
            None => max,
        }
    }

    /// These parameters at `pressure`: [`under_pressure`](Self::under_pressure) from `Warning` on.
    pub(crate) fn at(self, pressure: Pressure) -> BrotliParams {
        if pressure >= Pressure::Warning {
            self.under_pressure()
        } else {
            self
        }
    }

    /// Under `Warning` pressure: quality at most 1 and a window of at most 256 KiB.
    pub(crate) fn under_pressure(self) -> BrotliParams {
        BrotliParams {
            quality: self.quality.min(1),
            window_bits: self.window_bits.min(18),
            stream_window_bits: self.stream_window_bits.min(18),
            stream_quality: self.stream_quality.min(1),
        }
    }
}

#[cfg(all(test, all_codecs))]
mod tests {
    use super::*;

    #[test]
    fn zstd_window_cap() {
        let p = ZstdParams::default();
        // level 3 in one shot: zstd's own choice (it shrinks to the pledged size)
        assert_eq!(p.window_log_for(false), None);
        // streaming: the stream window
        assert_eq!(p.window_log_for(true), Some(18));
        let p = ZstdParams {
            level: 22,
            stream_window_log: None,
            ..ZstdParams::default()
        };
        assert_eq!(p.window_log_for(false), Some(23));
        assert_eq!(p.window_log_for(true), Some(23));
        let p = ZstdParams {
            level: 3,
            window_log_max: 18,
            stream_window_log: None,
            ..ZstdParams::default()
        };
        assert_eq!(p.window_log_for(true), Some(18));
        assert_eq!(ZstdParams::default().under_pressure().level, 1);
        assert_eq!(
            ZstdParams::default().under_pressure().window_log_for(true),
            Some(17)
        );
    }

    #[test]
    fn brotli_window_fits_the_body() {
        let p = BrotliParams::default();
        assert_eq!(p.window_for(Some(100), false), 10);
        assert_eq!(p.window_for(Some(1008), false), 10);
        assert_eq!(p.window_for(Some(1009), false), 11);
        assert_eq!(p.window_for(Some(256 * 1024), false), 19);
        assert_eq!(p.window_for(Some(256 * 1024 - 16), false), 18);
        assert_eq!(p.window_for(Some(1 << 40), false), 22);
        assert_eq!(p.window_for(Some(1 << 40), true), 18);
        assert_eq!(p.window_for(Some(100), true), 10);
        assert_eq!(p.window_for(None, true), 18);
        assert_eq!(p.under_pressure().window_for(None, true), 18);
    }

    #[test]
    fn deflate_clamps() {
        let p = DeflateParams {
            level: 42,
            mem_level: 0,
            window_bits: 30,
        }
        .clamped();
        assert_eq!(
            p,
            DeflateParams {
                level: 9,
                mem_level: 1,
                window_bits: 15
            }
        );
        let w = DeflateParams::default().under_pressure();
        assert_eq!((w.level, w.mem_level, w.window_bits), (1, 6, 13));
    }
}
