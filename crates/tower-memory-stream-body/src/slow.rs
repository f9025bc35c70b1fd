//! The slow-body guard: an idle timeout between frames and a minimum average data rate.
//!
//! Only time spent waiting on the client counts (from a `poll_frame` that returned `Pending` to
//! the next frame), like Kestrel's `MinRequestBodyDataRate`: a handler that reads slowly, because
//! its disk or its database is slow, never makes its client look slow.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http_body::{Body, Frame};
use tokio::time::{Instant, Sleep};

pub(crate) use crate::config::SlowConfig;
use crate::error::BodyError;

/// Which bound the client broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slow {
    /// No frame within the idle timeout.
    Idle(Duration),
    /// Under the minimum rate after the grace period.
    TooSlow {
        /// Bytes received so far.
        received: u64,
        /// Time spent waiting on the client.
        waited: Duration,
        /// The configured minimum, bytes per second.
        min_rate: u64,
    },
}

impl From<Slow> for BodyError {
    fn from(slow: Slow) -> Self {
        match slow {
            Slow::Idle(d) => BodyError::IdleTimeout(d),
            Slow::TooSlow {
                received,
                waited,
                min_rate,
            } => BodyError::TooSlow {
                received,
                waited,
                min_rate,
            },
        }
    }
}

/// An error from a guarded body: the body's own, or a slow client.
#[derive(Debug)]
pub(crate) enum GuardError<E> {
    Body(E),
    Slow(Slow),
}

/// A guarded body's next frame.
pub(crate) type GuardedFrame<D, E> = Poll<Option<Result<Frame<D>, GuardError<E>>>>;

/// Per-body state of the guard.
pub(crate) struct SlowGuard {
    config: SlowConfig,
    received: u64,
    /// Waiting time accumulated over earlier waits.
    waited: Duration,
    /// Start of the current wait, if the body is waiting.
    waiting_since: Option<Instant>,
    /// The timer for the current deadline, created on the first wait (a body that never waits
    /// never touches the timer wheel).
    sleep: Option<Pin<Box<Sleep>>>,
}

impl SlowGuard {
    pub(crate) fn new(config: SlowConfig) -> Self {
        Self {
            config,
            received: 0,
            waited: Duration::ZERO,
            waiting_since: None,
            sleep: None,
        }
    }

    /// Polls `body` for its next frame, failing with [`Slow`] when the client is too slow.
    pub(crate) fn poll_frame<B>(
        &mut self,
        body: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> GuardedFrame<B::Data, B::Error>
    where
        B: Body + ?Sized,
    {
        match body.poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(since) = self.waiting_since.take() {
                    self.waited += since.elapsed();
                }
                if let Some(Ok(frame)) = &frame
                    && let Some(data) = frame.data_ref()
                {
                    self.received += data.remaining() as u64;
                }
                Poll::Ready(frame.map(|r| r.map_err(GuardError::Body)))
            }
            Poll::Pending => match self.poll_deadline(cx) {
                Poll::Ready(slow) => {
                    self.waiting_since = None;
                    Poll::Ready(Some(Err(GuardError::Slow(slow))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    /// The earliest deadline of the current wait, armed on the timer; `Ready` once it passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<Slow> {
        let now = Instant::now();
        let since = *self.waiting_since.get_or_insert(now);
        let mut deadline: Option<(Instant, Slow)> = None;
        if let Some(idle) = self.config.idle_timeout {
            deadline = Some((since + idle, Slow::Idle(idle)));
        }
        if self.config.min_rate > 0 {
            // Total waiting time after which the average falls under the minimum.
            let allowed = self.config.grace.max(Duration::from_secs_f64(
                self.received as f64 / self.config.min_rate as f64,
            ));
            let at = since + allowed.saturating_sub(self.waited);
            if deadline.is_none_or(|(d, _)| at < d) {
                let waited = self.waited + at.saturating_duration_since(since);
                deadline = Some((
                    at,
                    Slow::TooSlow {
                        received: self.received,
                        waited,
                        min_rate: self.config.min_rate,
                    },
                ));
            }
        }
        let Some((at, slow)) = deadline else {
            return Poll::Pending;
        };
        if now >= at {
            return Poll::Ready(slow);
        }
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if sleep.deadline() != at {
                    sleep.as_mut().reset(at);
                }
                sleep
            }
            None => self.sleep.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(slow),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::future::poll_fn;
    use tokio::sync::mpsc;

    /// A body fed by a channel, so the test controls when frames arrive.
    struct ChannelBody(mpsc::Receiver<Bytes>);

    impl Body for ChannelBody {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }

    async fn next(
        guard: &mut SlowGuard,
        body: &mut ChannelBody,
    ) -> Option<Result<Frame<Bytes>, GuardError<std::convert::Infallible>>> {
        poll_fn(|cx| guard.poll_frame(Pin::new(&mut *body), cx)).await
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_fires_between_frames() {
        let (tx, rx) = mpsc::channel(4);
        let mut body = ChannelBody(rx);
        let mut guard = SlowGuard::new(SlowConfig {
            idle_timeout: Some(Duration::from_secs(2)),
            min_rate: 0,
            grace: Duration::ZERO,
        });
        let feeder = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            tx.send(Bytes::from_static(b"a")).await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(tx);
        });
        let start = Instant::now();
        assert!(next(&mut guard, &mut body).await.unwrap().is_ok());
        match next(&mut guard, &mut body).await {
            Some(Err(GuardError::Slow(Slow::Idle(d)))) => assert_eq!(d, Duration::from_secs(2)),
            other => panic!("expected idle timeout, got {other:?}"),
        }
        assert_eq!(start.elapsed(), Duration::from_millis(3500));
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn min_rate_applies_after_grace_to_waiting_time_only() {
        let (tx, rx) = mpsc::channel(64);
        let mut body = ChannelBody(rx);
        let mut guard = SlowGuard::new(SlowConfig {
            idle_timeout: Some(Duration::from_secs(30)),
            min_rate: 100,
            grace: Duration::from_millis(4500),
        });
        // One byte a second: 1 B/s, under 100 B/s, caught once 4.5 s of waiting have passed.
        let feeder = tokio::spawn(async move {
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if tx.send(Bytes::from_static(b"x")).await.is_err() {
                    return;
                }
            }
        });
        let start = Instant::now();
        let mut got = 0;
        let slow = loop {
            match next(&mut guard, &mut body).await {
                Some(Ok(_)) => got += 1,
                Some(Err(GuardError::Slow(s))) => break s,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(got, 4);
        assert_eq!(start.elapsed(), Duration::from_millis(4500));
        assert_eq!(
            slow,
            Slow::TooSlow {
                received: 4,
                waited: Duration::from_millis(4500),
                min_rate: 100,
            }
        );
        feeder.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_does_not_count_against_the_client() {
        let (tx, rx) = mpsc::channel(64);
        let mut body = ChannelBody(rx);
        let mut guard = SlowGuard::new(SlowConfig {
            idle_timeout: Some(Duration::from_secs(1)),
            min_rate: 1000,
            grace: Duration::from_millis(100),
        });
        for _ in 0..10 {
            tx.send(Bytes::from_static(b"0123456789")).await.unwrap();
        }
        drop(tx);
        let mut got = 0;
        while let Some(frame) = next(&mut guard, &mut body).await {
            assert!(frame.is_ok());
            got += 1;
            // The handler takes 2 s per frame; the data was there all along.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        assert_eq!(got, 10);
    }
}
