//! Bounded request-body memory for Tower services: size limits, a process-wide memory budget,
//! streaming in bounded frames, spill to disk, and a slow-body guard.
//!
//! Where this crate sits in the workspace, its code map and the invariants it keeps:
//! `ARCHITECTURE.md` at the repository root.
//!
//! [`StreamBodyLayer`] looks at each request body before the handler does:
//!
//! - **Too large**: a `Content-Length` over `max_body_size` (default 1 GiB) gets 413 before a
//!   byte is read (with `Expect: 100-continue` the client never sends it). A body of unknown
//!   length that grows past the limit ends in 413 too.
//! - **Small** (known length at or under `buffer_threshold`, default 10 MiB): the layer reserves
//!   the bytes from the [`MemoryBudget`] (default: the budget of the interceptor's governor when it
//!   admitted the request, else [`MemoryBudget::global`], 256 MiB), reads the
//!   body and hands it to the handler as one frame. A body larger than the whole budget gets 413
//!   at once; when the budget stays exhausted past `budget_wait` (1 s) the answer is 503 with
//!   `Retry-After`. The reservation is held while the handler runs and returns on every path:
//!   end, error, disconnect, panic, future dropped.
//! - **Large or unknown length**: the handler gets a streaming body in frames of at most
//!   `chunk_size` (64 KiB), cut with [`Bytes::split_to`](bytes::Bytes::split_to), never copied.
//!   A body of unknown length is read up to the threshold first, charged to the budget as it
//!   comes: if it ends there it is small after all; if not, the frames already read are chained
//!   in front of the rest and their bytes go back to the budget as the handler takes them.
//! - **Slow**: no data for `idle_timeout` (30 s), or an average under `min_rate` (240 B/s) once
//!   5 s of waiting on the client have passed: 408.
//!
//! The request carries a [`BodyMode`] extension saying which way the body arrives. When a
//! streaming body fails while the handler reads it (too large, too slow, broken off), the layer
//! owns the status: the client gets 413, 408 or 400 whatever the handler answered. Every such
//! response on HTTP/1 carries `Connection: close`, because request bytes are left unread.
//!
//! [`SpooledBody`] keeps a body in memory up to a threshold and continues into a temporary file
//! (never on a tmpfs unless allowed), with an async reader and [`SpooledBody::persist`]; with the
//! `axum` feature it is an extractor that follows the layer's [`BodyMode`].
//!
//! Metrics (through the `metrics` facade): `http_body_buffered_bytes` (gauge, bytes held under
//! budgets), `http_body_spilled_total`, `http_body_rejected_total{reason}`; see
//! [`describe_metrics`].
//!
//! The 503 for an exhausted budget follows the workspace's one convention for memory 503s:
//! `Retry-After` in whole seconds and the JSON body of [`tower_memory_probe::overload_body`] with the
//! reason `budget_exhausted`. The other answers (413, 408, 400) are one line of plain text.
//!
//! Configuration: [`StreamBodyConfig`] holds the settings (the layer's builder methods set the
//! same ones); [`StreamBodyConfig::from_env`] reads the `STREAM_*` variables, each named after
//! its builder method (`STREAM_BUFFER_THRESHOLD`, `STREAM_CHUNK_SIZE`).
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tower_memory_stream_body::{BodyMode, LimitedBody, MemoryBudget, StreamBodyLayer};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! // One budget for every layer in the process.
//! let budget = MemoryBudget::new(64 * 1024 * 1024);
//! let layer = StreamBodyLayer::new()
//!     .max_body_size(100 * 1024 * 1024)
//!     .buffer_threshold(1024 * 1024)
//!     .chunk_size(64 * 1024)
//!     .memory_budget(budget.clone())
//!     .idle_timeout(Duration::from_secs(30))
//!     .min_rate(240, Duration::from_secs(5));
//!
//! let service = ServiceBuilder::new().layer(layer).service(service_fn(
//!     |req: Request<LimitedBody<Full<Bytes>>>| async move {
//!         let mode = *req.extensions().get::<BodyMode>().unwrap();
//!         let bytes = req.into_body().collect().await?.to_bytes();
//!         let text = format!("{mode:?}: {} bytes", bytes.len());
//!         Ok::<_, tower_memory_stream_body::BodyError>(Response::new(Full::new(Bytes::from(text))))
//!     },
//! ));
//!
//! let small = Request::post("/").body(Full::new(Bytes::from("hello")))?;
//! let response = service.clone().oneshot(small).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! let text = response.into_body().collect().await?.to_bytes();
//! assert_eq!(text, "Buffered { len: 5 }: 5 bytes");
//! assert_eq!(budget.available(), budget.total()); // every byte back
//!
//! let huge = Request::post("/").body(Full::new(Bytes::from(vec![0u8; 101 * 1024 * 1024])))?;
//! let response = service.oneshot(huge).await?;
//! assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
//! # Ok(()) }
//! ```
//!
//! With axum, apply it to a router (`Router::layer(StreamBodyLayer::new())`) and take the body
//! as [`axum::body::Body`](https://docs.rs/axum), `SpooledBody`, or any extractor; keep axum's
//! own `DefaultBodyLimit` at or under `buffer_threshold` for extractors that collect the body
//! (`Bytes`, `Json`), so that those never hold more than the layer would have buffered.
//!
//! # Features
//!
//! None is on by default, and none needs a C toolchain.
//!
//! - `axum`: `FromRequest` for [`SpooledBody`], `FromRequestParts` for [`BodyMode`].

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod budget;
mod buffer;
mod config;
mod env;
mod error;
#[cfg(feature = "axum")]
mod extract;
mod future;
mod layer;
mod metrics;
mod mode;
mod reject;
mod response;
mod service;
mod slow;
mod spool;

pub use body::LimitedBody;
pub use config::{
    DEFAULT_BUDGET_WAIT, DEFAULT_BUFFER_THRESHOLD, DEFAULT_CHUNK_SIZE, DEFAULT_HANDLER_GRACE,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_BODY_SIZE, DEFAULT_MIN_RATE, DEFAULT_MIN_RATE_GRACE,
    StreamBodyConfig,
};
pub use env::{ConfigError, DEPRECATED_VARIABLES, VARIABLES};
pub use error::BodyError;
#[cfg(feature = "axum")]
pub use extract::MissingBodyMode;
// The crate is one middleware, so its root is the middleware's module (as tower-http's
// `limit` module): the response future is reached here.
pub use future::ResponseFuture;
pub use layer::StreamBodyLayer;
pub use metrics::describe_metrics;
pub use mode::BodyMode;
pub use response::ResponseBody;
pub use service::StreamBodyLimit;
pub use spool::{
    DEFAULT_SPOOL_MEMORY_THRESHOLD, SpoolConfig, SpoolConfigBuilder, SpoolError, SpooledBody,
    SpooledReader, is_memory_backed,
};
pub use tower_memory_probe::{BoxError, MemoryBudget};
