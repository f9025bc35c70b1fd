//! Reading a body before the handler is called: the whole of a small body of known length, or
//! the first `buffer_threshold` bytes of a body of unknown length.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderMap, Request};
use http_body::Body;
use tower_service::Service;

use tower_memory_probe::{BoxError, BudgetError};

use crate::body::{LimitedBody, Prefix, StreamState};
use crate::budget::{Held as Reservation, Source};
use crate::config::StreamBodyConfig as Config;
use crate::mode::BodyMode;
use crate::reject::{Rejection, Shared};
use crate::slow::{GuardError, SlowGuard};

/// The handler's future, once the body is ready for it, with what the response future keeps.
pub(crate) struct Called<F> {
    pub(crate) fut: F,
    /// Budget held until the handler's future finishes (buffered bodies).
    pub(crate) reservation: Option<Reservation>,
    /// Shared with a streaming body.
    pub(crate) shared: Option<Arc<Shared>>,
}

fn guard_rejection<E: Into<BoxError>>(err: GuardError<E>) -> Rejection {
    match err {
        GuardError::Slow(slow) => Rejection::slow(slow),
        GuardError::Body(e) => Rejection::incomplete(&e.into()),
    }
}

/// Reserves `bytes` more for a request that already holds `held`.
async fn reserve(
    config: &Config,
    source: &Source,
    bytes: u64,
    held: u64,
) -> Result<Reservation, Rejection> {
    let err = match source.try_reserve(bytes) {
        Ok(r) => return Ok(r),
        Err(e) => e,
    };
    let total = source.total();
    let result = if held.saturating_add(bytes) > total {
        // Waiting cannot help: what this request would hold exceeds the whole budget.
        Err(BudgetError::LargerThanBudget {
            requested: held.saturating_add(bytes),
            total,
        })
    } else if matches!(err, BudgetError::LargerThanBudget { .. }) {
        Err(err)
    } else {
        source.reserve(bytes, config.budget_wait).await
    };
    result.map_err(|e| Rejection::budget(e, config.retry_after))
}

/// Buffers a body of declared length `len` (at most the threshold) and calls the handler with
/// it as one frame.
pub(crate) async fn buffer_known<S, B>(
    mut service: S,
    mut parts: Parts,
    body: B,
    len: u64,
    reservation: Option<Reservation>,
    config: Arc<Config>,
) -> Result<Called<S::Future>, Rejection>
where
    S: Service<Request<LimitedBody<B>>>,
    B: Body,
    B::Error: Into<BoxError>,
{
    let reservation = match reservation {
        Some(r) => r,
        None => {
            reserve(
                &config,
                &Source::of(config.budget.as_ref(), &parts.extensions),
                len,
                0,
            )
            .await?
        }
    };
    let mut guard = SlowGuard::new(config.slow);
    let mut body = pin!(body);
    // The first frame is kept as it is: a small body usually arrives in one, and then nothing
    // is copied. Only a body in several frames is gathered into one buffer.
    let mut first: Option<Bytes> = None;
    let mut gathered: Option<BytesMut> = None;
    let mut received = 0u64;
    let mut trailers: Option<HeaderMap> = None;
    loop {
        // Matched at once so that no `B::Error` lives across the awaits below.
        let frame = match poll_fn(|cx| guard.poll_frame(body.as_mut(), cx)).await {
            Some(frame) => frame.map_err(guard_rejection)?,
            None => break,
        };
        let mut data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
                continue;
            }
        };
        let n = data.remaining();
        if n == 0 {
            continue;
        }
        received += n as u64;
        if received > len {
            // hyper never yields more than Content-Length; another body type might.
            return Err(Rejection::length_mismatch(len, received));
        }
        match (&mut first, &mut gathered) {
            (None, None) => first = Some(data.copy_to_bytes(n)),
            (Some(_), None) => {
                let mut buf = BytesMut::with_capacity(len as usize);
                buf.extend_from_slice(&first.take().unwrap_or_default());
                buf.extend_from_slice(&data.copy_to_bytes(n));
                gathered = Some(buf);
            }
            (_, Some(buf)) => buf.extend_from_slice(&data.copy_to_bytes(n)),
        }
    }
    if received != len {
        return Err(Rejection::length_mismatch(len, received));
    }
    let data = match gathered {
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    };
    parts.extensions.insert(BodyMode::Buffered { len });
    let req = Request::from_parts(parts, LimitedBody::buffered(data, trailers));
    Ok(Called {
        fut: service.call(req),
        reservation: Some(reservation),
        shared: None,
    })
}

/// Reads a body of unknown length up to the threshold. If it ends there, the handler gets it
/// buffered; if it crosses, the handler gets a streaming body with the frames read so far in
/// front of the rest (moved, not copied).
pub(crate) async fn buffer_unknown<S, B>(
    mut service: S,
    mut parts: Parts,
    body: B,
    config: Arc<Config>,
) -> Result<Called<S::Future>, Rejection>
where
    S: Service<Request<LimitedBody<B>>>,
    B: Body,
    B::Error: Into<BoxError>,
{
    // Boxed, not pinned on the stack: if the body crosses the threshold it moves on to the
    // handler after being polled here.
    let mut body = Box::pin(body);
    let mut guard = SlowGuard::new(config.slow);
    let mut frames: VecDeque<Bytes> = VecDeque::new();
    let mut total = 0u64;
    let mut reservation: Option<Reservation> = None;
    let mut trailers: Option<HeaderMap> = None;
    let source = Source::of(config.budget.as_ref(), &parts.extensions);
    loop {
        // Matched at once so that no `B::Error` lives across the awaits below.
        let frame = match poll_fn(|cx| guard.poll_frame(body.as_mut(), cx)).await {
            Some(frame) => frame.map_err(guard_rejection)?,
            None => break,
        };
        let mut data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
                continue;
            }
        };
        let data = data.copy_to_bytes(data.remaining());
        if data.is_empty() {
            continue;
        }
        let n = data.len() as u64;
        total += n;
        if total > config.max_body_size {
            return Err(Rejection::too_large(config.max_body_size));
        }
        // Charged up to the threshold: past it the body streams, and the frame that crossed is
        // handed on next (so a budget the size of the threshold always suffices).
        let held = reservation.as_ref().map_or(0, Reservation::bytes);
        let charge = total.min(config.buffer_threshold) - held;
        if charge > 0 {
            let more = reserve(&config, &source, charge, held).await?;
            match &mut reservation {
                Some(r) => r.merge(more),
                None => reservation = Some(more),
            }
        }
        frames.push_back(data);
        if total > config.buffer_threshold {
            let shared = Arc::new(Shared::default());
            let prefix = Prefix {
                frames,
                reservation,
                guard,
                received: total,
            };
            let state = StreamState::after(&config, prefix, None, shared.clone());
            parts.extensions.insert(BodyMode::Streaming {
                content_length: None,
            });
            let req = Request::from_parts(parts, LimitedBody::boxed(body, state));
            return Ok(Called {
                fut: service.call(req),
                reservation: None,
                shared: Some(shared),
            });
        }
    }
    // Ended under the threshold: one frame for the handler, gathered with a single copy when it
    // came in several.
    let data = match frames.len() {
        0 => Bytes::new(),
        1 => frames.pop_front().unwrap_or_default(),
        _ => {
            let mut buf = BytesMut::with_capacity(total as usize);
            for frame in frames.drain(..) {
                buf.extend_from_slice(&frame);
            }
            buf.freeze()
        }
    };
    parts.extensions.insert(BodyMode::Buffered { len: total });
    let req = Request::from_parts(parts, LimitedBody::buffered(data, trailers));
    Ok(Called {
        fut: service.call(req),
        reservation,
        shared: None,
    })
}
