// Shared by the per-allocator test binaries (each installs its own global allocator).
#![allow(dead_code)]

use std::hint::black_box;
use std::time::Duration;

use tower_memory_probe::{Reclaimer, process_memory, thread_counters};

pub(crate) const MIB: u64 = 1 << 20;

/// A 1 MiB `Vec` moves both counters by at least 1 MiB and less than 1.1 MiB.
pub(crate) fn one_mib_vec_is_counted() {
    let before = thread_counters();
    let v = vec![7u8; MIB as usize];
    black_box(&v);
    let mid = thread_counters().since(before);
    drop(v);
    let after = thread_counters().since(before);
    assert!(
        mid.allocated >= MIB && mid.allocated < MIB + MIB / 10,
        "allocated moved by {}",
        mid.allocated
    );
    assert!(
        after.deallocated >= MIB && after.deallocated < MIB + MIB / 10,
        "deallocated moved by {}",
        after.deallocated
    );
    assert!(after.net().abs() < (MIB / 10) as i64);
}

/// Counters are per thread: another thread's allocations do not show here.
pub(crate) fn counters_are_per_thread() {
    let before = thread_counters();
    let other = std::thread::spawn(|| {
        let before = thread_counters();
        let v = vec![1u8; 4 * MIB as usize];
        black_box(&v);
        drop(v);
        thread_counters().since(before).allocated
    })
    .join()
    .unwrap();
    let here = thread_counters().since(before).allocated;
    assert!(other >= 4 * MIB, "the other thread saw {other}");
    assert!(here < MIB, "this thread was charged {here}");
}

/// Purges are process-wide: one test's run (or the memory it frees) must not overlap another's
/// measurement.
static RECLAIM_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Allocates 256 MiB in many small and medium blocks, frees them, reclaims: at least 90% of the
/// resident memory the blocks took is gone afterwards.
pub(crate) async fn reclaim_returns_freed_memory() {
    let _serial = RECLAIM_TESTS.lock().await;
    let baseline = process_memory().unwrap().rss_bytes;
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut total = 0u64;
    let sizes = [48usize, 200, 1000, 3000, 16 << 10, 60 << 10, 100 << 10];
    let mut i = 0;
    while total < 256 * MIB {
        let size = sizes[i % sizes.len()];
        blocks.push(vec![(i % 251) as u8; size]);
        total += size as u64;
        i += 1;
    }
    let peak = process_memory().unwrap().rss_bytes;
    assert!(
        peak - baseline > 200 * MIB,
        "the blocks were not resident: {}",
        peak - baseline
    );
    drop(blocks);
    let freed = process_memory().unwrap().rss_bytes;

    let reclaimer = Reclaimer::builder()
        .min_interval(Duration::from_millis(1))
        .build();
    let report = reclaimer.reclaim().await.expect("reclaim runs");
    let after = process_memory().unwrap().rss_bytes;
    let grown = peak - baseline;
    let left = after.saturating_sub(baseline);
    eprintln!(
        "allocator {:?}: baseline {} MiB, peak {} MiB, after free {} MiB, after reclaim {} MiB ({:?})",
        report.allocator,
        baseline / MIB,
        peak / MIB,
        freed / MIB,
        after / MIB,
        report.duration
    );
    assert!(
        left * 10 <= grown,
        "{} MiB of {} MiB still resident after reclaim",
        left / MIB,
        grown / MIB
    );
    assert!(report.resident_before >= report.resident_after);
    assert_eq!(reclaimer.runs(), 1);
    assert_eq!(reclaimer.last(), Some(report));
}

/// Polls all of `futures` in every round until each is ready.
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.expect("ready")).collect()
}

/// Concurrent callers share one run; a call inside the interval is refused.
pub(crate) async fn reclaim_is_single_flight_and_rate_limited() {
    let _serial = RECLAIM_TESTS.lock().await;
    let reclaimer = Reclaimer::builder()
        .min_interval(Duration::from_secs(60))
        .build();
    // Something to purge, so the run lasts milliseconds, and the eight calls polled together
    // within microseconds: all of them overlap the run, however busy the machine is (spawned
    // tasks could start after it ended, and be refused by the rate limit, rightly).
    drop(std::hint::black_box(vec![1u8; 64 << 20]));
    let reports: Vec<_> = join_all((0..8).map(|_| reclaimer.reclaim()).collect())
        .await
        .into_iter()
        .map(|r| r.expect("joined the run"))
        .collect();
    assert!(
        reports.windows(2).all(|w| w[0] == w[1]),
        "one run, one report"
    );
    assert_eq!(reclaimer.runs(), 1);
    match reclaimer.reclaim().await {
        Err(tower_memory_probe::ReclaimError::RateLimited { retry_after }) => {
            assert!(retry_after > Duration::from_secs(50))
        }
        other => panic!("expected rate limiting, got {other:?}"),
    }
    assert!(!reclaimer.reclaim_in_background(tower_memory_probe::ReclaimTrigger::HeavyRequest));
    assert_eq!(reclaimer.runs(), 1);
}

/// Every run is counted under the trigger that started it, whoever joins it; a refused call counts
/// nothing; the history and the totals agree.
pub(crate) async fn reclaim_counts_every_run_by_trigger() {
    let _serial = RECLAIM_TESTS.lock().await;
    use tower_memory_probe::ReclaimTrigger;

    let reclaimer = Reclaimer::builder()
        .min_interval(Duration::from_millis(50))
        .build();
    let report = reclaimer.reclaim().await.expect("a run");
    assert_eq!(
        report.trigger,
        ReclaimTrigger::Api,
        "reclaim() is the program's"
    );
    tokio::time::sleep(Duration::from_millis(60)).await;
    // Two callers, one run: counted once, under the trigger that started it.
    let (a, b) = tokio::join!(
        reclaimer.reclaim_for(ReclaimTrigger::Critical),
        reclaimer.reclaim_for(ReclaimTrigger::Scheduled)
    );
    assert_eq!(a.as_ref().unwrap(), b.as_ref().unwrap());
    let shared = a.unwrap().trigger;
    assert!(matches!(
        shared,
        ReclaimTrigger::Critical | ReclaimTrigger::Scheduled
    ));
    // Refused by the rate limit: nothing counted.
    assert!(matches!(
        reclaimer.reclaim_for(ReclaimTrigger::Warning).await,
        Err(tower_memory_probe::ReclaimError::RateLimited { .. })
    ));
    // A background run for a heavy request, then the trailing one it schedules when refused.
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(reclaimer.reclaim_in_background(ReclaimTrigger::HeavyRequest));
    assert!(!reclaimer.reclaim_in_background(ReclaimTrigger::HeavyRequest));
    for _ in 0..100 {
        if reclaimer.stats().trigger(ReclaimTrigger::HeavyRequest).runs == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = reclaimer.stats();
    assert_eq!(stats.trigger(ReclaimTrigger::Api).runs, 1);
    assert_eq!(stats.trigger(shared).runs, 1);
    assert_eq!(stats.trigger(ReclaimTrigger::Warning).runs, 0);
    assert_eq!(stats.trigger(ReclaimTrigger::HeavyRequest).runs, 2);
    let total = stats.total();
    assert_eq!(total.runs, 4);
    assert_eq!(total.runs, reclaimer.runs());
    assert_eq!(total.released_bytes, reclaimer.released_bytes_total());
    let history = reclaimer.history();
    assert_eq!(history.len(), 4);
    assert_eq!(history[0].trigger, ReclaimTrigger::Api);
    assert_eq!(stats.last.as_ref(), history.last());
    assert_eq!(
        total.duration,
        history.iter().map(|r| r.duration).sum::<Duration>()
    );
}
