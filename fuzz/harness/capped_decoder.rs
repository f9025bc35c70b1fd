//! The capped decoder on arbitrary data, with every coding and stacks of two: no panic, output
//! never above the cap, and the error, if any, maps to 400, 413 or 415.

use tower_memory::compression::{DecodeLimits, Decoder, Encoding};

const CAP: u64 = 1 << 20;

/// The first byte picks the codings (one or two), the rest is the encoded body.
pub(crate) fn check(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let pick = |bits: u8| match bits & 3 {
        0 => Encoding::Gzip,
        1 => Encoding::Deflate,
        2 => Encoding::Brotli,
        _ => Encoding::Zstd,
    };
    let mut codings = vec![pick(selector)];
    if selector & 0x4 != 0 {
        codings.push(pick(selector >> 3));
    }
    // Small windows keep each run's memory small; the caps are what is under test.
    let limits = DecodeLimits::default()
        .max_decoded_bytes(CAP)
        .zstd_window_log_max(20)
        .brotli_window_bits_max(20)
        .chunk_size(16 * 1024);
    match Decoder::decode_all(&codings, body, limits) {
        Ok(out) => assert!(out.len() as u64 <= CAP),
        Err(e) => assert!(matches!(e.status().as_u16(), 400 | 413 | 415), "{e}"),
    }
}
