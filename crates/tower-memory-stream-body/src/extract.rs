//! axum extractors (feature `axum`): [`SpooledBody`] and [`BodyMode`].

use std::convert::Infallible;

use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::mode::BodyMode;
use crate::spool::{SpoolConfig, SpoolError, SpooledBody};

/// Spools the request body. Behind [`StreamBodyLayer`](crate::StreamBodyLayer) the layer's
/// [`BodyMode`] decides where it goes: a buffered body stays in memory (the layer already holds
/// it under the budget), a streaming one goes straight to a temporary file in the layer's
/// [`SpoolConfig`] directory, so memory stays at one frame per request. Without the layer the
/// configuration's memory threshold applies.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{Router, extract::DefaultBodyLimit, routing::post};
/// use tower_memory_stream_body::{SpoolConfig, SpoolError, SpooledBody, StreamBodyLayer};
///
/// async fn upload(body: SpooledBody) -> Result<String, SpoolError> {
///     let bytes = body.len();
///     body.persist(std::env::temp_dir().join("latest-upload")).await?;
///     Ok(format!("{bytes} bytes"))
/// }
///
/// # let uploads = tempfile::tempdir()?;
/// # let spool = SpoolConfig::builder(uploads.path()).allow_tmpfs(true).build()?;
/// let layer = StreamBodyLayer::new()
///     .max_body_size(1 << 30)
///     .buffer_threshold(10 << 20)
///     .spool(spool); // e.g. SpoolConfig::new("/srv/uploads")?
/// let app: Router = Router::new()
///     .route("/api/uploads", post(upload))
///     // Collecting extractors (`Json`, `Bytes`) take no more than the layer buffers.
///     .layer(DefaultBodyLimit::max(10 << 20))
///     .layer(layer);
/// # let _ = app;
/// # Ok(()) }
/// ```
impl<S: Send + Sync> FromRequest<S> for SpooledBody {
    type Rejection = SpoolError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        // The layer leaves no spool directory on a request without a body: nothing can spill.
        let config = req.extensions().get::<SpoolConfig>().cloned();
        let threshold = match req.extensions().get::<BodyMode>() {
            Some(BodyMode::Buffered { .. }) => u64::MAX,
            Some(BodyMode::Streaming { .. }) => 0,
            None => match &config {
                Some(config) => config.memory_threshold(),
                None => SpoolConfig::system_default()?.memory_threshold(),
            },
        };
        SpooledBody::spool(req.into_body(), config.as_ref(), threshold).await
    }
}

/// The status of [`SpoolError::status`] and the error's text. Behind the layer, the client sees
/// the layer's status for a failed body anyway.
impl IntoResponse for SpoolError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "spooling a request body failed");
        }
        (status, format!("{self}\n")).into_response()
    }
}

/// The request's [`BodyMode`]; fails with 500 when no [`StreamBodyLayer`](crate::StreamBodyLayer)
/// is in front of the route (take `Option<BodyMode>` to allow that).
impl<S: Send + Sync> FromRequestParts<S> for BodyMode {
    type Rejection = MissingBodyMode;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<BodyMode>()
            .copied()
            .ok_or(MissingBodyMode)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for BodyMode {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<BodyMode>().copied())
    }
}

/// Rejection of the [`BodyMode`] extractor: the route has no [`StreamBodyLayer`](crate::StreamBodyLayer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no StreamBodyLayer in front of this route")]
pub struct MissingBodyMode;

impl IntoResponse for MissingBodyMode {
    fn into_response(self) -> Response {
        (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("{self}\n"),
        )
            .into_response()
    }
}
