//! gzip (RFC 1952) and deflate as HTTP means it (zlib-wrapped, RFC 1950): the encoder on
//! zlib-rs, kept hand-written because it takes zlib's `memLevel` and window bits (which
//! compression-codecs' flate encoders do not), and the decoders on compression-codecs (flate2
//! with its zlib-rs backend).

#[cfg(zlib_decoder)]
use super::adapter::CodecsDecoder;
#[cfg(zlib_encoder)]
use super::{CodecError, Encode, reserve};
use crate::Encoding;
#[cfg(zlib_decoder)]
use crate::limits::DecodeLimits;
#[cfg(zlib_encoder)]
use crate::params::DeflateParams;

#[cfg(zlib_encoder)]
pub(crate) struct DeflateEncoder {
    z: zlib_rs::Deflate,
    encoding: Encoding,
}

#[cfg(zlib_encoder)]
impl DeflateEncoder {
    /// A fresh encoder for `encoding` (gzip or deflate). The arguments after it are those every
    /// codec's constructor takes: zlib sizes nothing to the body.
    pub(crate) fn new(
        params: DeflateParams,
        encoding: Encoding,
        _size: Option<u64>,
        _streaming: bool,
    ) -> Self {
        let gzip = encoding == Encoding::Gzip;
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

#[cfg(zlib_encoder)]
impl Encode for DeflateEncoder {
    #[inline]
    fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.run(input, out, zlib_rs::DeflateFlush::NoFlush)
    }

    #[inline]
    fn flush(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.run(&[], out, zlib_rs::DeflateFlush::SyncFlush)
    }

    #[inline]
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.run(&[], out, zlib_rs::DeflateFlush::Finish)
    }
}

/// A gzip decoder: members may follow each other.
#[cfg(feature = "decompression-gzip")]
pub(crate) type GzipDecoder = CodecsDecoder<compression_codecs::GzipDecoder>;

/// A zlib-wrapped deflate decoder: nothing may follow the stream.
#[cfg(feature = "decompression-deflate")]
pub(crate) type ZlibDecoder = CodecsDecoder<compression_codecs::ZlibDecoder>;

/// A gzip decoder. zlib's window is at most 32 KiB: no cap of [`DecodeLimits`] concerns its
/// state (the byte and ratio caps hold around every codec).
#[cfg(feature = "decompression-gzip")]
pub(crate) fn gzip_decoder(_limits: &DecodeLimits) -> GzipDecoder {
    // Drained by `flush`: flate's `decode` takes zlib's "no progress possible" for an error.
    CodecsDecoder::new(
        compression_codecs::GzipDecoder::new(),
        Encoding::Gzip,
        true,
        true,
    )
}

/// A zlib-wrapped deflate decoder, as [`gzip_decoder`] but single-stream.
#[cfg(feature = "decompression-deflate")]
pub(crate) fn zlib_decoder(_limits: &DecodeLimits) -> ZlibDecoder {
    CodecsDecoder::new(
        compression_codecs::ZlibDecoder::new(),
        Encoding::Deflate,
        false,
        true,
    )
}
