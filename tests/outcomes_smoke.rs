//! The smoke version of the before/after driver (`benches/outcomes.rs`), in the normal test run:
//! the example server (the whole stack, default settings) in a real 384 MiB memory cgroup takes
//! steady small traffic and a burst of 8 concurrent 64 MiB uploads, 16 heavy reports of 32 MiB
//! and event streams. Buffered, the uploads alone would take 512 MiB, and the reports 512 MiB
//! without the governor: a regression that buffers whole bodies again or loses the governor is
//! OOM-killed or crosses the RSS bound, and fails here.

mod support;

use std::time::{Duration, Instant};

use support::Server;
use support::workload::{self, Background, Burst, status_bytes};
use test_support::MemoryCgroup;

const LIMIT: u64 = 384 << 20;
/// Peak RSS allowed: the critical share of the limit (the budget fills to the warning share, less
/// what the process holds outside requests).
const BOUND: u64 = LIMIT * 85 / 100;

#[test]
fn the_stack_keeps_a_mixed_burst_under_its_limit() {
    let Some(cgroup) = MemoryCgroup::create_or_skip(
        "the_stack_keeps_a_mixed_burst_under_its_limit",
        "outcomes-smoke",
        LIMIT,
    ) else {
        return;
    };
    let server = Server::start_in(&cgroup, "server", &[]);
    let pid = server.pid();
    let runtime = test_support::runtime();
    let idle = status_bytes(pid, "VmRSS:").unwrap();
    let (outcomes, background) = runtime.block_on(async {
        let clock = Instant::now();
        let background = Background::start(&server.addr, Duration::from_millis(20), clock);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let outcomes = workload::burst(
            &server.addr,
            Burst {
                uploads: 8,
                upload_mib: 64,
                heavy: 16,
                heavy_mib: 32,
                streams: 4,
            },
            clock,
            Duration::from_secs(120),
        )
        .await;
        (outcomes, background.finish().await)
    });
    assert_eq!(cgroup.oom_kills(), 0, "the server was OOM-killed");
    let peak = status_bytes(pid, "VmHWM:").expect("the server's VmHWM");
    let burst = workload::counts(&outcomes);
    let small = workload::counts(&background);
    println!(
        "idle RSS {} MiB, peak {} MiB (bound {} MiB), cgroup peak {} MiB; burst {burst:?}; background {small:?}",
        idle >> 20,
        peak >> 20,
        BOUND >> 20,
        cgroup.peak_bytes().unwrap_or(0) >> 20
    );
    let unacceptable: Vec<_> = outcomes
        .iter()
        .chain(&background)
        .filter(|o| !o.acceptable())
        .map(|o| format!("{}: {:?}", o.kind, o.result.as_ref().map(|a| a.status)))
        .collect();
    assert!(
        unacceptable.is_empty(),
        "only 200 or 503 + Retry-After: {unacceptable:?}"
    );
    assert!(
        burst.ok >= 8 + 4,
        "the uploads and streams complete: {burst:?}"
    );
    assert!(
        peak < BOUND,
        "peak RSS {} MiB over the bound of {} MiB",
        peak >> 20,
        BOUND >> 20
    );
}
