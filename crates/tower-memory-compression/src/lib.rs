//! Tower layers for fast, memory-bounded response compression and bomb-proof request
//! decompression.
//!
//! Where this crate sits in the workspace, its code map and the invariants it keeps:
//! `ARCHITECTURE.md` at the repository root.
//!
//! - [`CompressionLayer`] compresses responses with gzip, deflate (zlib-wrapped), br or zstd,
//!   each a cargo feature (see [Features](#features)), negotiated from `Accept-Encoding` (q-values,
//!   `*`, `identity;q=0` answered 406). It compresses a body that arrives at once in one shot
//!   and sends its exact length; it streams the rest in frames of at least 16 KiB, flushing
//!   when the input pauses so that Server-Sent Events arrive promptly. Bodies under the
//!   threshold (1024 bytes by default, also for bodies of unknown size) and already-compressed
//!   or opaque content types pass through. Codecs: zlib-rs for gzip/deflate (about twice the
//!   speed of miniz_oxide) with zlib's `memLevel` and window bits, libzstd with a pledged size
//!   and a pool of reused contexts, and brotli on `async-compression`'s codec layer
//!   (compression-codecs) with a window fitted to the body. With a
//!   [`PressureSignal`](tower_memory_probe::PressureSignal), `Warning` switches new responses to the
//!   fastest levels and small windows, `Critical` stops compressing.
//! - [`RequestDecompressionLayer`] decodes compressed request bodies under hard caps enforced inside
//!   the decoder ([`DecodeLimits`]: decoded bytes, ratio, zstd and brotli windows): a bomb is
//!   answered 413 having cost at most the cap; corrupt data 400; an unknown coding 415. The
//!   decoders are compression-codecs' (gzip and deflate on flate2's zlib-rs backend), driven
//!   by this crate's capped loop.
//!
//! ```
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use tower_memory_compression::{CompressionLayer, RequestDecompressionLayer};
//! use http::{Request, Response, header};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(CompressionLayer::new().threshold(1024))
//!     .layer(RequestDecompressionLayer::new().max_decoded_bytes(16 << 20))
//!     .service_fn(|request: Request<_>| async move {
//!         // The handler reads the decoded request body...
//!         let body = BodyExt::collect(request.into_body()).await?.to_bytes();
//!         // ...and answers with a document that will be compressed.
//!         let json = format!("{{\"received\":{},\"items\":[{}]}}", body.len(), "1,".repeat(2000) + "1");
//!         Ok::<_, tower_memory_compression::BoxError>(Response::new(Full::new(Bytes::from(json))))
//!     });
//!
//! let upload = tower_memory_compression::compress_to_vec(tower_memory_compression::Encoding::Gzip, &[b'x'; 5000]);
//! let request = Request::post("/api/documents")
//!     .header(header::CONTENT_ENCODING, "gzip")
//!     .header(header::ACCEPT_ENCODING, "gzip;q=0.5, zstd")
//!     .body(Full::new(Bytes::from(upload)))
//!     .unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! assert_eq!(response.headers()[header::CONTENT_ENCODING], "zstd");
//! assert_eq!(response.headers()[header::VARY], "accept-encoding");
//! // Compressed in one shot: the exact length is known.
//! let length: usize = response.headers()[header::CONTENT_LENGTH].to_str().unwrap().parse().unwrap();
//! let compressed = response.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(compressed.len(), length);
//! let json = tower_memory_compression::Decoder::decode_all(
//!     &[tower_memory_compression::Encoding::Zstd],
//!     &compressed,
//!     Default::default(),
//! )
//! .unwrap();
//! assert!(json.starts_with(b"{\"received\":5000,"));
//! # }
//! ```
//!
//! # Memory
//!
//! A body of known length that arrives at once is compressed in one shot and its codec state
//! released before the response is written. What stays allocated is the state of bodies that
//! stream (unknown length, or arriving over time). Per in-flight stream, resident, measured
//! with 64 KiB of a JSON document fed (see `BENCHMARKS.md`): gzip/deflate about 340 KiB (zlib-rs,
//! window 32 KiB, memLevel 8: its fixed 128 KiB hash head is most of it); zstd about 250 KiB
//! (level 3, 256 KiB window, 32 KiB + 8 KiB tables for streams; tower-http's zstd: about
//! 980 KiB); brotli about 0.75 MiB (quality 3 and a 256 KiB window for streams).
//!
//! # Features
//!
//! One feature per codec and direction, as in tower-http: `compression-gzip`,
//! `compression-deflate`, `compression-br`, `compression-zstd` (response encoders) and
//! `decompression-gzip`, `decompression-deflate`, `decompression-br`, `decompression-zstd`
//! (request decoders); `compression-full` and `decompression-full` turn on all four of a
//! direction. A coding whose feature is off is neither offered nor accepted
//! ([`Encoding::can_compress`], [`Encoding::can_decompress`]): the layer answers it as
//! tower-http does (identity for responses, 415 for request bodies).
//!
//! The default is every codec but zstd, both ways: gzip, deflate and br are pure Rust, while
//! zstd builds libzstd from C and so needs a C compiler; turn on `compression-zstd` and
//! `decompression-zstd` (or the `-full` features) to get it.
//!
//! # Runtime
//!
//! Time-based flushing and the threshold hold use Tokio timers: the layers must run inside a
//! Tokio runtime with the time driver enabled (as every hyper or axum server does).
//!
//! # Metrics
//!
//! Counters through the `metrics` facade, listed (and described to the recorder) by
//! [`describe_metrics`]: `http_compression_input_bytes_total` and
//! `http_compression_output_bytes_total` by `encoding`, `http_compression_skipped_total` by
//! `reason`, and their decompression counterparts.
//!
//! # Layout
//!
//! In tower-http's shape: [`compression`] and [`decompression`] each hold `layer.rs`,
//! `service.rs`, `future.rs` and `body.rs`, plus one file per concern; beside them the pieces
//! both use: `codec/` (one file per codec with its encoder and decoder), `decoder.rs` (the
//! capped multi-stage [`Decoder`]), `limits.rs`, `encoding.rs`, `negotiation.rs`, `params.rs`
//! and `metrics.rs`. The codec features are summed up by the cfg aliases of `build.rs`
//! (`any_encoder`, `any_decoder`, `zlib_encoder`, `zlib_decoder`).

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// With every compression feature off the encoder types are uninhabited: the code that hands
// them data is unreachable and its arguments unused (output buffers then look like they could
// be slices). That build is legal but serves identity only.
#![cfg_attr(
    not(any_encoder),
    allow(unused_variables, unreachable_code, clippy::ptr_arg)
)]

mod codec;
pub mod compression;
mod decoder;
pub mod decompression;
mod encoding;
mod limits;
mod metrics;
// Public only for the fuzz target and the property test of the parser; not part of the API.
#[doc(hidden)]
pub mod negotiation;
mod params;

pub use codec::CodecError;
pub use compression::{
    Compression, CompressionBody, CompressionLayer, FlushPolicy, SkipCompression, SkipReason,
    SkipRules,
};
pub use decoder::{DecodePollError, DecodeSource, Decoder};
pub use decompression::{
    RequestDecompression, RequestDecompressionBody, RequestDecompressionLayer,
    RequestDecompressionResponseBody,
};
pub use encoding::Encoding;
pub use limits::{DecodeError, DecodeLimits};
pub use metrics::describe_metrics;
pub use params::{BrotliParams, DeflateParams, ZstdParams};
pub use tower_memory_probe::BoxError;

/// Compresses `data` with the default parameters of `encoding` (identity: a copy). Handy for
/// clients and tests.
///
/// # Panics
///
/// If the coding's cargo feature is off.
pub fn compress_to_vec(encoding: Encoding, data: &[u8]) -> Vec<u8> {
    if encoding == Encoding::Identity {
        return data.to_vec();
    }
    let layer = CompressionLayer::new();
    let config = layer
        .settings()
        .encoder_config(encoding, tower_memory_probe::Pressure::Normal)
        .unwrap_or_else(|| panic!("the {encoding} feature of tower-memory-compression is off"));
    let mut encoder = config
        .build(Some(data.len() as u64), false)
        .expect("an encoder with default parameters");
    let mut out = Vec::with_capacity(data.len() / 4 + 64);
    encoder
        .compress_all(data, &mut out)
        .expect("compression of a buffer of known size");
    out
}
