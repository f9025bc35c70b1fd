//! In-process cost of `MemoryInterceptorLayer` against the bare service, on a ready trivial service:
//! one request = call, poll the response future to completion, poll the body to its end, drop it
//! (the report is emitted then).
//!
//! - `per_request/*`: the service answers on its first poll.
//! - `per_poll/*/polls=N`: the response future returns `Pending` N-1 times first (waking itself),
//!   so the cost of one extra poll is the slope between `polls=1` and `polls=17`.
//!
//! Run: `cargo bench -p tower-memory-interceptor --bench overhead`
//! (short run: append `-- --warm-up-time 1 --measurement-time 2`). On a busy machine,
//! `--bench overhead_interleaved` gives figures that resist the noise better.

mod scenario;

use std::task::Context;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Uri;
use scenario::{Trivial, check_counters, layers, one_request};
use tower::Layer;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn bench_group(c: &mut Criterion, group_name: &str, polls: &[u32]) {
    check_counters();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Inside a runtime, as in a server (the pressure watcher needs one).
    let _guard = runtime.enter();
    let waker = scenario::waker();
    let mut cx = Context::from_waker(&waker);
    let uri = Uri::from_static("/api/hello");
    let mut group = c.benchmark_group(group_name);
    for &n in polls {
        let id = |name: &str| {
            if polls.len() > 1 {
                format!("{name}/polls={n}")
            } else {
                name.to_string()
            }
        };
        let mut bare = Trivial { pendings: n - 1 };
        group.bench_function(id("bare"), |b| {
            b.iter(|| one_request(&mut bare, &uri, &mut cx))
        });
        for (name, layer) in layers() {
            let mut service = layer.layer(Trivial { pendings: n - 1 });
            group.bench_function(id(name), |b| {
                b.iter(|| one_request(&mut service, &uri, &mut cx))
            });
        }
    }
    group.finish();
}

fn per_request(c: &mut Criterion) {
    bench_group(c, "per_request", &[1]);
}

fn per_poll(c: &mut Criterion) {
    bench_group(c, "per_poll", &[1, 17]);
}

criterion_group!(benches, per_request, per_poll);
criterion_main!(benches);
