//! [`StackBody`]: the response body of either path.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;

use pin_project_lite::pin_project;

use tower_memory_probe::BoxError;
pin_project! {
    /// The response body of [`MemoryStackService`](super::MemoryStackService).
    // pin_project_lite takes no attributes on variant fields; the variants say what they hold.
    #[allow(missing_docs)]
    #[project = StackBodyProj]
    pub enum StackBody<F, L> {
        /// Through every layer.
        Full { #[pin] body: F },
        /// Through the layers that acted on this request.
        Light { #[pin] body: L },
    }
}

impl<F, L> http_body::Body for StackBody<F, L>
where
    F: http_body::Body<Data = Bytes>,
    F::Error: Into<BoxError>,
    L: http_body::Body<Data = Bytes>,
    L::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        match self.project() {
            StackBodyProj::Full { body } => body.poll_frame(cx).map_err(Into::into),
            StackBodyProj::Light { body } => body.poll_frame(cx).map_err(Into::into),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self {
            StackBody::Full { body } => body.is_end_stream(),
            StackBody::Light { body } => body.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            StackBody::Full { body } => body.size_hint(),
            StackBody::Light { body } => body.size_hint(),
        }
    }
}
