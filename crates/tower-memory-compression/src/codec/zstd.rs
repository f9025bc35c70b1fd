//! zstd (RFC 8878) through libzstd (zstd-safe): the encoder with its pool of reused contexts,
//! and the decoder with a cap on the window a frame may declare.

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

#[cfg(feature = "decompression-zstd")]
pub(crate) struct ZstdDecoder {
    ctx: zstd_safe::DCtx<'static>,
    window_log_max: u32,
    at_boundary: bool,
}

#[cfg(feature = "decompression-zstd")]
impl ZstdDecoder {
    /// A decoder that refuses frames declaring a window above `limits.zstd_window_log_max`
    /// before allocating it.
    pub(crate) fn new(limits: &DecodeLimits) -> Result<Self, DecodeError> {
        let encoding = Encoding::Zstd;
        let mut ctx = zstd_safe::DCtx::try_create().ok_or_else(|| DecodeError::Corrupt {
            encoding,
            reason: "cannot allocate a zstd context".into(),
        })?;
        let window_log_max = limits.zstd_window_log_max.clamp(10, 31);
        ctx.set_parameter(zstd_safe::DParameter::WindowLogMax(window_log_max))
            .map_err(|c| DecodeError::Corrupt {
                encoding,
                reason: zstd_safe::get_error_name(c).into(),
            })?;
        Ok(ZstdDecoder {
            ctx,
            window_log_max,
            at_boundary: true,
        })
    }

    /// Whether the decoder stands between complete frames (so the end of input is clean).
    pub(crate) fn at_boundary(&self) -> bool {
        self.at_boundary
    }

    /// Decodes from `input` into `out`: `(consumed, written)`.
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        out: &mut [u8],
    ) -> Result<Option<(usize, usize)>, DecodeError> {
        use zstd_safe::{InBuffer, OutBuffer, zstd_sys::ZSTD_ErrorCode};
        let encoding = Encoding::Zstd;
        let corrupt = |reason: &str| DecodeError::Corrupt {
            encoding,
            reason: reason.to_owned(),
        };
        let ZstdDecoder {
            ctx,
            window_log_max,
            at_boundary,
        } = self;
        let mut inb = InBuffer::around(input);
        let mut outb = OutBuffer::around(out);
        let hint = ctx.decompress_stream(&mut outb, &mut inb).map_err(|code| {
            if zstd_safe::is_error_kind(
                code,
                ZSTD_ErrorCode::ZSTD_error_frameParameter_windowTooLarge,
            ) {
                DecodeError::WindowTooLarge {
                    encoding,
                    limit_log: *window_log_max,
                }
            } else {
                corrupt(zstd_safe::get_error_name(code))
            }
        })?;
        let (consumed, written) = (inb.pos(), outb.pos());
        // 0: a frame just ended and no other has begun. A call that did nothing (asked
        // for more output after a frame's end) says it wants the next frame's header,
        // which does not make the end of the data unclean.
        if consumed > 0 || written > 0 {
            *at_boundary = hint == 0;
        }
        Ok(Some((consumed, written)))
    }
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
