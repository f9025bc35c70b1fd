//! Response compression: [`CompressionLayer`].
//!
//! The service negotiates a coding from `Accept-Encoding` when it is called; the response
//! future then makes the skip decision on the response head (`decision.rs`, with the rules in
//! `skip.rs`), reads ahead until the size is known or the threshold is crossed
//! (`read_ahead.rs`), rewrites the headers of a compressed response (`headers.rs`), and hands
//! on a [`CompressionBody`] that passes the body through, replays what was read ahead, holds a
//! body compressed in one shot, or compresses as the body streams (flushing by
//! [`FlushPolicy`]). The settings every clone shares are in `config.rs`.

mod body;
mod config;
mod decision;
mod flush;
mod future;
mod headers;
mod layer;
mod read_ahead;
mod service;
mod skip;

pub use body::CompressionBody;
pub use flush::FlushPolicy;
pub use future::ResponseFuture;
pub use layer::CompressionLayer;
pub use service::Compression;
pub use skip::{SkipCompression, SkipReason, SkipRules};
