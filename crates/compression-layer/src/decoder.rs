//! A streaming decoder with hard caps, for request bodies a client compressed.
//!
//! The caps are enforced inside the decoding loop, not after it: each codec call gets an output
//! buffer no larger than what is still allowed (plus one byte, to see the cap crossed), and the
//! codecs are configured so that their own state is bounded too (zstd's window, brotli's window).
//! A bomb therefore costs at most the cap in output and a bounded codec state, never what it
//! declares or would inflate to.

use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::StatusCode;

use crate::{BoxError, Encoding};

/// The caps a [`Decoder`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Most bytes any decoding stage may produce. Default 64 MiB.
    pub max_decoded_bytes: u64,
    /// Largest decoded/encoded ratio, enforced once [`ratio_grace_bytes`](Self::ratio_grace_bytes)
    /// are decoded. Default 100 (100:1). `0` disables the check.
    pub max_ratio: u64,
    /// Decoded bytes below which the ratio is not checked (tiny bodies compress extremely well).
    /// Default 1 MiB.
    pub ratio_grace_bytes: u64,
    /// Largest zstd window (base-two logarithm) a frame may declare. Default 23 (8 MiB, what
    /// RFC 8878 asks decoders to support).
    pub zstd_window_log_max: u32,
    /// Largest brotli window (base-two logarithm), 10 to 24. Default 24 (16 MiB, the largest a
    /// standard stream can declare). Large-window streams (RFC 7932 extension, up to 1 GiB) are
    /// always refused.
    pub brotli_window_bits_max: u32,
    /// Size of the decoded chunks handed on. Default 64 KiB.
    pub chunk_size: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_decoded_bytes: 64 * 1024 * 1024,
            max_ratio: 100,
            ratio_grace_bytes: 1024 * 1024,
            zstd_window_log_max: 23,
            brotli_window_bits_max: 24,
            chunk_size: 64 * 1024,
        }
    }
}

/// Why decoding stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The decoded body would exceed [`DecodeLimits::max_decoded_bytes`].
    #[error("decoded body exceeds {limit} bytes")]
    TooLarge {
        /// The cap in bytes.
        limit: u64,
    },
    /// The decoded/encoded ratio exceeds [`DecodeLimits::max_ratio`].
    #[error("compression ratio exceeds {limit}:1 ({decoded} bytes from {encoded})")]
    RatioExceeded {
        /// The cap.
        limit: u64,
        /// Decoded bytes so far.
        decoded: u64,
        /// Encoded bytes read so far.
        encoded: u64,
    },
    /// A zstd frame or brotli stream declares a window above the cap, or is a large-window
    /// brotli stream.
    #[error("{encoding} stream needs a window above the limit of 2^{limit_log} bytes")]
    WindowTooLarge {
        /// The coding.
        encoding: Encoding,
        /// The cap, base-two logarithm.
        limit_log: u32,
    },
    /// The data is not valid for its coding.
    #[error("corrupt {encoding} data: {reason}")]
    Corrupt {
        /// The coding.
        encoding: Encoding,
        /// What the codec said.
        reason: String,
    },
    /// The body ended inside a compressed stream.
    #[error("{encoding} data ends early")]
    Truncated {
        /// The coding.
        encoding: Encoding,
    },
    /// The coding is not supported by this decoder.
    #[error("unsupported content coding {0:?}")]
    Unsupported(String),
}

impl DecodeError {
    /// Whether a cap stopped decoding (as opposed to bad data).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            DecodeError::TooLarge { .. }
                | DecodeError::RatioExceeded { .. }
                | DecodeError::WindowTooLarge { .. }
        )
    }

    /// The status a server answers with: 413 for a cap, 415 for an unsupported coding, 400 for
    /// bad data.
    pub fn status(&self) -> StatusCode {
        match self {
            DecodeError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            e if e.is_limit() => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Decodes a body encoded with one or more content codings, under [`DecodeLimits`].
///
/// ```
/// use compression_layer::{DecodeLimits, Decoder, Encoding};
///
/// // 4 MiB of zeros, gzip-compressed to a few KiB: more than the 1 MiB cap.
/// let bomb = compression_layer::compress_to_vec(Encoding::Gzip, &vec![0u8; 4 << 20]);
/// let limits = DecodeLimits { max_decoded_bytes: 1 << 20, ..DecodeLimits::default() };
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
pub type Source<'a> = dyn FnMut(&mut Context<'_>) -> Poll<Result<Option<Bytes>, BoxError>> + 'a;

/// An error from [`Decoder::poll_decode`]: the decoder's own, or the source's.
#[derive(Debug)]
pub enum PollError {
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
            if !e.is_compiled() {
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
        source: &mut Source<'_>,
    ) -> Poll<Option<Result<Bytes, PollError>>> {
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
                Poll::Ready(Err(e)) => Poll::Ready(Some(Err(PollError::Source(e)))),
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
                    return Poll::Ready(Some(Err(PollError::Decode(e))));
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
                Poll::Ready(Some(Err(PollError::Decode(e)))) => return Err(e),
                Poll::Ready(Some(Err(PollError::Source(_)))) | Poll::Pending => {
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
    source: &mut Source<'_>,
    count_encoded: &mut dyn FnMut(usize),
) -> Poll<Result<Option<Bytes>, PollError>> {
    loop {
        let (before, rest) = stages.split_at_mut(i);
        let stage = &mut rest[0];
        if stage.input.has_remaining() || stage.more_output {
            // Every stage is held to the cap on its own output (the last stage's output is the
            // body).
            let produced = stage.produced;
            let allowed = limits.max_decoded_bytes.saturating_sub(produced);
            let max = (allowed.saturating_add(1)).min(limits.chunk_size.max(1) as u64) as usize;
            let chunk = stage.step(max).map_err(PollError::Decode)?;
            if produced + chunk.len() as u64 > limits.max_decoded_bytes {
                return Poll::Ready(Err(PollError::Decode(DecodeError::TooLarge {
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
                Poll::Ready(Err(e)) => return Poll::Ready(Err(PollError::Source(e))),
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
                    Poll::Ready(Err(PollError::Decode(DecodeError::Truncated {
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
    codec: Codec,
    input: Bytes,
    /// The last call filled its output: the codec may hold more without new input.
    more_output: bool,
    produced: u64,
}

enum Codec {
    #[cfg(any(feature = "gzip", feature = "deflate"))]
    Inflate {
        z: Box<zlib_rs::Inflate>,
        gzip: bool,
        /// Between gzip members (or before the first byte).
        at_boundary: bool,
        /// The zlib stream ended (deflate: nothing may follow).
        ended: bool,
    },
    #[cfg(feature = "zstd")]
    Zstd {
        ctx: zstd_safe::DCtx<'static>,
        window_log_max: u32,
        at_boundary: bool,
    },
    #[cfg(feature = "br")]
    Brotli {
        state: Box<BrotliState>,
        window_bits_max: u32,
        started: bool,
        ended: bool,
    },
}

#[cfg(feature = "br")]
type BrotliState = brotli::BrotliState<
    brotli::enc::StandardAlloc,
    brotli::enc::StandardAlloc,
    brotli::enc::StandardAlloc,
>;

impl Stage {
    fn new(encoding: Encoding, limits: &DecodeLimits) -> Result<Stage, DecodeError> {
        let _ = limits;
        let codec = match encoding {
            #[cfg(feature = "gzip")]
            Encoding::Gzip => Codec::Inflate {
                z: Box::new(zlib_rs::Inflate::new(true, 16 + 15)),
                gzip: true,
                at_boundary: true,
                ended: false,
            },
            #[cfg(feature = "deflate")]
            Encoding::Deflate => Codec::Inflate {
                z: Box::new(zlib_rs::Inflate::new(true, 15)),
                gzip: false,
                at_boundary: true,
                ended: false,
            },
            #[cfg(feature = "zstd")]
            Encoding::Zstd => {
                let mut ctx =
                    zstd_safe::DCtx::try_create().ok_or_else(|| DecodeError::Corrupt {
                        encoding,
                        reason: "cannot allocate a zstd context".into(),
                    })?;
                let window_log_max = limits.zstd_window_log_max.clamp(10, 31);
                ctx.set_parameter(zstd_safe::DParameter::WindowLogMax(window_log_max))
                    .map_err(|c| DecodeError::Corrupt {
                        encoding,
                        reason: zstd_safe::get_error_name(c).into(),
                    })?;
                Codec::Zstd {
                    ctx,
                    window_log_max,
                    at_boundary: true,
                }
            }
            #[cfg(feature = "br")]
            Encoding::Brotli => Codec::Brotli {
                state: Box::new(BrotliState::new(
                    brotli::enc::StandardAlloc::default(),
                    brotli::enc::StandardAlloc::default(),
                    brotli::enc::StandardAlloc::default(),
                )),
                window_bits_max: limits.brotli_window_bits_max.clamp(10, 24),
                started: false,
                ended: false,
            },
            other => return Err(DecodeError::Unsupported(other.as_str().to_owned())),
        };
        Ok(Stage {
            encoding,
            codec,
            input: Bytes::new(),
            more_output: false,
            produced: 0,
        })
    }

    /// Whether the stage stands between complete streams (so the end of input is clean).
    fn at_boundary(&self) -> bool {
        match &self.codec {
            #[cfg(any(feature = "gzip", feature = "deflate"))]
            Codec::Inflate {
                at_boundary, ended, ..
            } => *at_boundary || *ended,
            #[cfg(feature = "zstd")]
            Codec::Zstd { at_boundary, .. } => *at_boundary,
            #[cfg(feature = "br")]
            Codec::Brotli { started, ended, .. } => *ended || !*started,
            #[cfg(not(any(
                feature = "gzip",
                feature = "deflate",
                feature = "br",
                feature = "zstd"
            )))]
            _ => unreachable!("no codec is compiled in"),
        }
    }

    /// Decodes from `self.input` into a fresh chunk of at most `max` bytes.
    fn step(&mut self, max: usize) -> Result<Bytes, DecodeError> {
        let encoding = self.encoding;
        let corrupt = |reason: &str| DecodeError::Corrupt {
            encoding,
            reason: reason.to_owned(),
        };
        let mut out = vec![0u8; max];
        let (consumed, written) = match &mut self.codec {
            #[cfg(any(feature = "gzip", feature = "deflate"))]
            Codec::Inflate {
                z,
                gzip,
                at_boundary,
                ended,
            } => {
                if *ended {
                    if self.input.is_empty() {
                        self.more_output = false;
                        return Ok(Bytes::new());
                    }
                    // Only gzip may continue with another member; a zlib stream may not be
                    // followed by anything.
                    if !*gzip {
                        return Err(corrupt("data after the end of the stream"));
                    }
                    **z = zlib_rs::Inflate::new(true, 16 + 15);
                    *ended = false;
                }
                let (in0, out0) = (z.total_in(), z.total_out());
                let status = z
                    .decompress(&self.input, &mut out, zlib_rs::InflateFlush::NoFlush)
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
                (consumed, written)
            }
            #[cfg(feature = "zstd")]
            Codec::Zstd {
                ctx,
                window_log_max,
                at_boundary,
            } => {
                use zstd_safe::{InBuffer, OutBuffer, zstd_sys::ZSTD_ErrorCode};
                let mut inb = InBuffer::around(&self.input);
                let mut outb = OutBuffer::around(&mut out[..]);
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
                (consumed, written)
            }
            #[cfg(feature = "br")]
            Codec::Brotli {
                state,
                window_bits_max,
                started,
                ended,
            } => {
                if *ended {
                    if self.input.is_empty() {
                        self.more_output = false;
                        return Ok(Bytes::new());
                    }
                    return Err(corrupt("data after the end of the stream"));
                }
                if !*started && !self.input.is_empty() {
                    check_brotli_window(self.input[0], *window_bits_max)?;
                    *started = true;
                }
                let mut avail_in = self.input.len();
                let mut in_offset = 0;
                let mut avail_out = out.len();
                let mut out_offset = 0;
                let mut total = 0;
                let result = brotli::BrotliDecompressStream(
                    &mut avail_in,
                    &mut in_offset,
                    &self.input,
                    &mut avail_out,
                    &mut out_offset,
                    &mut out,
                    &mut total,
                    state,
                );
                match result {
                    brotli::BrotliResult::ResultFailure => {
                        return Err(corrupt("invalid brotli stream"));
                    }
                    brotli::BrotliResult::ResultSuccess => *ended = true,
                    _ => {}
                }
                (in_offset, out_offset)
            }
            #[cfg(not(any(
                feature = "gzip",
                feature = "deflate",
                feature = "br",
                feature = "zstd"
            )))]
            _ => unreachable!("no codec is compiled in"),
        };
        self.input.advance(consumed);
        self.more_output = written == max;
        self.produced += written as u64;
        out.truncate(written);
        Ok(Bytes::from(out))
    }
}

/// Reads WBITS from the first byte of a brotli stream (RFC 7932 section 9.1) and refuses
/// large-window streams and windows above `max_bits`.
#[cfg(feature = "br")]
fn check_brotli_window(first: u8, max_bits: u32) -> Result<(), DecodeError> {
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

/// Decodes a complete stream without caps beyond the defaults (tests).
#[cfg(all(
    test,
    feature = "gzip",
    feature = "deflate",
    feature = "br",
    feature = "zstd"
))]
pub(crate) fn decode_all(encoding: Encoding, data: &[u8]) -> Result<Vec<u8>, DecodeError> {
    Decoder::decode_all(&[encoding], data, DecodeLimits::default())
}

/// Decodes as much of a flushed, unfinished stream as there is (tests).
#[cfg(all(
    test,
    feature = "gzip",
    feature = "deflate",
    feature = "br",
    feature = "zstd"
))]
pub(crate) fn decode_prefix(encoding: Encoding, data: &[u8]) -> Result<Vec<u8>, DecodeError> {
    match Decoder::decode_all(&[encoding], data, DecodeLimits::default()) {
        Err(DecodeError::Truncated { .. }) => {}
        other => panic!("an unfinished stream decodes as truncated, got {other:?}"),
    }
    // Decode again, keeping the output produced before the truncation was noticed.
    let mut decoder = Decoder::new(&[encoding], DecodeLimits::default())?;
    let mut input = Some(Bytes::copy_from_slice(data));
    let mut source = |_: &mut Context<'_>| Poll::Ready(Ok(input.take()));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let mut out = Vec::new();
    loop {
        match decoder.poll_decode(&mut cx, &mut source) {
            Poll::Ready(Some(Ok(chunk))) => out.extend_from_slice(&chunk),
            _ => return Ok(out),
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
    use crate::compress_to_vec;

    fn zeros(n: usize) -> Vec<u8> {
        vec![0u8; n]
    }

    fn codings() -> Vec<Encoding> {
        Encoding::CODINGS
            .into_iter()
            .filter(|e| e.is_compiled())
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

    #[cfg(feature = "zstd")]
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

    #[cfg(feature = "br")]
    #[test]
    fn brotli_windows() {
        // WBITS encodings of the first byte
        assert!(check_brotli_window(0b0000_0000, 24).is_ok()); // 16
        assert!(check_brotli_window(0b0000_1111, 24).is_ok()); // 24
        assert!(check_brotli_window(0b0000_1111, 22).is_err()); // 24 > 22
        assert!(check_brotli_window(0b0001_0001, 24).is_err()); // large window marker
        assert!(check_brotli_window(0b0000_0001, 17).is_ok()); // 17
        assert!(check_brotli_window(0b0010_0001, 10).is_ok()); // 10
        // a real large-window stream header is refused as a cap, not as corruption
        let err = Decoder::decode_all(
            &[Encoding::Brotli],
            &[0x11, 0x1e, 0x00],
            DecodeLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, DecodeError::WindowTooLarge { .. }), "{err}");
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
