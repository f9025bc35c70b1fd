//! The mixed workload of the before/after comparison (`benches/outcomes.rs`) and of its CI smoke
//! test (`tests/outcomes_smoke.rs`): steady small traffic (small JSON reads, compressed 256 KiB
//! document reads, 4 KiB JSON posts) and bursts of concurrent 64 MiB uploads, heavy reports and
//! server-sent event streams, with the server's RSS (and its cgroup's usage) sampled every
//! 100 ms. Loopback only; every loop is bounded by a count or a stop flag its caller sets.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::load::{self, Answer};

/// What browsers send.
pub(crate) const BROWSER_ACCEPT_ENCODING: &str = "gzip, deflate, br, zstd";

/// A JSON array of small objects, `len` bytes exactly (padded inside the last string).
pub(crate) fn json_array(len: usize) -> Bytes {
    let mut s = String::from("[");
    let mut i = 0;
    while s.len() + 60 < len.saturating_sub(16) {
        s.push_str(&format!(
            r#"{{"id":{i},"name":"item-{i:06}","tags":["a","b"]}},"#
        ));
        i += 1;
    }
    let pad = len - s.len() - r#"{"pad":""}]"#.len();
    s.push_str(&format!(r#"{{"pad":"{}"}}]"#, "x".repeat(pad)));
    assert_eq!(s.len(), len);
    Bytes::from(s)
}

/// Deterministic bytes that do not compress.
pub(crate) fn noise(len: usize, seed: u64) -> Bytes {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// One reading of the sampler.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Seconds since the sampler started.
    pub t: f64,
    /// The server's VmRSS.
    pub rss: u64,
    /// The cgroup's usage, when the server runs in one.
    pub cgroup: Option<u64>,
    /// The phase at the time (an index the caller gives meaning to).
    pub phase: usize,
}

/// Samples a process's RSS (and a cgroup's usage) every `every` on a thread of its own.
pub(crate) struct Sampler {
    start: Instant,
    phase: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Sample>>,
}

/// The `VmRSS` or `VmHWM` line of `/proc/<pid>/status`, in bytes.
pub(crate) fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl Sampler {
    /// `cgroup_usage` reads the usage of the server's cgroup, when it has one.
    pub(crate) fn start(
        pid: u32,
        cgroup_usage: Option<Box<dyn Fn() -> u64 + Send>>,
        every: Duration,
    ) -> Sampler {
        let start = Instant::now();
        let phase = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (Arc::clone(&phase), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut samples = Vec::new();
            let mut next = Instant::now();
            while !s.load(Ordering::Relaxed) {
                // A process that has gone (OOM-killed) reads as 0.
                let rss = status_bytes(pid, "VmRSS:").unwrap_or(0);
                samples.push(Sample {
                    t: start.elapsed().as_secs_f64(),
                    rss,
                    cgroup: cgroup_usage.as_ref().map(|f| f()),
                    phase: p.load(Ordering::Relaxed),
                });
                next += every;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            samples
        });
        Sampler {
            start,
            phase,
            stop,
            thread,
        }
    }

    /// Marks the samples from now on with `phase`.
    pub(crate) fn phase(&self, phase: usize) {
        self.phase.store(phase, Ordering::Relaxed);
    }

    /// Seconds since the sampler started.
    pub(crate) fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    pub(crate) fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler")
    }
}

/// The last sample at or before `t`.
pub(crate) fn at(samples: &[Sample], t: f64) -> Option<Sample> {
    samples.iter().rev().find(|s| s.t <= t).copied()
}

/// What a request came to, with when it completed (seconds on the caller's clock).
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub kind: &'static str,
    pub done_at: f64,
    pub result: Result<Answer, String>,
}

impl Outcome {
    /// A 200, or a 503 with `Retry-After`: the only answers the stack may give under load.
    pub(crate) fn acceptable(&self) -> bool {
        matches!(&self.result, Ok(a) if a.status == 200 || (a.status == 503 && a.retry_after.is_some()))
    }

    pub(crate) fn ok(&self) -> bool {
        matches!(&self.result, Ok(a) if a.status == 200)
    }
}

/// Steady small traffic until stopped: each of three loops sends one request at a time (a small
/// JSON read, a compressed 256 KiB document, a 4 KiB JSON post), pausing `pause` between.
pub(crate) struct Background {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Outcome>>>,
}

impl Background {
    pub(crate) fn start(addr: &str, pause: Duration, clock: Instant) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let post = json_array(4096);
        let kinds: [(&'static str, &'static str, &'static str, Option<Bytes>); 3] = [
            ("small", "GET", "/api/documents?count=5", None),
            ("document", "GET", "/api/documents", None),
            ("post", "POST", "/api/documents", Some(post)),
        ];
        let tasks = kinds
            .into_iter()
            .map(|(kind, method, path, body)| {
                let (addr, stop) = (addr.to_string(), Arc::clone(&stop));
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    while !stop.load(Ordering::Relaxed) && out.len() < 100_000 {
                        let headers: &[(&str, &str)] = match kind {
                            "document" => &[("accept-encoding", BROWSER_ACCEPT_ENCODING)],
                            "post" => &[("content-type", "application/json")],
                            _ => &[],
                        };
                        let result = load::send_with(
                            &addr,
                            method,
                            path,
                            headers,
                            body.clone(),
                            Duration::from_secs(30),
                        )
                        .await;
                        let failed = result.is_err();
                        out.push(Outcome {
                            kind,
                            done_at: clock.elapsed().as_secs_f64(),
                            result,
                        });
                        // A dead server: stop hammering it.
                        let pause = if failed {
                            pause.max(Duration::from_millis(100))
                        } else {
                            pause
                        };
                        tokio::time::sleep(pause).await;
                    }
                    out
                })
            })
            .collect();
        Background { stop, tasks }
    }

    pub(crate) async fn finish(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.expect("background loop"));
        }
        all
    }
}

/// The heavy part of a burst.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Burst {
    /// Concurrent uploads of `upload_mib` MiB each.
    pub uploads: usize,
    pub upload_mib: usize,
    /// Concurrent `GET /api/reports/heavy?mib=heavy_mib`.
    pub heavy: usize,
    pub heavy_mib: usize,
    /// Concurrent event streams of 10 events 100 ms apart.
    pub streams: usize,
}

/// Sends the burst all at once; every outcome, when it is complete.
pub(crate) async fn burst(
    addr: &str,
    burst: Burst,
    clock: Instant,
    timeout: Duration,
) -> Vec<Outcome> {
    let upload = noise(burst.upload_mib << 20, 7);
    let mut tasks = Vec::new();
    let mut spawn =
        |kind: &'static str, method: &'static str, path: String, body: Option<Bytes>| {
            let addr = addr.to_string();
            tasks.push(tokio::spawn(async move {
                let result = load::send_with(&addr, method, &path, &[], body, timeout).await;
                Outcome {
                    kind,
                    done_at: clock.elapsed().as_secs_f64(),
                    result,
                }
            }));
        };
    for _ in 0..burst.uploads {
        spawn(
            "upload",
            "POST",
            "/api/uploads".into(),
            Some(upload.clone()),
        );
    }
    for _ in 0..burst.heavy {
        spawn(
            "heavy",
            "GET",
            format!("/api/reports/heavy?mib={}", burst.heavy_mib),
            None,
        );
    }
    for _ in 0..burst.streams {
        spawn(
            "events",
            "GET",
            "/api/events?count=10&interval_ms=100".into(),
            None,
        );
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("burst request"));
    }
    out
}

/// Counts of a set of outcomes.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    pub ok: usize,
    pub refused: usize,
    pub failed: usize,
}

pub(crate) fn counts<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> Counts {
    let mut c = Counts::default();
    for o in outcomes {
        match &o.result {
            Ok(a) if a.status == 200 => c.ok += 1,
            Ok(a) if a.status == 503 && a.retry_after.is_some() => c.refused += 1,
            _ => c.failed += 1,
        }
    }
    c
}
