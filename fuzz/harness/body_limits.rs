//! The body-limit state machine (StreamBodyLayer) on arbitrary settings, declared lengths, frame
//! sequences and handler behaviours: no panic; only the statuses the layer documents; a handler
//! that reads the whole body and answers 200 got exactly the bytes sent, within the limit and the
//! declared length; a body over the limit that the handler reads is refused with 413; every budget
//! byte is back once the exchange is over.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt};
use tower_memory::stream_body::{LimitedBody, MemoryBudget, StreamBodyLayer};

/// A request body that yields prepared frames, with the size hint the case asks for.
struct Frames {
    frames: VecDeque<Result<Frame<Bytes>, std::io::Error>>,
    exact: Option<u64>,
}

impl Body for Frames {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.frames.pop_front())
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// What the handler does with its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handler {
    /// Reads it all; 200 with the bytes, or an error the layer turns into its status.
    Collect,
    /// Answers 200 without reading.
    Ignore,
    /// Reads one frame, then answers 200.
    OneFrame,
}

/// One case, decoded from bytes.
#[derive(Debug)]
pub(crate) struct Case {
    max_body_size: u64,
    buffer_threshold: u64,
    chunk_size: usize,
    budget: u64,
    /// `Content-Length` header, if any.
    declared: Option<u64>,
    /// Whether the body's size hint is exact (what hyper gives for a `Content-Length`).
    exact_hint: bool,
    handler: Handler,
    /// Data frames (their bytes), trailers, errors, in order.
    frames: Vec<Step>,
}

#[derive(Debug, Clone)]
enum Step {
    Data(usize),
    Trailers,
    Error,
}

impl Case {
    pub(crate) fn decode(data: &[u8]) -> Case {
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        let mut frames = Vec::new();
        for &b in data.iter().skip(6).take(64) {
            frames.push(match b >> 6 {
                0 => Step::Data((b as usize & 63) * 256),
                1 => Step::Data(b as usize & 63),
                2 => Step::Trailers,
                _ if b & 1 == 1 => Step::Error,
                _ => Step::Data(0),
            });
        }
        let total: u64 = frames
            .iter()
            .map(|s| match s {
                Step::Data(n) => *n as u64,
                _ => 0,
            })
            .sum();
        let mode = byte(4);
        let declared = match mode & 3 {
            0 => None,
            1 => Some(total),
            2 => Some(total.saturating_sub(1 + byte(5) as u64)),
            _ => Some(total + 1 + byte(5) as u64),
        };
        Case {
            max_body_size: (byte(0) as u64 % 16) * 4096,
            buffer_threshold: (byte(1) as u64 % 16) * 2048,
            chunk_size: (byte(2) as usize % 8 + 1) * 1024,
            budget: (byte(3) as u64 % 16) * 4096,
            exact_hint: declared.is_some() && mode & 4 != 0,
            declared,
            handler: match (mode >> 3) % 3 {
                0 => Handler::Collect,
                1 => Handler::Ignore,
                _ => Handler::OneFrame,
            },
            frames,
        }
    }

    fn sent(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for step in &self.frames {
            if let Step::Data(n) = step {
                let at = out.len();
                out.extend((0..*n).map(|i| ((at + i) % 251) as u8));
            }
        }
        out
    }
}

pub(crate) fn check(data: &[u8]) {
    check_case(Case::decode(data));
}

pub(crate) fn check_case(case: Case) {
    crate::paused_runtime::block_on(run(case));
}

async fn run(case: Case) {
    let budget = MemoryBudget::new(case.budget);
    let layer = StreamBodyLayer::new()
        .max_body_size(case.max_body_size)
        .buffer_threshold(case.buffer_threshold)
        .chunk_size(case.chunk_size)
        .memory_budget(budget.clone())
        .budget_wait(Duration::from_millis(50))
        .handler_grace(Duration::from_millis(100));
    let handler = case.handler;
    let inner = tower::service_fn(move |req: Request<LimitedBody<Frames>>| async move {
        let mut body = req.into_body();
        let response = match handler {
            Handler::Collect => match body.collect().await {
                Ok(collected) => Response::new(Full::new(collected.to_bytes())),
                Err(e) => {
                    let mut r = Response::new(Full::new(Bytes::from(e.to_string())));
                    *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                    r
                }
            },
            Handler::Ignore => Response::new(Full::new(Bytes::new())),
            Handler::OneFrame => {
                let _ = body.frame().await;
                Response::new(Full::new(Bytes::new()))
            }
        };
        Ok::<_, std::convert::Infallible>(response)
    });
    let mut service = layer.layer(inner);

    let sent = case.sent();
    let mut queue: VecDeque<Result<Frame<Bytes>, std::io::Error>> = VecDeque::new();
    let mut at = 0;
    let mut error_first = false;
    let mut over_limit_first = false;
    let mut running = 0u64;
    for step in &case.frames {
        match step {
            Step::Data(n) => {
                queue.push_back(Ok(Frame::data(Bytes::copy_from_slice(&sent[at..at + n]))));
                at += n;
                running += *n as u64;
                if running > case.max_body_size && !error_first {
                    over_limit_first = true;
                }
            }
            Step::Trailers => queue.push_back(Ok(Frame::trailers(HeaderMap::new()))),
            Step::Error => {
                if !over_limit_first {
                    error_first = true;
                }
                queue.push_back(Err(std::io::Error::other("client went away")));
            }
        }
    }
    let mut request = Request::post("/upload");
    if let Some(len) = case.declared {
        request = request.header(http::header::CONTENT_LENGTH, len);
    }
    let request = request
        .body(Frames {
            frames: queue,
            exact: case.declared.filter(|_| case.exact_hint),
        })
        .unwrap();

    let response = service.ready().await.unwrap().call(request).await.unwrap();
    let status = response.status().as_u16();
    let answer = response
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    drop(service);

    assert!(
        matches!(status, 200 | 400 | 408 | 413 | 500 | 503),
        "{case:?}: status {status}"
    );
    let total = sent.len() as u64;
    let declared_right = case.declared.is_none_or(|d| d == total);
    if case.handler == Handler::Collect {
        if status == 200 {
            assert_eq!(answer.len() as u64, total, "{case:?}: a 200 saw every byte");
            assert_eq!(&answer[..], &sent[..], "{case:?}: and exactly those bytes");
            assert!(total <= case.max_body_size, "{case:?}: 200 over the limit");
            assert!(declared_right, "{case:?}: 200 for a body unlike its length");
            assert!(!error_first, "{case:?}: 200 for a body that broke off");
        }
        // A body that crosses the limit before anything else goes wrong is refused with 413.
        if over_limit_first && declared_right {
            assert_eq!(status, 413, "{case:?}");
        }
        // Only the layer answers 500 here: never the handler's error for a failed body.
        assert_ne!(status, 500, "{case:?}: the handler's error leaked");
    }
    // Every byte back.
    for _ in 0..10 {
        if budget.in_use() == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(budget.in_use(), 0, "{case:?}: budget not back to full");
}
