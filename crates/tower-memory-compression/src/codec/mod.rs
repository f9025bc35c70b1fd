//! The codecs, one file per codec family holding its encoder and its decoder, and the enums
//! that pick one per response or request stage (static dispatch: one `match` per call).
//!
//! Built on compression-codecs (the codec layer of `async-compression`, driven by
//! `adapter.rs`) except two encoders, kept hand-written for what they measurably win
//! (`BENCHMARKS.md`, "tower-memory-compression"):
//!
//! - gzip and deflate on zlib-rs directly: compression-codecs takes a level only, while this
//!   encoder takes zlib's `memLevel` and window bits, which the `Warning` pressure parameters
//!   use to cut the memory of every new stream (same throughput, same memory at the defaults).
//! - zstd on zstd-safe: compression-codecs has neither a pledged source size nor reused
//!   contexts, which make small responses several times faster and let a known-length stream's
//!   window shrink to the body.
//!
//! The brotli encoder and every decoder are compression-codecs' (brotli with its window and size
//! hint, zstd with its window cap, gzip with multi-member bodies, flate2 on its zlib-rs backend);
//! this crate keeps the framing, the flushes and the output caps around them.
//!
//! Adding a codec: a file here with its encoder (implementing [`Encode`]) and decoder (`new`,
//! `at_boundary`, `decode`), the two features, and one arm in each enum below.

#[cfg(any(feature = "compression-br", any_decoder))]
mod adapter;
#[cfg(any(feature = "compression-br", feature = "decompression-br"))]
mod brotli;
#[cfg(any(zlib_encoder, zlib_decoder))]
mod deflate;
#[cfg(any(feature = "compression-zstd", feature = "decompression-zstd"))]
mod zstd;

#[cfg(feature = "compression-zstd")]
use std::sync::Arc;

#[cfg(feature = "decompression-br")]
use self::brotli::BrotliDecoder;
#[cfg(feature = "compression-br")]
use self::brotli::BrotliEncoder;
#[cfg(zlib_encoder)]
use self::deflate::DeflateEncoder;
#[cfg(feature = "decompression-gzip")]
use self::deflate::GzipDecoder;
#[cfg(feature = "decompression-deflate")]
use self::deflate::ZlibDecoder;
#[cfg(feature = "decompression-zstd")]
use self::zstd::ZstdDecoder;
#[cfg(feature = "compression-zstd")]
use self::zstd::ZstdEncoder;
#[cfg(feature = "compression-zstd")]
pub(crate) use self::zstd::ZstdPool;
use crate::Encoding;
use crate::limits::{DecodeError, DecodeLimits};
#[cfg(feature = "compression-br")]
use crate::params::BrotliParams;
#[cfg(zlib_encoder)]
use crate::params::DeflateParams;
#[cfg(feature = "compression-zstd")]
use crate::params::ZstdParams;

/// How much output space each codec call gets at least.
#[cfg(any_encoder)]
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
    #[cfg(any_encoder)]
    fn new(encoding: Encoding, reason: impl Into<String>) -> Self {
        CodecError {
            encoding,
            reason: reason.into(),
        }
    }
}

/// What the layer asks of a codec's encoder.
#[cfg(any_encoder)]
trait Encode {
    /// Compresses all of `input`, appending whatever output the codec releases to `out`.
    fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Emits everything compressed so far so that a decoder can decode it now.
    fn flush(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Ends the stream (trailer, checksum).
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Compresses a whole body at once (the encoder must be fresh); `out` receives the
    /// complete stream.
    fn compress_all(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.compress(input, out).and_then(|()| self.finish(out))
    }
}

/// Makes sure `out` has at least [`OUT_STEP`] bytes of spare capacity.
#[cfg(any_encoder)]
fn reserve(out: &mut Vec<u8>) {
    if out.capacity() - out.len() < OUT_STEP {
        out.reserve(OUT_STEP.max(out.len() / 2));
    }
}

/// The parameters of one response's encoder.
#[derive(Debug, Clone)]
pub(crate) enum EncoderConfig {
    #[cfg(feature = "compression-gzip")]
    Gzip(DeflateParams),
    #[cfg(feature = "compression-deflate")]
    Deflate(DeflateParams),
    #[cfg(feature = "compression-br")]
    Brotli(BrotliParams),
    #[cfg(feature = "compression-zstd")]
    Zstd(ZstdParams, Arc<ZstdPool>),
}

impl EncoderConfig {
    pub(crate) fn encoding(&self) -> Encoding {
        match *self {
            #[cfg(feature = "compression-gzip")]
            EncoderConfig::Gzip(_) => Encoding::Gzip,
            #[cfg(feature = "compression-deflate")]
            EncoderConfig::Deflate(_) => Encoding::Deflate,
            #[cfg(feature = "compression-br")]
            EncoderConfig::Brotli(_) => Encoding::Brotli,
            #[cfg(feature = "compression-zstd")]
            EncoderConfig::Zstd(..) => Encoding::Zstd,
        }
    }

    /// A fresh encoder; `size` is the exact input length when known; `streaming`: the body is
    /// compressed as it arrives (its state lives as long as the response), not in one shot.
    pub(crate) fn build(&self, size: Option<u64>, streaming: bool) -> Result<Encoder, CodecError> {
        match *self {
            #[cfg(feature = "compression-gzip")]
            EncoderConfig::Gzip(p) => Ok(Encoder::Deflate(DeflateEncoder::new(
                p,
                Encoding::Gzip,
                size,
                streaming,
            ))),
            #[cfg(feature = "compression-deflate")]
            EncoderConfig::Deflate(p) => Ok(Encoder::Deflate(DeflateEncoder::new(
                p,
                Encoding::Deflate,
                size,
                streaming,
            ))),
            #[cfg(feature = "compression-br")]
            EncoderConfig::Brotli(p) => Ok(Encoder::Brotli(Box::new(brotli::encoder(
                p, size, streaming,
            )))),
            #[cfg(feature = "compression-zstd")]
            EncoderConfig::Zstd(ref p, ref pool) => {
                ZstdEncoder::new(p, pool, size, streaming).map(Encoder::Zstd)
            }
        }
    }
}

/// What a response needs from an encoder.
pub(crate) enum Encoder {
    #[cfg(zlib_encoder)]
    Deflate(DeflateEncoder),
    #[cfg(feature = "compression-zstd")]
    Zstd(ZstdEncoder),
    /// Boxed: the `brotli` crate's encoder state is several KiB inline, and responses move.
    #[cfg(feature = "compression-br")]
    Brotli(Box<BrotliEncoder>),
}

impl Encoder {
    /// Compresses all of `input`, appending whatever output the codec releases to `out`.
    #[inline]
    pub(crate) fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        match *self {
            #[cfg(zlib_encoder)]
            Encoder::Deflate(ref mut e) => e.compress(input, out),
            #[cfg(feature = "compression-zstd")]
            Encoder::Zstd(ref mut e) => e.compress(input, out),
            #[cfg(feature = "compression-br")]
            Encoder::Brotli(ref mut e) => e.compress(input, out),
        }
    }

    /// Compresses a whole body at once (the encoder must be fresh); `out` receives the complete
    /// stream. zstd takes its one-pass path (no copy of the input into its window buffer).
    #[inline]
    pub(crate) fn compress_all(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        match *self {
            #[cfg(zlib_encoder)]
            Encoder::Deflate(ref mut e) => e.compress_all(input, out),
            #[cfg(feature = "compression-zstd")]
            Encoder::Zstd(ref mut e) => e.compress_all(input, out),
            #[cfg(feature = "compression-br")]
            Encoder::Brotli(ref mut e) => e.compress_all(input, out),
        }
    }

    /// Emits everything compressed so far so that a decoder can decode it now.
    #[inline]
    pub(crate) fn flush(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        match *self {
            #[cfg(zlib_encoder)]
            Encoder::Deflate(ref mut e) => e.flush(out),
            #[cfg(feature = "compression-zstd")]
            Encoder::Zstd(ref mut e) => e.flush(out),
            #[cfg(feature = "compression-br")]
            Encoder::Brotli(ref mut e) => e.flush(out),
        }
    }

    /// Ends the stream (trailer, checksum).
    #[inline]
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        match *self {
            #[cfg(zlib_encoder)]
            Encoder::Deflate(ref mut e) => e.finish(out),
            #[cfg(feature = "compression-zstd")]
            Encoder::Zstd(ref mut e) => e.finish(out),
            #[cfg(feature = "compression-br")]
            Encoder::Brotli(ref mut e) => e.finish(out),
        }
    }
}

/// One coding's decoder, for one stage of a [`Decoder`](crate::Decoder).
pub(crate) enum CodecDecoder {
    #[cfg(feature = "decompression-gzip")]
    Gzip(GzipDecoder),
    #[cfg(feature = "decompression-deflate")]
    Zlib(ZlibDecoder),
    #[cfg(feature = "decompression-zstd")]
    Zstd(ZstdDecoder),
    #[cfg(feature = "decompression-br")]
    Brotli(BrotliDecoder),
}

// With every decoder feature off the decoder type is uninhabited: the code that hands it data
// is unreachable and its arguments unused.
#[cfg_attr(not(any_decoder), allow(unused_variables, unreachable_code))]
impl CodecDecoder {
    /// A decoder for `encoding` with its state bounded by `limits`; `Unsupported` for a coding
    /// not compiled in (and for `identity`, which has no decoder).
    pub(crate) fn new(encoding: Encoding, limits: &DecodeLimits) -> Result<Self, DecodeError> {
        match encoding {
            #[cfg(feature = "decompression-gzip")]
            Encoding::Gzip => Ok(CodecDecoder::Gzip(deflate::gzip_decoder(limits))),
            #[cfg(feature = "decompression-deflate")]
            Encoding::Deflate => Ok(CodecDecoder::Zlib(deflate::zlib_decoder(limits))),
            #[cfg(feature = "decompression-zstd")]
            Encoding::Zstd => Ok(CodecDecoder::Zstd(ZstdDecoder::new(limits))),
            #[cfg(feature = "decompression-br")]
            Encoding::Brotli => Ok(CodecDecoder::Brotli(BrotliDecoder::new(limits))),
            other => Err(DecodeError::Unsupported(other.as_str().to_owned())),
        }
    }

    /// Whether the decoder stands between complete streams (so the end of input is clean).
    #[inline]
    pub(crate) fn at_boundary(&mut self) -> bool {
        match *self {
            #[cfg(feature = "decompression-gzip")]
            CodecDecoder::Gzip(ref mut d) => d.at_boundary(),
            #[cfg(feature = "decompression-deflate")]
            CodecDecoder::Zlib(ref mut d) => d.at_boundary(),
            #[cfg(feature = "decompression-zstd")]
            CodecDecoder::Zstd(ref mut d) => d.at_boundary(),
            #[cfg(feature = "decompression-br")]
            CodecDecoder::Brotli(ref mut d) => d.at_boundary(),
        }
    }

    /// Decodes from `input` into `out`: how much it consumed and wrote, or `None` when the
    /// stream has ended and `input` is empty (nothing more will come out).
    #[inline]
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        out: &mut [u8],
    ) -> Result<Option<(usize, usize)>, DecodeError> {
        match *self {
            #[cfg(feature = "decompression-gzip")]
            CodecDecoder::Gzip(ref mut d) => d.decode(input, out),
            #[cfg(feature = "decompression-deflate")]
            CodecDecoder::Zlib(ref mut d) => d.decode(input, out),
            #[cfg(feature = "decompression-zstd")]
            CodecDecoder::Zstd(ref mut d) => d.decode(input, out),
            #[cfg(feature = "decompression-br")]
            CodecDecoder::Brotli(ref mut d) => d.decode(input, out),
        }
    }
}

#[cfg(all(test, all_codecs))]
pub(crate) mod tests {
    use super::*;
    use crate::{DecodeLimits, Decoder};

    pub(crate) fn sample() -> Vec<u8> {
        let mut s = Vec::new();
        for i in 0..20_000 {
            s.extend_from_slice(
                format!("{{\"id\":{i},\"name\":\"item {i}\",\"ok\":true}},").as_bytes(),
            );
        }
        s
    }

    fn configs() -> Vec<EncoderConfig> {
        vec![
            EncoderConfig::Gzip(DeflateParams::default()),
            EncoderConfig::Deflate(DeflateParams::default()),
            EncoderConfig::Brotli(BrotliParams::default()),
            EncoderConfig::Zstd(ZstdParams::default(), Arc::new(ZstdPool::new(2, None))),
        ]
    }

    /// Decodes as much of a flushed, unfinished stream as there is.
    fn decode_prefix(encoding: Encoding, data: &[u8]) -> Vec<u8> {
        match Decoder::decode_all(&[encoding], data, DecodeLimits::default()) {
            Err(DecodeError::Truncated { .. }) => {}
            other => panic!("an unfinished stream decodes as truncated, got {other:?}"),
        }
        // Decode again, keeping the output produced before the truncation was noticed.
        let mut decoder = Decoder::new(&[encoding], DecodeLimits::default()).unwrap();
        let mut input = Some(bytes::Bytes::copy_from_slice(data));
        let mut source = |_: &mut std::task::Context<'_>| std::task::Poll::Ready(Ok(input.take()));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut out = Vec::new();
        while let std::task::Poll::Ready(Some(Ok(chunk))) =
            decoder.poll_decode(&mut cx, &mut source)
        {
            out.extend_from_slice(&chunk);
        }
        out
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
                let decoded =
                    Decoder::decode_all(&[config.encoding()], &out, DecodeLimits::default())
                        .unwrap();
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
            let prefix = decode_prefix(config.encoding(), &out);
            assert_eq!(prefix, &data[..5000], "{:?}", config.encoding());
        }
    }
}
