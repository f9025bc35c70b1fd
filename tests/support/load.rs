//! A small HTTP/1 load client on hyper for black-box tests and load drivers: concurrent bursts,
//! a steady background stream with latencies, and the figures they produce. Loopback only,
//! bounded in requests and time by its callers.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One answer, or how the exchange failed (a reset, a timeout).
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Bytes,
    pub latency: Duration,
}

/// Sends one request on a fresh connection; `Err` for anything but a complete response (refused
/// or reset connection, a body cut short, no answer within `timeout`).
pub(crate) async fn send(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<Bytes>,
    timeout: Duration,
) -> Result<Answer, String> {
    send_with(addr, method, path, &[], body, timeout).await
}

/// [`send`] with extra request headers (which replace the defaults of the same name).
pub(crate) async fn send_with(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Bytes>,
    timeout: Duration,
) -> Result<Answer, String> {
    let start = Instant::now();
    let exchange = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr);
        if body.is_some()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            builder = builder.header("content-type", "application/octet-stream");
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Answer {
            status,
            retry_after,
            body,
            latency: start.elapsed(),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

/// `n` concurrent `GET path`s; every result, in no particular order.
pub(crate) async fn burst(
    addr: &str,
    path: &str,
    n: usize,
    timeout: Duration,
) -> Vec<Result<Answer, String>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (addr, path) = (addr.to_string(), path.to_string());
            tokio::spawn(async move { send(&addr, "GET", &path, None, timeout).await })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap_or_else(|e| Err(format!("task: {e}"))));
    }
    out
}

/// A steady stream of small requests (one of each path every `every`) until stopped, keeping
/// every latency and failure.
pub(crate) struct Steady {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(String, Result<Duration, String>)>>,
}

impl Steady {
    pub(crate) fn start(addr: &str, paths: &[&str], every: Duration) -> Steady {
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, paths): (String, Vec<String>) = (
            addr.to_string(),
            paths.iter().map(|p| p.to_string()).collect(),
        );
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut out = Vec::new();
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !flag.load(Ordering::Relaxed) {
                ticker.tick().await;
                for path in &paths {
                    let r = send(&addr, "GET", path, None, Duration::from_secs(10)).await;
                    let r = match r {
                        Ok(a) if a.status == 200 => Ok(a.latency),
                        Ok(a) => Err(format!(
                            "status {}: {}",
                            a.status,
                            String::from_utf8_lossy(&a.body[..a.body.len().min(160)])
                        )),
                        Err(e) => Err(e),
                    };
                    out.push((path.clone(), r));
                }
            }
            out
        });
        Steady { stop, task }
    }

    /// Stops and returns, per path, the latencies and the failures.
    pub(crate) async fn finish(self) -> Vec<(String, Vec<Duration>, Vec<String>)> {
        self.stop.store(true, Ordering::Relaxed);
        let all = self.task.await.expect("steady stream");
        let mut paths: Vec<String> = all.iter().map(|(p, _)| p.clone()).collect();
        paths.sort();
        paths.dedup();
        paths
            .into_iter()
            .map(|p| {
                let mut ok = Vec::new();
                let mut failed = Vec::new();
                for (q, r) in &all {
                    if *q == p {
                        match r {
                            Ok(d) => ok.push(*d),
                            Err(e) => failed.push(e.clone()),
                        }
                    }
                }
                ok.sort();
                (p, ok, failed)
            })
            .collect()
    }
}

/// The `q` quantile of sorted latencies.
pub(crate) fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// What a burst came to.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    pub ok: usize,
    pub refused_with_retry_after: usize,
    /// Anything else: another status, a 503 without `Retry-After`, a reset, a timeout.
    pub other: Vec<String>,
    pub latencies: Vec<Duration>,
}

pub(crate) fn tally(results: &[Result<Answer, String>]) -> Tally {
    let mut t = Tally::default();
    for r in results {
        match r {
            Ok(a) if a.status == 200 => {
                t.ok += 1;
                t.latencies.push(a.latency);
            }
            Ok(a) if a.status == 503 && a.retry_after.is_some() => {
                t.refused_with_retry_after += 1;
                t.latencies.push(a.latency);
            }
            Ok(a) => t.other.push(format!(
                "status {} (retry-after {:?}): {}",
                a.status,
                a.retry_after,
                String::from_utf8_lossy(&a.body[..a.body.len().min(200)])
            )),
            Err(e) => t.other.push(e.clone()),
        }
    }
    t.latencies.sort();
    t
}
