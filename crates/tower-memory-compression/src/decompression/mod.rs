//! Request-body decompression with hard caps: [`RequestDecompressionLayer`].
//!
//! The handler sees the decoded body. When decoding fails (a cap crossed, corrupt data), the
//! error surfaces in the handler as a body error (a [`DecodeError`](crate::DecodeError) inside
//! the `BoxError`), and whatever the handler answers, the layer replaces its response with the
//! error's status: 413 for a cap, 400 for bad data. The body wrapper and the response future
//! share a cell for this; the failure is recorded the moment the decoder stops, before the
//! handler sees the error.
//!
//! This covers every handler that reads its body before answering (extractors, `collect`,
//! streaming into a file). A handler that answers first and reads the body afterwards (from a
//! spawned task, or while streaming its response) cannot have its status changed any more: it
//! sees the body error and must deal with it itself.

mod body;
mod config;
mod future;
mod layer;
mod service;

pub use body::{RequestDecompressionBody, RequestDecompressionResponseBody};
pub use future::ResponseFuture;
pub use layer::RequestDecompressionLayer;
pub use service::RequestDecompression;
