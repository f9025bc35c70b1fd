//! gzip (RFC 1952) and deflate as HTTP means it (zlib-wrapped, RFC 1950) on zlib-rs: the
//! encoder and the decoder.

#[cfg(zlib_encoder)]
use super::{CodecError, Encode, reserve};
use crate::Encoding;
#[cfg(zlib_decoder)]
use crate::limits::{DecodeError, DecodeLimits};
#[cfg(zlib_encoder)]
use crate::params::DeflateParams;

/// zlib's convention: +16 selects the gzip wrapper, a plain value the zlib one.
#[cfg(zlib_decoder)]
const GZIP_WINDOW_BITS: u8 = 16 + 15;
#[cfg(zlib_decoder)]
const ZLIB_WINDOW_BITS: u8 = 15;

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

#[cfg(zlib_decoder)]
pub(crate) struct DeflateDecoder {
    z: Box<zlib_rs::Inflate>,
    gzip: bool,
    /// Between gzip members (or before the first byte).
    at_boundary: bool,
    /// The zlib stream ended (deflate: nothing may follow).
    ended: bool,
}

#[cfg(zlib_decoder)]
impl DeflateDecoder {
    /// A decoder for `encoding` (gzip or deflate). zlib's window is at most 32 KiB: no cap of
    /// [`DecodeLimits`] concerns its state (the byte and ratio caps hold around every codec).
    pub(crate) fn new(encoding: Encoding, _limits: &DecodeLimits) -> Self {
        let gzip = encoding == Encoding::Gzip;
        let window_bits = if gzip {
            GZIP_WINDOW_BITS
        } else {
            ZLIB_WINDOW_BITS
        };
        DeflateDecoder {
            z: Box::new(zlib_rs::Inflate::new(true, window_bits)),
            gzip,
            at_boundary: true,
            ended: false,
        }
    }

    /// Whether the decoder stands between complete streams (so the end of input is clean).
    pub(crate) fn at_boundary(&self) -> bool {
        self.at_boundary || self.ended
    }

    /// Decodes from `input` into `out`: `(consumed, written)`, or `None` when the stream has
    /// ended and there is no more input.
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        out: &mut [u8],
    ) -> Result<Option<(usize, usize)>, DecodeError> {
        let encoding = if self.gzip {
            Encoding::Gzip
        } else {
            Encoding::Deflate
        };
        let corrupt = |reason: &str| DecodeError::Corrupt {
            encoding,
            reason: reason.to_owned(),
        };
        let DeflateDecoder {
            z,
            gzip,
            at_boundary,
            ended,
        } = self;
        if *ended {
            if input.is_empty() {
                return Ok(None);
            }
            // Only gzip may continue with another member; a zlib stream may not be
            // followed by anything.
            if !*gzip {
                return Err(corrupt("data after the end of the stream"));
            }
            **z = zlib_rs::Inflate::new(true, GZIP_WINDOW_BITS);
            *ended = false;
        }
        let (in0, out0) = (z.total_in(), z.total_out());
        let status = z
            .decompress(input, out, zlib_rs::InflateFlush::NoFlush)
            .map_err(|e| corrupt(e.as_str()))?;
        let consumed = (z.total_in() - in0) as usize;
        let written = (z.total_out() - out0) as usize;
        if consumed > 0 {
            *at_boundary = false;
        }
        if status == zlib_rs::Status::StreamEnd {
            *ended = true;
            *at_boundary = true;
        }
        Ok(Some((consumed, written)))
    }
}
