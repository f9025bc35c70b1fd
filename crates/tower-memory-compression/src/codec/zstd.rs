//! zstd (RFC 8878) through libzstd: the encoder on zstd-safe with its pool of reused contexts
//! and a pledged size (kept hand-written: compression-codecs has neither, see `codec/mod.rs`),
//! and the decoder on compression-codecs with a cap on the window a frame may declare.

#[cfg(feature = "compression-zstd")]
use std::sync::{Arc, Mutex};

#[cfg(feature = "compression-zstd")]
use super::{CodecError, Encode, reserve};
use crate::Encoding;
#[cfg(feature = "decompression-zstd")]
use crate::limits::{DecodeError, DecodeLimits};
#[cfg(feature = "compression-zstd")]
use crate::params::ZstdParams;

/// Idle zstd compression contexts, shared by every clone of a layer.
///
/// A context keeps its tables and buffers between frames, so a reused one starts a frame
/// without allocating or clearing megabytes; with a pledged size a small response touches only
/// a small part of them.
#[cfg(feature = "compression-zstd")]
pub(crate) struct ZstdPool {
    idle: Mutex<Vec<zstd_safe::CCtx<'static>>>,
    max_idle: usize,
    /// Under pressure, contexts are not kept.
    pressure: Option<tower_memory_probe::PressureSignal>,
}

#[cfg(feature = "compression-zstd")]
impl std::fmt::Debug for ZstdPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZstdPool")
            .field("idle", &self.idle())
            .field("max_idle", &self.max_idle)
            .finish()
    }
}

#[cfg(feature = "compression-zstd")]
impl ZstdPool {
    pub(crate) fn new(
        max_idle: usize,
        pressure: Option<tower_memory_probe::PressureSignal>,
    ) -> Self {
        ZstdPool {
            idle: Mutex::new(Vec::with_capacity(max_idle)),
            max_idle,
            pressure,
        }
    }

    fn take(&self) -> Option<zstd_safe::CCtx<'static>> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        pooled.or_else(zstd_safe::CCtx::try_create)
    }

    fn put(&self, mut ctx: zstd_safe::CCtx<'static>) {
        if self.max_idle == 0 {
            return;
        }
        if self
            .pressure
            .as_ref()
            .is_some_and(|p| p.current() != tower_memory_probe::Pressure::Normal)
        {
            self.clear();
            return;
        }
        // Back to a clean session with default parameters; a context that will not reset
        // (zstd-safe refuses contexts left in a state it cannot vouch for) is dropped.
        if ctx
            .reset(zstd_safe::ResetDirective::SessionAndParameters)
            .is_err()
        {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(ctx);
        }
    }

    /// Drops every idle context (memory pressure).
    pub(crate) fn clear(&self) {
        let drained: Vec<_> =
            std::mem::take(&mut *self.idle.lock().unwrap_or_else(|e| e.into_inner()));
        drop(drained);
    }

    /// How many contexts are idle.
    pub(crate) fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(feature = "compression-zstd")]
pub(crate) struct ZstdEncoder {
    ctx: Option<zstd_safe::CCtx<'static>>,
    pool: Arc<ZstdPool>,
    /// Whether the context may go back to the pool (not under memory pressure).
    reuse: bool,
}

#[cfg(feature = "compression-zstd")]
impl ZstdEncoder {
    pub(crate) fn new(
        params: &ZstdParams,
        pool: &Arc<ZstdPool>,
        size: Option<u64>,
        streaming: bool,
    ) -> Result<Self, CodecError> {
        use zstd_safe::CParameter;
        let err = |code: usize| CodecError::new(Encoding::Zstd, zstd_safe::get_error_name(code));
        let mut ctx = pool
            .take()
            .ok_or_else(|| CodecError::new(Encoding::Zstd, "cannot allocate a context"))?;
        let level = params
            .level
            .clamp(zstd_safe::min_c_level(), zstd_safe::max_c_level());
        ctx.set_parameter(CParameter::CompressionLevel(level))
            .map_err(err)?;
        if let Some(window_log) = params.window_log_for(streaming) {
            ctx.set_parameter(CParameter::WindowLog(window_log))
                .map_err(err)?;
        }
        if streaming {
            // Streams keep their tables for their whole life: size them for memory.
            if let Some(log) = params.stream_hash_log {
                ctx.set_parameter(CParameter::HashLog(log.clamp(6, 30)))
                    .map_err(err)?;
            }
            if let Some(log) = params.stream_chain_log {
                ctx.set_parameter(CParameter::ChainLog(log.clamp(6, 30)))
                    .map_err(err)?;
            }
        }
        ctx.set_parameter(CParameter::ChecksumFlag(params.checksum))
            .map_err(err)?;
        // The pledged size lets zstd size its window and tables to the body, and goes into the
        // frame header so the client can allocate exactly.
        ctx.set_pledged_src_size(size).map_err(err)?;
        Ok(ZstdEncoder {
            ctx: Some(ctx),
            pool: Arc::clone(pool),
            reuse: params.pool_size > 0,
        })
    }

    fn ctx(&mut self) -> &mut zstd_safe::CCtx<'static> {
        self.ctx.as_mut().expect("context present until drop")
    }

    fn drain(
        &mut self,
        out: &mut Vec<u8>,
        directive: zstd_safe::zstd_sys::ZSTD_EndDirective,
    ) -> Result<(), CodecError> {
        use zstd_safe::{InBuffer, OutBuffer};
        let mut inb = InBuffer::around(&[]);
        loop {
            reserve(out);
            let pos = out.len();
            let mut outb = OutBuffer::around_pos(out, pos);
            let remaining = self
                .ctx()
                .compress_stream2(&mut outb, &mut inb, directive)
                .map_err(|c| {
                    self.reuse = false;
                    CodecError::new(Encoding::Zstd, zstd_safe::get_error_name(c))
                })?;
            if remaining == 0 {
                return Ok(());
            }
        }
    }
}

#[cfg(feature = "compression-zstd")]
impl Encode for ZstdEncoder {
    fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        use zstd_safe::{InBuffer, OutBuffer, zstd_sys::ZSTD_EndDirective};
        let mut inb = InBuffer::around(input);
        while inb.pos() < input.len() {
            reserve(out);
            let pos = out.len();
            let mut outb = OutBuffer::around_pos(out, pos);
            self.ctx()
                .compress_stream2(&mut outb, &mut inb, ZSTD_EndDirective::ZSTD_e_continue)
                .map_err(|c| {
                    self.reuse = false;
                    CodecError::new(Encoding::Zstd, zstd_safe::get_error_name(c))
                })?;
        }
        Ok(())
    }

    fn compress_all(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.clear();
        out.reserve(zstd_safe::compress_bound(input.len()));
        self.ctx().compress2(out, input).map_err(|c| {
            self.reuse = false;
            CodecError::new(Encoding::Zstd, zstd_safe::get_error_name(c))
        })?;
        Ok(())
    }

    #[inline]
    fn flush(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.drain(out, zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_flush)
    }

    #[inline]
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.drain(out, zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_end)
    }
}

#[cfg(feature = "compression-zstd")]
impl Drop for ZstdEncoder {
    fn drop(&mut self) {
        if let Some(ctx) = self.ctx.take()
            && self.reuse
        {
            self.pool.put(ctx);
        }
    }
}

/// A zstd decoder on compression-codecs with libzstd's cap on the window a frame may declare;
/// frames may follow each other.
#[cfg(feature = "decompression-zstd")]
pub(crate) struct ZstdDecoder {
    inner: super::adapter::CodecsDecoder<compression_codecs::ZstdDecoder>,
    window_log_max: u32,
}

#[cfg(feature = "decompression-zstd")]
impl ZstdDecoder {
    /// A decoder that refuses frames declaring a window above `limits.zstd_window_log_max`
    /// before allocating it.
    pub(crate) fn new(limits: &DecodeLimits) -> Self {
        use compression_codecs::zstd::params::DParameter;
        let window_log_max = limits.zstd_window_log_max.clamp(10, 31);
        ZstdDecoder {
            inner: super::adapter::CodecsDecoder::new(
                compression_codecs::ZstdDecoder::new_with_params(&[DParameter::window_log_max(
                    window_log_max,
                )]),
                Encoding::Zstd,
                true,
                false,
            ),
            window_log_max,
        }
    }

    /// Whether the decoder stands between complete frames (so the end of input is clean).
    pub(crate) fn at_boundary(&mut self) -> bool {
        self.inner.at_boundary()
    }

    /// Decodes from `input` into `out`: `(consumed, written)`, or `None` when the data has
    /// ended and there is no more input.
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        out: &mut [u8],
    ) -> Result<Option<(usize, usize)>, DecodeError> {
        let window_log_max = self.window_log_max;
        self.inner.decode(input, out).map_err(|e| match e {
            // libzstd's errors reach us as their names (the zstd crate's `map_error_code`).
            DecodeError::Corrupt { reason, .. } if reason == window_too_large() => {
                DecodeError::WindowTooLarge {
                    encoding: Encoding::Zstd,
                    limit_log: window_log_max,
                }
            }
            e => e,
        })
    }
}

/// libzstd's name of the error of a frame whose window is above the decoder's cap.
#[cfg(feature = "decompression-zstd")]
fn window_too_large() -> &'static str {
    use zstd_safe::zstd_sys::ZSTD_ErrorCode::ZSTD_error_frameParameter_windowTooLarge;
    // A function's error return is the negated code.
    zstd_safe::get_error_name(
        0usize.wrapping_sub(ZSTD_error_frameParameter_windowTooLarge as usize),
    )
}

#[cfg(all(test, all_codecs))]
mod tests {
    use super::*;
    use crate::codec::EncoderConfig;
    use crate::{DecodeLimits, Decoder};

    #[test]
    fn zstd_contexts_are_reused_and_pledge_the_size() {
        let pool = Arc::new(ZstdPool::new(2, None));
        let config = EncoderConfig::Zstd(ZstdParams::default(), Arc::clone(&pool));
        let data = super::super::tests::sample();
        for _ in 0..3 {
            let mut enc = config.build(Some(data.len() as u64), false).unwrap();
            let mut out = Vec::new();
            enc.compress(&data, &mut out).unwrap();
            enc.finish(&mut out).unwrap();
            drop(enc);
            assert_eq!(pool.idle(), 1);
            assert_eq!(
                zstd_safe::get_frame_content_size(&out).unwrap(),
                Some(data.len() as u64)
            );
        }
        // a body that breaks its pledge fails instead of producing a wrong frame
        let mut enc = config.build(Some(10), true).unwrap();
        let mut out = Vec::new();
        assert!(
            enc.compress(&data, &mut out)
                .and_then(|_| enc.finish(&mut out))
                .is_err()
        );
        drop(enc);
        pool.clear();
        assert_eq!(pool.idle(), 0);
    }

    #[test]
    fn zstd_huge_window_is_refused_before_allocating() {
        // A frame header declaring a 128 MiB window (Window_Descriptor exponent 17 -> 2^27),
        // no content size, followed by one empty raw last block.
        let frame = [
            0x28,
            0xB5,
            0x2F,
            0xFD,           // magic
            0x00,           // frame header descriptor: no single segment, no checksum, no FCS
            (27 - 10) << 3, // window descriptor: exponent 17, mantissa 0
            0x01,
            0x00,
            0x00, // last raw block of size 0
        ];
        let err =
            Decoder::decode_all(&[Encoding::Zstd], &frame, DecodeLimits::default()).unwrap_err();
        assert_eq!(
            err,
            DecodeError::WindowTooLarge {
                encoding: Encoding::Zstd,
                limit_log: 23
            }
        );
        // the same frame with an 8 MiB window decodes (to nothing)
        let mut ok = frame;
        ok[5] = (23 - 10) << 3;
        assert_eq!(
            Decoder::decode_all(&[Encoding::Zstd], &ok, DecodeLimits::default()).unwrap(),
            b""
        );
    }
}
