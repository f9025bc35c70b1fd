//! Memory-aware Tower middleware for axum, hyper and tonic services.
//!
//! Where this crate sits in the workspace, its code map and the invariants it keeps:
//! `ARCHITECTURE.md` at the repository root.
//!
//! This umbrella crate re-exports the workspace's crates, each behind a feature, and gathers the
//! everyday types in [`prelude`]:
//!
//! - [`probe`] ([`tower_memory_probe`], always): allocation counters, allocator, process and cgroup
//!   memory, memory release and the pressure signal.
//! - [`interceptor`] (feature `interceptor`): exact per-request allocation accounting, reports, the
//!   ledger of memory-intensive routes, a per-request memory quota.
//! - [`stream_body`] (feature `stream-body`): request-body limits, a memory budget, streaming,
//!   spill to disk, a slow-body guard.
//! - [`compression`] (any `compression-*` or `decompression-*` feature, or `stack`):
//!   memory-bounded response compression and capped request decompression.
//! - [`health`] (feature `health`): the memory monitor, pressure, reclaim schedule, health,
//!   readiness, metrics and heap-profile endpoints, load shedding.
//! - [`stack`] (feature `stack`): all of them as one layer, built from the configuration in one
//!   call ([`stack::MemoryStack`]); [`config`] reads every crate's variables from the environment
//!   ([`config::Config::from_env`]).
//!
//! The layers go in one `ServiceBuilder`, outermost first: health, shedding, interceptor,
//! compression and decompression, body limits, then the handler.
//!
//! # Features
//!
//! The defaults need no C toolchain: `stack`, `axum`, `prometheus` and the pure-Rust codecs
//! (`compression-gzip`, `compression-deflate`, `compression-br` and the same three
//! `decompression-*`). Without `jemalloc` the interceptor counts through
//! [`CountingAlloc`](probe::CountingAlloc), which the program installs around its allocator.
//!
//! | feature | what it adds | builds C? |
//! |---|---|---|
//! | `interceptor` | [`interceptor`]; with `health`, the hungry routes and requests in flight in `/health` | no |
//! | `stream-body` | [`stream_body`] | no |
//! | `health` | [`health`] | no |
//! | `stack` (default) | [`stack`] and [`config`]; implies the three above and the compression layers, which use whichever codecs are on | no |
//! | `axum` (default) | route labels from `MatchedPath`, the extractors | no |
//! | `prometheus` (default) | `/metrics` (implies `health`) | no |
//! | `compression-gzip`, `-deflate`, `-br` (default) | those response codecs (zlib-rs, brotli) | no |
//! | `compression-zstd` | zstd responses | yes (libzstd) |
//! | `decompression-gzip`, `-deflate`, `-br` (default), `decompression-zstd` | the same for request bodies | zstd only |
//! | `compression-full`, `decompression-full` | the four codecs one way | yes (libzstd) |
//! | `jemalloc` | jemalloc counters, statistics, purge, allocator profiles | yes (jemalloc) |
//! | `heap-profile` | `/debug/pprof/heap` (implies `jemalloc`, `health`) | yes (jemalloc) |
//! | `mimalloc` | `mi_collect` in the `Reclaimer` | yes (mimalloc) |
//! | `full` | everything but `mimalloc` (one global allocator per program) | yes |
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_memory::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let monitor = MemoryMonitor::builder().build()?;
//! let ledger = Ledger::new(256);
//! let service = ServiceBuilder::new()
//!     .layer(HealthLayer::new(&monitor).ledger(ledger.clone(), 10))
//!     .layer(PressureShedLayer::new(&monitor))
//!     .layer(MemoryInterceptorLayer::new().ledger(ledger).max_request_memory(1 << 30))
//!     .layer(CompressionLayer::new().pressure(monitor.signal()))
//!     .layer(RequestDecompressionLayer::new())
//!     .layer(StreamBodyLayer::new())
//!     .service_fn(|_req: Request<_>| async {
//!         Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello"))))
//!     });
//!
//! let ready = service
//!     .clone()
//!     .oneshot(Request::get("/api/health/ready").body(Full::new(Bytes::new()))?)
//!     .await?;
//! assert_eq!(ready.status(), 200);
//! let hello = service
//!     .oneshot(Request::get("/api/hello").body(Full::new(Bytes::new()))?)
//!     .await?;
//! assert_eq!(hello.status(), 200);
//! # Ok(())
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

pub use tower_memory_probe as probe;

#[cfg(feature = "interceptor")]
pub use tower_memory_interceptor as interceptor;

#[cfg(feature = "stream-body")]
pub use tower_memory_stream_body as stream_body;

// Every feature that brings tower-memory-compression in (Cargo makes no feature of a `dep:`).
#[cfg(any(
    feature = "stack",
    feature = "compression-gzip",
    feature = "compression-deflate",
    feature = "compression-br",
    feature = "compression-zstd",
    feature = "compression-full",
    feature = "decompression-gzip",
    feature = "decompression-deflate",
    feature = "decompression-br",
    feature = "decompression-zstd",
    feature = "decompression-full"
))]
pub use tower_memory_compression as compression;

#[cfg(feature = "health")]
pub use tower_memory_health as health;

#[cfg(feature = "stack")]
pub mod config;
#[cfg(feature = "stack")]
pub mod stack;

/// The types most programs need, in one import.
pub mod prelude {
    pub use tower_memory_probe::{
        AllocCounters, CountingAlloc, MemoryBudget, Pressure, PressureSignal, Reclaimer,
        thread_counters,
    };

    #[cfg(feature = "interceptor")]
    pub use tower_memory_interceptor::{
        GovernorConfig, Ledger, MemoryInterceptorLayer, MemoryReport, RequestMemory,
    };

    #[cfg(feature = "stream-body")]
    pub use tower_memory_stream_body::{BodyMode, SpoolConfig, SpooledBody, StreamBodyLayer};

    #[cfg(any(
        feature = "stack",
        feature = "compression-gzip",
        feature = "compression-deflate",
        feature = "compression-br",
        feature = "compression-zstd",
        feature = "compression-full",
        feature = "decompression-gzip",
        feature = "decompression-deflate",
        feature = "decompression-br",
        feature = "decompression-zstd",
        feature = "decompression-full"
    ))]
    pub use tower_memory_compression::{CompressionLayer, Encoding, RequestDecompressionLayer};

    #[cfg(feature = "health")]
    pub use tower_memory_health::{HealthLayer, MemoryConfig, MemoryMonitor, PressureShedLayer};

    #[cfg(feature = "prometheus")]
    pub use tower_memory_health::PrometheusMetrics;

    #[cfg(feature = "stack")]
    pub use crate::stack::MemoryStack;
}

// The README's code blocks are compiled and run as doctests of this crate, so the recipes and the
// best-practices section stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
