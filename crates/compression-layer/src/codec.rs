//! Streaming encoders over the raw codecs (zlib-rs, libzstd through zstd-safe, the `brotli`
//! crate).
//!
//! Written against the codecs directly rather than through `async-compression` because the
//! layer needs what its encoders do not expose: zlib `memLevel`, a pledged source size and a
//! reused context for zstd, a size hint and a fitted window for brotli, and output written into
//! buffers the layer sizes for its own framing.

#[cfg(feature = "zstd")]
use std::sync::{Arc, Mutex};

use crate::Encoding;
#[cfg(feature = "br")]
use crate::params::BrotliParams;
#[cfg(any(feature = "gzip", feature = "deflate"))]
use crate::params::DeflateParams;
#[cfg(feature = "zstd")]
use crate::params::ZstdParams;

/// How much output space each codec call gets at least.
const OUT_STEP: usize = 16 * 1024;

/// A codec failed. Compression only fails on a broken invariant (a body that delivers more or
/// fewer bytes than it pledged, an allocation refused by the codec), never on content.
#[derive(Debug, thiserror::Error)]
#[error("{encoding} compression failed: {reason}")]
pub struct CodecError {
    encoding: Encoding,
    reason: String,
}

impl CodecError {
    #[allow(dead_code)] // not every feature combination has a codec that can fail
    fn new(encoding: Encoding, reason: impl Into<String>) -> Self {
        CodecError {
            encoding,
            reason: reason.into(),
        }
    }
}

/// What a response needs from an encoder.
pub(crate) enum Encoder {
    #[cfg(any(feature = "gzip", feature = "deflate"))]
    Deflate(DeflateEncoder),
    #[cfg(feature = "zstd")]
    Zstd(ZstdEncoder),
    #[cfg(feature = "br")]
    Brotli(BrotliEncoder),
}

/// The parameters of one response's encoder.
#[derive(Debug, Clone)]
pub(crate) enum EncoderConfig {
    #[cfg(feature = "gzip")]
    Gzip(DeflateParams),
    #[cfg(feature = "deflate")]
    Deflate(DeflateParams),
    #[cfg(feature = "br")]
    Brotli(BrotliParams),
    #[cfg(feature = "zstd")]
    Zstd(ZstdParams, Arc<ZstdPool>),
}

impl EncoderConfig {
    pub(crate) fn encoding(&self) -> Encoding {
        match *self {
            #[cfg(feature = "gzip")]
            EncoderConfig::Gzip(_) => Encoding::Gzip,
            #[cfg(feature = "deflate")]
            EncoderConfig::Deflate(_) => Encoding::Deflate,
            #[cfg(feature = "br")]
            EncoderConfig::Brotli(_) => Encoding::Brotli,
            #[cfg(feature = "zstd")]
            EncoderConfig::Zstd(..) => Encoding::Zstd,
        }
    }

    /// A fresh encoder; `size` is the exact input length when known; `streaming`: the body is
    /// compressed as it arrives (its state lives as long as the response), not in one shot.
    pub(crate) fn build(&self, size: Option<u64>, streaming: bool) -> Result<Encoder, CodecError> {
        let _ = (size, streaming);
        Ok(match self {
            #[cfg(feature = "gzip")]
            EncoderConfig::Gzip(p) => {
                Encoder::Deflate(DeflateEncoder::new(*p, true, Encoding::Gzip))
            }
            #[cfg(feature = "deflate")]
            EncoderConfig::Deflate(p) => {
                Encoder::Deflate(DeflateEncoder::new(*p, false, Encoding::Deflate))
            }
            #[cfg(feature = "br")]
            EncoderConfig::Brotli(p) => Encoder::Brotli(BrotliEncoder::new(*p, size, streaming)),
            #[cfg(feature = "zstd")]
            EncoderConfig::Zstd(p, pool) => {
                Encoder::Zstd(ZstdEncoder::new(p, pool, size, streaming)?)
            }
            #[cfg(not(any(
                feature = "gzip",
                feature = "deflate",
                feature = "br",
                feature = "zstd"
            )))]
            _ => unreachable!("no codec is compiled in"),
        })
    }
}

impl Encoder {
    /// Compresses all of `input`, appending whatever output the codec releases to `out`.
    pub(crate) fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        let _ = (&input, &out);
        match self {
            #[cfg(any(feature = "gzip", feature = "deflate"))]
            Encoder::Deflate(e) => e.run(input, out, zlib_rs::DeflateFlush::NoFlush),
            #[cfg(feature = "zstd")]
            Encoder::Zstd(e) => e.compress(input, out),
            #[cfg(feature = "br")]
            Encoder::Brotli(e) => e.run(input, out, Op::Process),
            #[cfg(not(any(
                feature = "gzip",
                feature = "deflate",
                feature = "br",
                feature = "zstd"
            )))]
            _ => unreachable!("no codec is compiled in"),
        }
    }

    /// Compresses a whole body at once (the encoder must be fresh); `out` receives the complete
    /// stream. zstd takes its one-pass path (no copy of the input into its window buffer).
    pub(crate) fn compress_all(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        match self {
            #[cfg(feature = "zstd")]
            Encoder::Zstd(e) => e.compress_all(input, out),
            _ => self.compress(input, out).and_then(|()| self.finish(out)),
        }
    }

    /// Emits everything compressed so far so that a decoder can decode it now.
    pub(crate) fn flush(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let _ = &out;
        match self {
            #[cfg(any(feature = "gzip", feature = "deflate"))]
            Encoder::Deflate(e) => e.run(&[], out, zlib_rs::DeflateFlush::SyncFlush),
            #[cfg(feature = "zstd")]
            Encoder::Zstd(e) => e.drain(out, zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_flush),
            #[cfg(feature = "br")]
            Encoder::Brotli(e) => e.run(&[], out, Op::Flush),
            #[cfg(not(any(
                feature = "gzip",
                feature = "deflate",
                feature = "br",
                feature = "zstd"
            )))]
            _ => unreachable!("no codec is compiled in"),
        }
    }

    /// Ends the stream (trailer, checksum).
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let _ = &out;
        match self {
            #[cfg(any(feature = "gzip", feature = "deflate"))]
            Encoder::Deflate(e) => e.run(&[], out, zlib_rs::DeflateFlush::Finish),
            #[cfg(feature = "zstd")]
            Encoder::Zstd(e) => e.drain(out, zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_end),
            #[cfg(feature = "br")]
            Encoder::Brotli(e) => e.run(&[], out, Op::Finish),
            #[cfg(not(any(
                feature = "gzip",
                feature = "deflate",
                feature = "br",
                feature = "zstd"
            )))]
            _ => unreachable!("no codec is compiled in"),
        }
    }
}

/// Makes sure `out` has at least [`OUT_STEP`] bytes of spare capacity.
fn reserve(out: &mut Vec<u8>) {
    if out.capacity() - out.len() < OUT_STEP {
        out.reserve(OUT_STEP.max(out.len() / 2));
    }
}

// ---------------------------------------------------------------------------------------------
// gzip / deflate

#[cfg(any(feature = "gzip", feature = "deflate"))]
pub(crate) struct DeflateEncoder {
    z: zlib_rs::Deflate,
    encoding: Encoding,
}

#[cfg(any(feature = "gzip", feature = "deflate"))]
impl DeflateEncoder {
    fn new(params: DeflateParams, gzip: bool, encoding: Encoding) -> Self {
        let p = params.clamped();
        let window_bits = i32::from(p.window_bits);
        let config = zlib_rs::DeflateConfig {
            level: p.level as i32,
            method: zlib_rs::Method::Deflated,
            // zlib's convention: +16 selects the gzip wrapper, a positive value the zlib one.
            window_bits: if gzip { window_bits + 16 } else { window_bits },
            mem_level: i32::from(p.mem_level),
            strategy: zlib_rs::Strategy::Default,
        };
        DeflateEncoder {
            z: zlib_rs::Deflate::new_with_config(config),
            encoding,
        }
    }

    fn run(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        flush: zlib_rs::DeflateFlush,
    ) -> Result<(), CodecError> {
        use zlib_rs::{DeflateFlush, Status};
        loop {
            reserve(out);
            let start = out.len();
            // zlib-rs also writes into uninitialised memory (`compress_uninit`); zeroing the
            // tail instead keeps this crate free of `unsafe` at a cost far below the codec's.
            out.resize(out.capacity(), 0);
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let status = self
                .z
                .compress(input, &mut out[start..], flush)
                .map_err(|e| CodecError::new(self.encoding, e.as_str()))?;
            let consumed = (self.z.total_in() - in0) as usize;
            let produced = (self.z.total_out() - out0) as usize;
            let room = out.len() - start;
            out.truncate(start + produced);
            input = &input[consumed..];
            let done = match flush {
                DeflateFlush::NoFlush => input.is_empty(),
                DeflateFlush::Finish => status == Status::StreamEnd,
                // A flush is complete once a call leaves output space unused.
                _ => input.is_empty() && produced < room,
            };
            if done {
                return Ok(());
            }
            if consumed == 0 && produced == 0 && status == Status::BufError {
                return Err(CodecError::new(self.encoding, "no progress"));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// zstd

/// Idle zstd compression contexts, shared by every clone of a layer.
///
/// A context keeps its tables and buffers between frames, so a reused one starts a frame
/// without allocating or clearing megabytes; with a pledged size a small response touches only
/// a small part of them.
#[cfg(feature = "zstd")]
pub(crate) struct ZstdPool {
    idle: Mutex<Vec<zstd_safe::CCtx<'static>>>,
    max_idle: usize,
    /// Under pressure, contexts are not kept.
    pressure: Option<memory_probe::PressureSignal>,
}

#[cfg(feature = "zstd")]
impl std::fmt::Debug for ZstdPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZstdPool")
            .field("idle", &self.idle())
            .field("max_idle", &self.max_idle)
            .finish()
    }
}

#[cfg(feature = "zstd")]
impl ZstdPool {
    pub(crate) fn new(max_idle: usize, pressure: Option<memory_probe::PressureSignal>) -> Self {
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
            .is_some_and(|p| p.current() != memory_probe::Pressure::Normal)
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

#[cfg(feature = "zstd")]
pub(crate) struct ZstdEncoder {
    ctx: Option<zstd_safe::CCtx<'static>>,
    pool: Arc<ZstdPool>,
    /// Whether the context may go back to the pool (not under memory pressure).
    reuse: bool,
}

#[cfg(feature = "zstd")]
impl ZstdEncoder {
    fn new(
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

#[cfg(feature = "zstd")]
impl Drop for ZstdEncoder {
    fn drop(&mut self) {
        if let Some(ctx) = self.ctx.take()
            && self.reuse
        {
            self.pool.put(ctx);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// brotli

#[cfg(feature = "br")]
type BrotliState = brotli::enc::encode::BrotliEncoderStateStruct<brotli::enc::StandardAlloc>;

#[cfg(feature = "br")]
#[derive(Clone, Copy)]
enum Op {
    Process,
    Flush,
    Finish,
}

#[cfg(feature = "br")]
pub(crate) struct BrotliEncoder {
    // The state is several KiB inline; boxed so responses move cheaply.
    state: Box<BrotliState>,
}

#[cfg(feature = "br")]
impl BrotliEncoder {
    fn new(params: BrotliParams, size: Option<u64>, streaming: bool) -> Self {
        use brotli::enc::encode::BrotliEncoderParameter::*;
        let mut state = Box::new(BrotliState::new(brotli::enc::StandardAlloc::default()));
        let quality = if streaming {
            params.stream_quality
        } else {
            params.quality
        };
        state.set_parameter(BROTLI_PARAM_QUALITY, quality.min(11));
        state.set_parameter(BROTLI_PARAM_LGWIN, params.window_for(size, streaming));
        if let Some(n) = size {
            state.set_parameter(BROTLI_PARAM_SIZE_HINT, u32::try_from(n).unwrap_or(u32::MAX));
        }
        BrotliEncoder { state }
    }

    fn run(&mut self, input: &[u8], out: &mut Vec<u8>, op: Op) -> Result<(), CodecError> {
        use brotli::enc::encode::BrotliEncoderOperation as O;
        let operation = match op {
            Op::Process => O::BROTLI_OPERATION_PROCESS,
            Op::Flush => O::BROTLI_OPERATION_FLUSH,
            Op::Finish => O::BROTLI_OPERATION_FINISH,
        };
        let mut in_offset = 0;
        loop {
            reserve(out);
            let start = out.len();
            out.resize(out.capacity(), 0);
            let mut avail_in = input.len() - in_offset;
            let mut avail_out = out.len() - start;
            let mut out_offset = start;
            let ok = self.state.compress_stream(
                operation,
                &mut avail_in,
                input,
                &mut in_offset,
                &mut avail_out,
                out,
                &mut out_offset,
                &mut None,
                &mut |_, _, _, _| (),
            );
            out.truncate(out_offset);
            if !ok {
                return Err(CodecError::new(
                    Encoding::Brotli,
                    "encoder refused the call",
                ));
            }
            let done = match op {
                Op::Process => in_offset == input.len() && !self.state.has_more_output(),
                Op::Flush => !self.state.has_more_output(),
                Op::Finish => self.state.is_finished(),
            };
            if done {
                return Ok(());
            }
        }
    }
}

#[cfg(all(
    test,
    feature = "gzip",
    feature = "deflate",
    feature = "br",
    feature = "zstd"
))]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut s = Vec::new();
        for i in 0..20_000 {
            s.extend_from_slice(
                format!("{{\"id\":{i},\"name\":\"item {i}\",\"ok\":true}},").as_bytes(),
            );
        }
        s
    }

    #[allow(clippy::vec_init_then_push)] // pushes are feature-gated
    fn configs() -> Vec<EncoderConfig> {
        let mut v = Vec::new();
        #[cfg(feature = "gzip")]
        v.push(EncoderConfig::Gzip(DeflateParams::default()));
        #[cfg(feature = "deflate")]
        v.push(EncoderConfig::Deflate(DeflateParams::default()));
        #[cfg(feature = "br")]
        v.push(EncoderConfig::Brotli(BrotliParams::default()));
        #[cfg(feature = "zstd")]
        v.push(EncoderConfig::Zstd(
            ZstdParams::default(),
            Arc::new(ZstdPool::new(2, None)),
        ));
        v
    }

    #[test]
    fn streams_with_flushes_decode_to_the_input() {
        let data = sample();
        for config in configs() {
            for known in [false, true] {
                let mut enc = config
                    .build(known.then_some(data.len() as u64), true)
                    .unwrap();
                let mut out = Vec::new();
                for (i, chunk) in data.chunks(7000).enumerate() {
                    enc.compress(chunk, &mut out).unwrap();
                    if i % 5 == 0 {
                        enc.flush(&mut out).unwrap();
                    }
                }
                enc.finish(&mut out).unwrap();
                assert!(out.len() < data.len() / 4, "{:?}", config.encoding());
                let decoded = crate::decoder::decode_all(config.encoding(), &out).unwrap();
                assert_eq!(decoded, data, "{:?} known={known}", config.encoding());
            }
        }
    }

    #[test]
    fn flush_makes_everything_so_far_decodable() {
        let data = sample();
        for config in configs() {
            let mut enc = config.build(None, true).unwrap();
            let mut out = Vec::new();
            enc.compress(&data[..5000], &mut out).unwrap();
            enc.flush(&mut out).unwrap();
            let prefix = crate::decoder::decode_prefix(config.encoding(), &out).unwrap();
            assert_eq!(prefix, &data[..5000], "{:?}", config.encoding());
        }
    }

    #[cfg(feature = "zstd")]
    #[test]
    fn zstd_contexts_are_reused_and_pledge_the_size() {
        let pool = Arc::new(ZstdPool::new(2, None));
        let config = EncoderConfig::Zstd(ZstdParams::default(), Arc::clone(&pool));
        let data = sample();
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
}
