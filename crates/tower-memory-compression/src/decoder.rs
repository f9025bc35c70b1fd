//! A streaming decoder with hard caps, for request bodies a client compressed.
//!
//! (Over 400 lines with its unit tests, about 170 of them: the caps are tested where they are
//! enforced.)
//!
//! The caps are enforced inside the decoding loop, not after it: each codec call gets an output
//! buffer no larger than what is still allowed (plus one byte, to see the cap crossed), and the
//! codecs are configured so that their own state is bounded too (zstd's window, brotli's window).
//! A bomb therefore costs at most the cap in output and a bounded codec state, never what it
//! declares or would inflate to.
//!
//! The stages and the caps live here; each codec's own decoding is in its file under `codec/`.

use std::task::{Context, Poll};

use bytes::{Buf, Bytes};

use crate::codec::CodecDecoder;
use crate::limits::{DecodeError, DecodeLimits};
use crate::{BoxError, Encoding};

/// Decodes a body encoded with one or more content codings, under [`DecodeLimits`].
///
/// ```
/// use tower_memory_compression::{DecodeLimits, Decoder, Encoding};
///
/// // 4 MiB of zeros, gzip-compressed to a few KiB: more than the 1 MiB cap.
/// let bomb = tower_memory_compression::compress_to_vec(Encoding::Gzip, &vec![0u8; 4 << 20]);
/// let limits = DecodeLimits::default().max_decoded_bytes(1 << 20);
/// let err = Decoder::decode_all(&[Encoding::Gzip], &bomb, limits).unwrap_err();
/// assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
/// ```
pub struct Decoder {
    /// In decoding order: the last coding applied is decoded first.
    stages: Vec<Stage>,
    limits: DecodeLimits,
    encoded_in: u64,
    decoded_out: u64,
    finished: bool,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field(
                "stages",
                &self.stages.iter().map(|s| s.encoding).collect::<Vec<_>>(),
            )
            .field("limits", &self.limits)
            .field("encoded_in", &self.encoded_in)
            .field("decoded_out", &self.decoded_out)
            .finish()
    }
}

/// Where a [`Decoder`] pulls encoded chunks from: `Ready(Ok(None))` is the end of the data.
pub type DecodeSource<'a> =
    dyn FnMut(&mut Context<'_>) -> Poll<Result<Option<Bytes>, BoxError>> + 'a;

/// An error from [`Decoder::poll_decode`]: the decoder's own, or the source's.
#[derive(Debug)]
#[non_exhaustive]
pub enum DecodePollError {
    /// Decoding failed.
    Decode(DecodeError),
    /// The source failed.
    Source(BoxError),
}

impl Decoder {
    /// A decoder for data to which `codings` were applied in this order (the order of the
    /// `Content-Encoding` list). `identity` entries are skipped.
    pub fn new(codings: &[Encoding], limits: DecodeLimits) -> Result<Decoder, DecodeError> {
        let mut stages = Vec::with_capacity(codings.len());
        for &e in codings.iter().rev() {
            if e == Encoding::Identity {
                continue;
            }
            if !e.can_decompress() {
                return Err(DecodeError::Unsupported(e.as_str().to_owned()));
            }
            stages.push(Stage::new(e, &limits)?);
        }
        Ok(Decoder {
            stages,
            limits,
            encoded_in: 0,
            decoded_out: 0,
            finished: false,
        })
    }

    /// Encoded bytes read from the source so far.
    pub fn encoded_bytes(&self) -> u64 {
        self.encoded_in
    }

    /// Decoded bytes produced so far.
    pub fn decoded_bytes(&self) -> u64 {
        self.decoded_out
    }

    /// Whether decoding has ended (all data decoded, or stopped by an error).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Produces the next decoded chunk, pulling encoded chunks from `source` as needed
    /// (`Ok(None)` from the source is its end). `Ready(None)` once everything is decoded.
    pub fn poll_decode(
        &mut self,
        cx: &mut Context<'_>,
        source: &mut DecodeSource<'_>,
    ) -> Poll<Option<Result<Bytes, DecodePollError>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if self.stages.is_empty() {
            // No coding: pass through, still counting.
            return match source(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(Some(b))) => {
                    self.encoded_in += b.len() as u64;
                    self.decoded_out += b.len() as u64;
                    Poll::Ready(Some(Ok(b)))
                }
                Poll::Ready(Ok(None)) => {
                    self.finished = true;
                    Poll::Ready(None)
                }
                Poll::Ready(Err(e)) => Poll::Ready(Some(Err(DecodePollError::Source(e)))),
            };
        }
        let last = self.stages.len() - 1;
        let mut counted = |n: usize| self.encoded_in += n as u64;
        let result = pull(
            &mut self.stages,
            last,
            &self.limits,
            cx,
            source,
            &mut counted,
        );
        match result {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(chunk))) => {
                self.decoded_out += chunk.len() as u64;
                if let Err(e) = self.check_ratio() {
                    self.finished = true;
                    return Poll::Ready(Some(Err(DecodePollError::Decode(e))));
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Ok(None)) => {
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => {
                self.finished = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn check_ratio(&self) -> Result<(), DecodeError> {
        let l = &self.limits;
        if l.max_ratio > 0
            && self.decoded_out >= l.ratio_grace_bytes
            && self.decoded_out > self.encoded_in.saturating_mul(l.max_ratio)
        {
            return Err(DecodeError::RatioExceeded {
                limit: l.max_ratio,
                decoded: self.decoded_out,
                encoded: self.encoded_in,
            });
        }
        Ok(())
    }

    /// Decodes a complete body in memory.
    pub fn decode_all(
        codings: &[Encoding],
        data: &[u8],
        limits: DecodeLimits,
    ) -> Result<Vec<u8>, DecodeError> {
        let mut decoder = Decoder::new(codings, limits)?;
        let mut input = Some(Bytes::copy_from_slice(data));
        let mut source = |_: &mut Context<'_>| Poll::Ready(Ok(input.take()));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut out = Vec::new();
        loop {
            match decoder.poll_decode(&mut cx, &mut source) {
                Poll::Ready(Some(Ok(chunk))) => out.extend_from_slice(&chunk),
                Poll::Ready(Some(Err(DecodePollError::Decode(e)))) => return Err(e),
                Poll::Ready(Some(Err(DecodePollError::Source(_)))) | Poll::Pending => {
                    unreachable!("an in-memory source neither fails nor waits")
                }
                Poll::Ready(None) => return Ok(out),
            }
        }
    }
}

/// The next chunk out of stage `i`, pulling its input from stage `i - 1` or, for stage 0, from
/// `source`. `Ok(None)`: stage `i` ended cleanly.
fn pull(
    stages: &mut [Stage],
    i: usize,
    limits: &DecodeLimits,
    cx: &mut Context<'_>,
    source: &mut DecodeSource<'_>,
    count_encoded: &mut dyn FnMut(usize),
) -> Poll<Result<Option<Bytes>, DecodePollError>> {
    loop {
        let (before, rest) = stages.split_at_mut(i);
        let stage = &mut rest[0];
        if stage.input.has_remaining() || stage.more_output {
            // Every stage is held to the cap on its own output (the last stage's output is the
            // body).
            let produced = stage.produced;
            let allowed = limits.max_decoded_bytes.saturating_sub(produced);
            let max = (allowed.saturating_add(1)).min(limits.chunk_size.max(1) as u64) as usize;
            let chunk = stage.step(max).map_err(DecodePollError::Decode)?;
            if produced + chunk.len() as u64 > limits.max_decoded_bytes {
                return Poll::Ready(Err(DecodePollError::Decode(DecodeError::TooLarge {
                    limit: limits.max_decoded_bytes,
                })));
            }
            if !chunk.is_empty() {
                return Poll::Ready(Ok(Some(chunk)));
            }
            if stage.input.has_remaining() || stage.more_output {
                // The codec consumed input without output yet; go on.
                continue;
            }
        }
        // Stage `i` needs input.
        let next = if i == 0 {
            match source(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(DecodePollError::Source(e))),
                Poll::Ready(Ok(next)) => {
                    if let Some(b) = &next {
                        count_encoded(b.len());
                    }
                    next
                }
            }
        } else {
            match pull(before, i - 1, limits, cx, source, count_encoded) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(next)) => next,
            }
        };
        let stage = &mut stages[i];
        match next {
            Some(b) => stage.input = b,
            None => {
                return if stage.at_boundary() {
                    Poll::Ready(Ok(None))
                } else {
                    Poll::Ready(Err(DecodePollError::Decode(DecodeError::Truncated {
                        encoding: stage.encoding,
                    })))
                };
            }
        }
    }
}

/// One coding's decoder plus its pending input.
struct Stage {
    encoding: Encoding,
    codec: CodecDecoder,
    input: Bytes,
    /// The last call filled its output: the codec may hold more without new input.
    more_output: bool,
    produced: u64,
}

impl Stage {
    fn new(encoding: Encoding, limits: &DecodeLimits) -> Result<Stage, DecodeError> {
        Ok(Stage {
            encoding,
            codec: CodecDecoder::new(encoding, limits)?,
            input: Bytes::new(),
            more_output: false,
            produced: 0,
        })
    }

    /// Whether the stage stands between complete streams (so the end of input is clean).
    fn at_boundary(&mut self) -> bool {
        self.codec.at_boundary()
    }

    /// Decodes from `self.input` into a fresh chunk of at most `max` bytes.
    fn step(&mut self, max: usize) -> Result<Bytes, DecodeError> {
        let mut out = vec![0u8; max];
        let Some((consumed, written)) = self.codec.decode(&self.input, &mut out)? else {
            // The stream has ended and no input follows.
            self.more_output = false;
            return Ok(Bytes::new());
        };
        self.input.advance(consumed);
        self.more_output = written == max;
        self.produced += written as u64;
        out.truncate(written);
        Ok(Bytes::from(out))
    }
}

#[cfg(all(test, all_codecs))]
mod tests {
    use http::StatusCode;

    use super::*;
    use crate::compress_to_vec;

    fn zeros(n: usize) -> Vec<u8> {
        vec![0u8; n]
    }

    fn codings() -> Vec<Encoding> {
        Encoding::CODINGS
            .into_iter()
            .filter(|e| e.can_decompress())
            .collect()
    }

    #[test]
    fn round_trip_each_coding_and_stacks() {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        // Far more compressible than 100:1: the ratio cap is not what this test is about.
        let limits = DecodeLimits {
            max_ratio: 0,
            ..DecodeLimits::default()
        };
        for e in codings() {
            let c = compress_to_vec(e, &data);
            assert_eq!(Decoder::decode_all(&[e], &c, limits).unwrap(), data);
        }
        let inner = compress_to_vec(Encoding::Gzip, &data);
        let outer = compress_to_vec(Encoding::Zstd, &inner);
        let decoded = Decoder::decode_all(
            &[Encoding::Gzip, Encoding::Identity, Encoding::Zstd],
            &outer,
            limits,
        )
        .unwrap();
        assert_eq!(decoded, data);
    }

    #[test]
    fn caps_hold_for_every_coding() {
        let limits = DecodeLimits {
            max_decoded_bytes: 2 << 20,
            ..DecodeLimits::default()
        };
        for e in codings() {
            // 3 MiB of zeros: over the 2 MiB cap (and over 100:1).
            let bomb = compress_to_vec(e, &zeros(3 << 20));
            let err = Decoder::decode_all(&[e], &bomb, limits).unwrap_err();
            assert!(err.is_limit(), "{e}: {err}");
            assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
            // Without the ratio cap the byte cap still holds.
            let no_ratio = DecodeLimits {
                max_ratio: 0,
                ..limits
            };
            let err = Decoder::decode_all(&[e], &bomb, no_ratio).unwrap_err();
            assert_eq!(err, DecodeError::TooLarge { limit: 2 << 20 }, "{e}");
        }
        // exactly at the cap is fine
        let exact = compress_to_vec(Encoding::Gzip, &[7u8; 1000]);
        let tight = DecodeLimits {
            max_decoded_bytes: 1000,
            ..DecodeLimits::default()
        };
        assert_eq!(
            Decoder::decode_all(&[Encoding::Gzip], &exact, tight)
                .unwrap()
                .len(),
            1000
        );
        let tighter = DecodeLimits {
            max_decoded_bytes: 999,
            ..tight
        };
        assert!(
            Decoder::decode_all(&[Encoding::Gzip], &exact, tighter)
                .unwrap_err()
                .is_limit()
        );
    }

    #[test]
    fn ratio_cap_applies_after_the_grace() {
        // 2 MiB of zeros compress far beyond 100:1.
        let bomb = compress_to_vec(Encoding::Gzip, &zeros(2 << 20));
        let err =
            Decoder::decode_all(&[Encoding::Gzip], &bomb, DecodeLimits::default()).unwrap_err();
        assert!(
            matches!(err, DecodeError::RatioExceeded { limit: 100, .. }),
            "{err}"
        );
        // under the grace the ratio does not count
        let small = compress_to_vec(Encoding::Gzip, &zeros(512 << 10));
        assert_eq!(
            Decoder::decode_all(&[Encoding::Gzip], &small, DecodeLimits::default())
                .unwrap()
                .len(),
            512 << 10
        );
    }

    #[test]
    fn stacked_bomb_is_capped_at_every_stage() {
        let inner = compress_to_vec(Encoding::Gzip, &zeros(8 << 20));
        let outer = compress_to_vec(Encoding::Gzip, &inner);
        let limits = DecodeLimits {
            max_decoded_bytes: 1 << 20,
            max_ratio: 0,
            ..DecodeLimits::default()
        };
        let err =
            Decoder::decode_all(&[Encoding::Gzip, Encoding::Gzip], &outer, limits).unwrap_err();
        assert_eq!(err, DecodeError::TooLarge { limit: 1 << 20 });
    }

    #[test]
    fn corrupt_and_truncated() {
        for e in codings() {
            let err = Decoder::decode_all(
                &[e],
                b"this is not compressed data at all",
                DecodeLimits::default(),
            )
            .unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{e}: {err}");
            let c = compress_to_vec(e, &[1u8; 10_000]);
            let err =
                Decoder::decode_all(&[e], &c[..c.len() / 2], DecodeLimits::default()).unwrap_err();
            assert_eq!(err, DecodeError::Truncated { encoding: e }, "{e}");
            let mut trailing = c.clone();
            trailing.extend_from_slice(b"garbage");
            let err = Decoder::decode_all(&[e], &trailing, DecodeLimits::default()).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{e}: {err}");
        }
        // gzip members may follow each other
        let mut two = compress_to_vec(Encoding::Gzip, b"hello ");
        two.extend(compress_to_vec(Encoding::Gzip, b"world"));
        assert_eq!(
            Decoder::decode_all(&[Encoding::Gzip], &two, DecodeLimits::default()).unwrap(),
            b"hello world"
        );
        // zstd frames too
        let mut two = compress_to_vec(Encoding::Zstd, b"hello ");
        two.extend(compress_to_vec(Encoding::Zstd, b"world"));
        assert_eq!(
            Decoder::decode_all(&[Encoding::Zstd], &two, DecodeLimits::default()).unwrap(),
            b"hello world"
        );
        // an empty body decodes to an empty body, whatever its coding says
        for e in codings() {
            assert_eq!(
                Decoder::decode_all(&[e], b"", DecodeLimits::default()).unwrap(),
                b""
            );
        }
        assert_eq!(
            Decoder::decode_all(&[], b"abc", DecodeLimits::default()).unwrap(),
            b"abc"
        );
    }
}
