//! The three metrics, recorded by `metrics-util`'s debugging recorder while a real server runs.
//!
//! Counters are read as the debugging recorder reports them: the change since the previous
//! snapshot. The recorder is installed for this thread only, so server and client run on a
//! current-thread runtime inside it.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
// The names spelled out: dashboards and alerts depend on them.
const BUFFERED_BYTES: &str = "http_body_buffered_bytes";
const SPILLED_TOTAL: &str = "http_body_spilled_total";
const REJECTED_TOTAL: &str = "http_body_rejected_total";
use tokio::io::AsyncWriteExt;
use tower_memory_stream_body::{MemoryBudget, SpoolConfig, SpooledBody, StreamBodyLayer};

fn counter(snapshotter: &Snapshotter, name: &str, reason: Option<&str>) -> u64 {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == name)
        .filter(|(key, ..)| {
            reason.is_none_or(|r| {
                key.key()
                    .labels()
                    .any(|l| l.key() == "reason" && l.value() == r)
            })
        })
        .map(|(.., value)| match value {
            DebugValue::Counter(n) => n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

fn gauge(snapshotter: &Snapshotter, name: &str) -> f64 {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == name)
        .map(|(.., value)| match value {
            DebugValue::Gauge(v) => v.into_inner(),
            other => panic!("{name} is not a gauge: {other:?}"),
        })
        .sum()
}

#[test]
fn buffered_bytes_spills_and_rejections_are_recorded() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            tower_memory_stream_body::describe_metrics();
            let budget = MemoryBudget::new(100_000);
            let layer = StreamBodyLayer::new()
                .max_body_size(1_000_000)
                .buffer_threshold(80_000)
                .memory_budget(budget.clone())
                .budget_wait(Duration::from_millis(50))
                .idle_timeout(Duration::from_secs(2));
            let addr = serve(app(layer)).await;

            // A buffered body in flight shows in the gauge, and leaves it at 0.
            let mut held = send_head(addr, "/inspect", &[("Content-Length", "60000")]).await;
            held.write_all(&data(1000)).await.unwrap();
            assert!(wait_until(|| budget.in_use() == 60_000).await);
            assert_eq!(gauge(&snapshotter, BUFFERED_BYTES), 60_000.0);

            // Rejections by reason.
            let mut s = send_head(addr, "/inspect", &[("Content-Length", "2000000")]).await;
            assert_eq!(read_response(&mut s).await.unwrap().status, 413);
            assert_eq!(counter(&snapshotter, REJECTED_TOTAL, Some("too_large")), 1);
            let mut s = send_head(addr, "/inspect", &[("Content-Length", "50000")]).await;
            assert_eq!(read_response(&mut s).await.unwrap().status, 503);
            assert_eq!(
                counter(&snapshotter, REJECTED_TOTAL, Some("budget_exhausted")),
                1
            );
            // The held upload goes idle: 408.
            assert_eq!(read_response(&mut held).await.unwrap().status, 408);
            assert_eq!(
                counter(&snapshotter, REJECTED_TOTAL, Some("idle_timeout")),
                1
            );
            assert_eq!(gauge(&snapshotter, BUFFERED_BYTES), 0.0);
            // Chunked over the limit while the handler reads: counted once.
            let response = post_chunked(addr, "/ignore-errors", &data(1_100_000), 50_000).await;
            assert_eq!(response.status, 413);
            // (The debugging recorder's snapshots report counters as deltas since the last.)
            assert_eq!(counter(&snapshotter, REJECTED_TOTAL, Some("too_large")), 1);
            assert_eq!(counter(&snapshotter, REJECTED_TOTAL, None), 0);

            // A spooled body that goes to disk.
            let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
            let config = SpoolConfig::builder(dir.path())
                .memory_threshold(10)
                .build()
                .unwrap();
            assert_eq!(counter(&snapshotter, SPILLED_TOTAL, None), 0);
            let body = SpooledBody::from_body(Full::new(Bytes::from(vec![1u8; 100])), &config)
                .await
                .unwrap();
            assert!(body.is_spilled());
            assert_eq!(counter(&snapshotter, SPILLED_TOTAL, None), 1);
            assert!(budget_returns(&budget).await);
            assert_eq!(gauge(&snapshotter, BUFFERED_BYTES), 0.0);
        })
    });
}
