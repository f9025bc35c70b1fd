//! brotli (RFC 7932) through the pure-Rust `brotli` crate: the encoder with a window fitted to
//! the body, and the decoder with a cap on the window a stream may declare.

#[cfg(feature = "compression-br")]
use super::{CodecError, Encode, reserve};
use crate::Encoding;
#[cfg(feature = "decompression-br")]
use crate::limits::{DecodeError, DecodeLimits};
#[cfg(feature = "compression-br")]
use crate::params::BrotliParams;

#[cfg(feature = "compression-br")]
type BrotliEncoderState =
    ::brotli::enc::encode::BrotliEncoderStateStruct<brotli::enc::StandardAlloc>;

#[cfg(feature = "compression-br")]
#[derive(Clone, Copy)]
enum Op {
    Process,
    Flush,
    Finish,
}

#[cfg(feature = "compression-br")]
pub(crate) struct BrotliEncoder {
    // The state is several KiB inline; boxed so responses move cheaply.
    state: Box<BrotliEncoderState>,
}

#[cfg(feature = "compression-br")]
impl BrotliEncoder {
    pub(crate) fn new(params: BrotliParams, size: Option<u64>, streaming: bool) -> Self {
        use ::brotli::enc::encode::BrotliEncoderParameter::*;
        let mut state = Box::new(BrotliEncoderState::new(
            ::brotli::enc::StandardAlloc::default(),
        ));
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
        use ::brotli::enc::encode::BrotliEncoderOperation as O;
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

#[cfg(feature = "compression-br")]
impl Encode for BrotliEncoder {
    #[inline]
    fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.run(input, out, Op::Process)
    }

    #[inline]
    fn flush(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.run(&[], out, Op::Flush)
    }

    #[inline]
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.run(&[], out, Op::Finish)
    }
}

#[cfg(feature = "decompression-br")]
type BrotliDecoderState = ::brotli::BrotliState<
    ::brotli::enc::StandardAlloc,
    ::brotli::enc::StandardAlloc,
    ::brotli::enc::StandardAlloc,
>;

#[cfg(feature = "decompression-br")]
pub(crate) struct BrotliDecoder {
    state: Box<BrotliDecoderState>,
    window_bits_max: u32,
    started: bool,
    ended: bool,
}

#[cfg(feature = "decompression-br")]
impl BrotliDecoder {
    /// A decoder that refuses streams declaring a window above `limits.brotli_window_bits_max`
    /// (and every large-window stream) before decoding them.
    pub(crate) fn new(limits: &DecodeLimits) -> Self {
        BrotliDecoder {
            state: Box::new(BrotliDecoderState::new(
                ::brotli::enc::StandardAlloc::default(),
                ::brotli::enc::StandardAlloc::default(),
                ::brotli::enc::StandardAlloc::default(),
            )),
            window_bits_max: limits.brotli_window_bits_max.clamp(10, 24),
            started: false,
            ended: false,
        }
    }

    /// Whether the decoder stands between complete streams (so the end of input is clean).
    pub(crate) fn at_boundary(&self) -> bool {
        self.ended || !self.started
    }

    /// Decodes from `input` into `out`: `(consumed, written)`, or `None` when the stream has
    /// ended and there is no more input.
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        out: &mut [u8],
    ) -> Result<Option<(usize, usize)>, DecodeError> {
        let corrupt = |reason: &str| DecodeError::Corrupt {
            encoding: Encoding::Brotli,
            reason: reason.to_owned(),
        };
        let BrotliDecoder {
            state,
            window_bits_max,
            started,
            ended,
        } = self;
        if *ended {
            if input.is_empty() {
                return Ok(None);
            }
            return Err(corrupt("data after the end of the stream"));
        }
        if !*started && !input.is_empty() {
            check_window(input[0], *window_bits_max)?;
            *started = true;
        }
        let mut avail_in = input.len();
        let mut in_offset = 0;
        let mut avail_out = out.len();
        let mut out_offset = 0;
        let mut total = 0;
        let result = ::brotli::BrotliDecompressStream(
            &mut avail_in,
            &mut in_offset,
            input,
            &mut avail_out,
            &mut out_offset,
            out,
            &mut total,
            state,
        );
        match result {
            ::brotli::BrotliResult::ResultFailure => {
                return Err(corrupt("invalid brotli stream"));
            }
            ::brotli::BrotliResult::ResultSuccess => *ended = true,
            _ => {}
        }
        Ok(Some((in_offset, out_offset)))
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
