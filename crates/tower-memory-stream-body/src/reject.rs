//! The answers the layer gives itself, and the state a streaming body shares with the response
//! future so that a violation found while the handler reads becomes the client's status.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};
use tower_memory_probe::{BudgetError, OVERLOAD_CONTENT_TYPE, overload_body, retry_after_seconds};

use crate::error::BodyError;
use crate::metrics::REJECTED_TOTAL;
use crate::response::ResponseBody;
use crate::slow::Slow;

/// Why the layer answered a request itself; the `reason` label of `http_body_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    TooLarge,
    OverBudget,
    BudgetExhausted,
    IdleTimeout,
    TooSlow,
    BadLength,
    Incomplete,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::OverBudget => "over_budget",
            Reason::BudgetExhausted => "budget_exhausted",
            Reason::IdleTimeout => "idle_timeout",
            Reason::TooSlow => "too_slow",
            Reason::BadLength => "bad_length",
            Reason::Incomplete => "incomplete",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Reason::TooLarge | Reason::OverBudget => StatusCode::PAYLOAD_TOO_LARGE,
            Reason::BudgetExhausted => StatusCode::SERVICE_UNAVAILABLE,
            Reason::IdleTimeout | Reason::TooSlow => StatusCode::REQUEST_TIMEOUT,
            Reason::BadLength | Reason::Incomplete => StatusCode::BAD_REQUEST,
        }
    }
}

/// A response the layer owns: the status and a one-line text body; the 503 for an exhausted
/// budget follows the workspace's one convention for memory 503s (tower-memory-probe's
/// [`overload_body`], `Retry-After` in whole seconds).
#[derive(Debug, Clone)]
pub(crate) struct Rejection {
    reason: Reason,
    message: String,
    retry_after: Option<Duration>,
}

impl Rejection {
    fn new(reason: Reason, message: String) -> Self {
        Self {
            reason,
            message,
            retry_after: None,
        }
    }

    pub(crate) fn too_large(limit: u64) -> Self {
        Self::new(
            Reason::TooLarge,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    }

    pub(crate) fn bad_length(what: &str) -> Self {
        Self::new(Reason::BadLength, what.to_string())
    }

    pub(crate) fn length_mismatch(declared: u64, received: u64) -> Self {
        Self::new(
            Reason::BadLength,
            format!(
                "request body of {received} bytes does not match its declared length of {declared} bytes"
            ),
        )
    }

    pub(crate) fn budget(err: BudgetError, retry_after: Duration) -> Self {
        match err {
            BudgetError::LargerThanBudget { requested, total } => Self::new(
                Reason::OverBudget,
                format!(
                    "request body of {requested} bytes exceeds the memory budget of {total} bytes"
                ),
            ),
            // Queue full or the wait ran out (and whatever a later version adds): try again.
            _ => Self {
                reason: Reason::BudgetExhausted,
                message: "memory budget for request bodies exhausted".to_string(),
                retry_after: Some(retry_after),
            },
        }
    }

    pub(crate) fn slow(slow: Slow) -> Self {
        match slow {
            Slow::Idle(d) => Self::new(
                Reason::IdleTimeout,
                format!("no request body data for {} ms", d.as_millis()),
            ),
            Slow::TooSlow { min_rate, .. } => Self::new(
                Reason::TooSlow,
                format!("request body arrives slower than {min_rate} bytes per second"),
            ),
        }
    }

    pub(crate) fn incomplete(err: &dyn std::fmt::Display) -> Self {
        Self::new(Reason::Incomplete, format!("request body broke off: {err}"))
    }

    /// The rejection matching an error the streaming body handed to the handler.
    pub(crate) fn from_body_error(err: &BodyError) -> Self {
        match err {
            BodyError::TooLarge { limit } => Self::too_large(*limit),
            BodyError::IdleTimeout(d) => Self::slow(Slow::Idle(*d)),
            BodyError::TooSlow {
                received,
                waited,
                min_rate,
            } => Self::slow(Slow::TooSlow {
                received: *received,
                waited: *waited,
                min_rate: *min_rate,
            }),
            BodyError::Read(e) => Self::incomplete(e),
            BodyError::LengthMismatch { declared, received } => {
                Self::length_mismatch(*declared, *received)
            }
        }
    }

    /// Counts the rejection in `http_body_rejected_total{reason}` and logs it at debug level.
    pub(crate) fn count(&self) {
        metrics::counter!(REJECTED_TOTAL.get(), "reason" => self.reason.as_str()).increment(1);
        tracing::debug!(
            reason = self.reason.as_str(),
            status = self.reason.status().as_u16(),
            message = %self.message,
            "request body rejected"
        );
    }

    /// The response. Every rejection leaves request bytes unread, so HTTP/1 connections close
    /// (HTTP/2 has no `Connection` header; hyper resets the stream instead).
    pub(crate) fn to_response<B>(&self, http1: bool) -> Response<ResponseBody<B>> {
        let (body, content_type, retry_after) = match self.retry_after {
            Some(after) => {
                let secs = retry_after_seconds(after);
                let body = overload_body(&self.message, self.reason.as_str(), secs);
                (body.into_bytes(), OVERLOAD_CONTENT_TYPE, Some(secs))
            }
            None => {
                let mut body = self.message.clone().into_bytes();
                body.push(b'\n');
                (body, "text/plain; charset=utf-8", None)
            }
        };
        let mut response = Response::new(ResponseBody::rejected(Bytes::from(body)));
        *response.status_mut() = self.reason.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if http1 {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(secs) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Shared by a streaming [`LimitedBody`](crate::LimitedBody) and its response future.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    violation: OnceLock<Rejection>,
    waker: AtomicWaker,
}

impl Shared {
    /// Records the first violation (counted once) and wakes the response future.
    pub(crate) fn violate(&self, rejection: Rejection) {
        if self.violation.set(rejection).is_ok()
            && let Some(r) = self.violation.get()
        {
            r.count();
        }
        self.waker.wake();
    }

    pub(crate) fn violation(&self) -> Option<&Rejection> {
        self.violation.get()
    }

    pub(crate) fn register(&self, waker: &std::task::Waker) {
        self.waker.register(waker);
    }
}
