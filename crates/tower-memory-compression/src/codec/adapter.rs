//! compression-codecs' encoders and decoders (the codec layer of `async-compression`) driven by
//! this crate's loops: an encoder appends to a growing `Vec` in steps of at least
//! [`OUT_STEP`](super::OUT_STEP) (the layer's framing decides when to hand bytes on), a decoder
//! writes into the bounded buffer the caps allow.

#[cfg(feature = "compression-br")]
use compression_codecs::Encode;
use compression_codecs::core::util::PartialBuffer;

#[cfg(feature = "compression-br")]
use super::{CodecError, Encode as LayerEncode, reserve};
use crate::Encoding;
#[cfg(any_decoder)]
use crate::limits::DecodeError;

/// A compression-codecs encoder for one response.
#[cfg(feature = "compression-br")]
pub(crate) struct CodecsEncoder<E> {
    inner: E,
    encoding: Encoding,
}

#[cfg(feature = "compression-br")]
impl<E: Encode> CodecsEncoder<E> {
    pub(crate) fn new(inner: E, encoding: Encoding) -> Self {
        CodecsEncoder { inner, encoding }
    }

    /// Runs `step` on the spare capacity of `out` (zeroed: this crate has no `unsafe`, and
    /// zeroing costs far less than the codec), keeping what it wrote, and returns what `step`
    /// returned.
    fn with_spare(
        &mut self,
        out: &mut Vec<u8>,
        step: impl FnOnce(&mut E, &mut PartialBuffer<&mut [u8]>) -> std::io::Result<bool>,
    ) -> Result<bool, CodecError> {
        reserve(out);
        let start = out.len();
        out.resize(out.capacity(), 0);
        let mut buf = PartialBuffer::new(&mut out[start..]);
        let result = step(&mut self.inner, &mut buf);
        let written = buf.written_len();
        out.truncate(start + written);
        result.map_err(|e| CodecError::new(self.encoding, e.to_string()))
    }
}

#[cfg(feature = "compression-br")]
impl<E: Encode> LayerEncode for CodecsEncoder<E> {
    fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        let mut input = PartialBuffer::new(input);
        while !input.unwritten().is_empty() {
            self.with_spare(out, |e, buf| e.encode(&mut input, buf).map(|()| true))?;
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        while !self.with_spare(out, |e, buf| e.flush(buf))? {}
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        while !self.with_spare(out, |e, buf| e.finish(buf))? {}
        Ok(())
    }
}

/// A compression-codecs decoder for one stage of a request body, with what this crate asks of
/// it on top: the end of the data is clean only between streams, and only codings with
/// multi-member framing (gzip members, zstd frames) may go on after a stream ends.
#[cfg(any_decoder)]
pub(crate) struct CodecsDecoder<D> {
    inner: D,
    encoding: Encoding,
    /// Another stream may follow the end of one.
    multi: bool,
    /// Drain pending output with `flush` rather than `decode` when no input is left: flate's
    /// `decode` takes zlib's "no progress possible" for an error.
    drain_by_flush: bool,
    /// Nothing has been decoded since the start or the last stream's end.
    untouched: bool,
    /// A stream ended and no other has begun.
    ended: bool,
}

#[cfg(any_decoder)]
impl<D: compression_codecs::Decode> CodecsDecoder<D> {
    /// A decoder for `encoding`; `multi`: streams may follow each other (gzip members, zstd
    /// frames); `drain_by_flush`: see the field.
    pub(crate) fn new(inner: D, encoding: Encoding, multi: bool, drain_by_flush: bool) -> Self {
        CodecsDecoder {
            inner,
            encoding,
            multi,
            drain_by_flush,
            untouched: true,
            ended: false,
        }
    }

    /// Whether the decoder stands between complete streams (so the end of input is clean).
    /// Asks the codec when it is unsure: a stream's last bytes may come out of a drain.
    pub(crate) fn at_boundary(&mut self) -> bool {
        self.ended
            || self.untouched
            || self
                .inner
                .finish(&mut PartialBuffer::new(&mut [][..]))
                .unwrap_or(false)
    }

    /// Decodes from `input` into `out`: `(consumed, written)`, or `None` when the stream has
    /// ended and there is no more input. A codec error is corrupt data (with the codec's words
    /// as the reason).
    pub(crate) fn decode(
        &mut self,
        input: &[u8],
        out: &mut [u8],
    ) -> Result<Option<(usize, usize)>, DecodeError> {
        let error = corrupt(self.encoding);
        if self.ended {
            if input.is_empty() {
                return Ok(None);
            }
            if !self.multi {
                return Err(DecodeError::Corrupt {
                    encoding: self.encoding,
                    reason: "data after the end of the stream".to_owned(),
                });
            }
            self.inner.reinit().map_err(corrupt(self.encoding))?;
            self.ended = false;
        }
        let mut inb = PartialBuffer::new(input);
        let mut outb = PartialBuffer::new(out);
        let ended = if input.is_empty() && self.drain_by_flush {
            self.inner.flush(&mut outb).map(|_| false)
        } else {
            self.inner.decode(&mut inb, &mut outb)
        }
        .map_err(error)?;
        let (consumed, written) = (inb.written_len(), outb.written_len());
        if consumed > 0 || written > 0 {
            self.untouched = false;
        }
        if ended {
            self.ended = true;
            self.untouched = true;
        }
        Ok(Some((consumed, written)))
    }
}

/// An I/O error of a codec as corrupt data of `encoding`.
#[cfg(any_decoder)]
fn corrupt(encoding: Encoding) -> impl Fn(std::io::Error) -> DecodeError {
    move |e| DecodeError::Corrupt {
        encoding,
        reason: e.to_string(),
    }
}

#[cfg(all(test, all_codecs))]
mod tests {
    use std::task::{Context, Poll};

    use bytes::Bytes;

    use crate::{DecodeError, DecodeLimits, Decoder, Encoding, compress_to_vec};

    /// Decodes `data` fed `step` bytes at a time, with output chunks of `chunk` bytes.
    fn decode_in_pieces(
        encoding: Encoding,
        data: &[u8],
        step: usize,
        chunk: usize,
    ) -> Result<Vec<u8>, DecodeError> {
        let limits = DecodeLimits::default().chunk_size(chunk).max_ratio(0);
        let mut decoder = Decoder::new(&[encoding], limits)?;
        let mut pieces = data.chunks(step).map(Bytes::copy_from_slice);
        let mut source = |_: &mut Context<'_>| Poll::Ready(Ok(pieces.next()));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut out = Vec::new();
        loop {
            match decoder.poll_decode(&mut cx, &mut source) {
                Poll::Ready(Some(Ok(c))) => out.extend_from_slice(&c),
                Poll::Ready(Some(Err(crate::DecodePollError::Decode(e)))) => return Err(e),
                Poll::Ready(None) => return Ok(out),
                other => panic!("an in-memory source neither fails nor waits: {other:?}"),
            }
        }
    }

    #[test]
    fn every_coding_decodes_in_any_pieces_and_exact_output_chunks() {
        // 8 KiB: a whole number of 4 KiB output chunks, so the last one fills its buffer
        // exactly and the stream's end comes out of a drain without input.
        let body: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
        for encoding in Encoding::CODINGS {
            let compressed = compress_to_vec(encoding, &body);
            for (step, chunk) in [(1, 4096), (7, 4096), (compressed.len(), 4096), (3, 1000)] {
                let decoded = decode_in_pieces(encoding, &compressed, step, chunk)
                    .unwrap_or_else(|e| panic!("{encoding} step {step} chunk {chunk}: {e}"));
                assert_eq!(decoded, body, "{encoding} step {step} chunk {chunk}");
            }
        }
    }

    #[test]
    fn multi_member_codings_continue_and_the_others_refuse_what_follows() {
        for encoding in Encoding::CODINGS {
            let mut two = compress_to_vec(encoding, b"first half, ");
            two.extend(compress_to_vec(encoding, b"second half"));
            let result = decode_in_pieces(encoding, &two, 1, 4096);
            match encoding {
                Encoding::Gzip | Encoding::Zstd => {
                    assert_eq!(result.unwrap(), b"first half, second half", "{encoding}")
                }
                _ => assert!(
                    matches!(result, Err(DecodeError::Corrupt { .. })),
                    "{encoding}: {result:?}"
                ),
            }
        }
    }

    #[test]
    fn a_stream_cut_anywhere_is_truncated() {
        let body = vec![b'a'; 20_000];
        for encoding in Encoding::CODINGS {
            let compressed = compress_to_vec(encoding, &body);
            for cut in [1, compressed.len() / 2, compressed.len() - 1] {
                let err = decode_in_pieces(encoding, &compressed[..cut], 1, 4096).unwrap_err();
                assert_eq!(
                    err,
                    DecodeError::Truncated { encoding },
                    "{encoding} cut at {cut}"
                );
            }
        }
    }
}
