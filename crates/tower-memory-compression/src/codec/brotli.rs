//! brotli (RFC 7932) on compression-codecs (the `brotli` crate underneath): the encoder with a
//! window fitted to the body and the body's size as its hint, and the decoder behind a check of
//! the window a stream declares.

#[cfg(feature = "decompression-br")]
use super::adapter::CodecsDecoder;
#[cfg(feature = "compression-br")]
use super::adapter::CodecsEncoder;
use crate::Encoding;
#[cfg(feature = "decompression-br")]
use crate::limits::{DecodeError, DecodeLimits};
#[cfg(feature = "compression-br")]
use crate::params::BrotliParams;

/// A brotli encoder for one response.
#[cfg(feature = "compression-br")]
pub(crate) type BrotliEncoder = CodecsEncoder<compression_codecs::BrotliEncoder>;

/// A brotli encoder with the quality for one-shot or streamed bodies, a window fitted to a body
/// of known `size` and that size as the encoder's hint.
#[cfg(feature = "compression-br")]
pub(crate) fn encoder(params: BrotliParams, size: Option<u64>, streaming: bool) -> BrotliEncoder {
    use compression_codecs::brotli::params::EncoderParams;
    let quality = if streaming {
        params.stream_quality
    } else {
        params.quality
    };
    let window = params.window_for(size, streaming);
    let mut p = EncoderParams::default()
        .quality(compression_codecs::core::Level::Precise(
            quality.min(11) as i32
        ))
        .window_size(window as i32);
    if let Some(n) = size {
        p = p.size_hint(usize::try_from(n).unwrap_or(usize::MAX));
    }
    CodecsEncoder::new(compression_codecs::BrotliEncoder::new(p), Encoding::Brotli)
}

/// A brotli decoder behind the check of the window the stream declares.
#[cfg(feature = "decompression-br")]
pub(crate) struct BrotliDecoder {
    inner: CodecsDecoder<compression_codecs::BrotliDecoder>,
    window_bits_max: u32,
    started: bool,
}

#[cfg(feature = "decompression-br")]
impl BrotliDecoder {
    /// A decoder that refuses streams declaring a window above `limits.brotli_window_bits_max`
    /// (and every large-window stream) before decoding them.
    pub(crate) fn new(limits: &DecodeLimits) -> Self {
        BrotliDecoder {
            // Single-stream; brotli's `decode` drains pending output without input.
            inner: CodecsDecoder::new(
                compression_codecs::BrotliDecoder::new(),
                Encoding::Brotli,
                false,
                false,
            ),
            window_bits_max: limits.brotli_window_bits_max.clamp(10, 24),
            started: false,
        }
    }

    /// Whether the decoder stands between complete streams (so the end of input is clean).
    pub(crate) fn at_boundary(&mut self) -> bool {
        self.inner.at_boundary()
    }

    /// Decodes from `input` into `out`: `(consumed, written)`, or `None` when the stream has
    /// ended and there is no more input.
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        out: &mut [u8],
    ) -> Result<Option<(usize, usize)>, DecodeError> {
        if !self.started && !input.is_empty() {
            check_window(input[0], self.window_bits_max)?;
            self.started = true;
        }
        self.inner.decode(input, out)
    }
}

#[cfg(feature = "decompression-br")]
/// Reads WBITS from the first byte of a brotli stream (RFC 7932 section 9.1) and refuses
/// large-window streams and windows above `max_bits`.
fn check_window(first: u8, max_bits: u32) -> Result<(), DecodeError> {
    let too_large = |_| DecodeError::WindowTooLarge {
        encoding: Encoding::Brotli,
        limit_log: max_bits,
    };
    let bits = if first & 1 == 0 {
        16
    } else if (first >> 1) & 7 != 0 {
        17 + u32::from((first >> 1) & 7)
    } else {
        match (first >> 4) & 7 {
            // 0b0010001: the large-window marker.
            1 => return Err(too_large(())),
            0 => 17,
            n => 8 + u32::from(n),
        }
    };
    if bits > max_bits {
        return Err(too_large(()));
    }
    Ok(())
}

#[cfg(all(test, all_codecs))]
mod tests {
    use super::*;
    use crate::{DecodeLimits, Decoder};

    #[test]
    fn brotli_windows() {
        // WBITS encodings of the first byte
        assert!(check_window(0b0000_0000, 24).is_ok()); // 16
        assert!(check_window(0b0000_1111, 24).is_ok()); // 24
        assert!(check_window(0b0000_1111, 22).is_err()); // 24 > 22
        assert!(check_window(0b0001_0001, 24).is_err()); // large window marker
        assert!(check_window(0b0000_0001, 17).is_ok()); // 17
        assert!(check_window(0b0010_0001, 10).is_ok()); // 10
        // a real large-window stream header is refused as a cap, not as corruption
        let err = Decoder::decode_all(
            &[Encoding::Brotli],
            &[0x11, 0x1e, 0x00],
            DecodeLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, DecodeError::WindowTooLarge { .. }), "{err}");
    }
}
