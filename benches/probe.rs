//! Cost of reading the thread counters on each backend, and of `CountingAlloc` on an alloc+free.
//!
//! `cargo bench --bench probe`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tower_memory_probe::{Backend, CountingAlloc, thread_counters};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn counters(c: &mut Criterion) {
    assert_eq!(tower_memory_probe::self_check().backend, Backend::Jemalloc);
    // Each field goes through black_box on its own: a 16-byte struct stored as two words and
    // reloaded as one stalls store-to-load forwarding and measures the stall, not the read.
    let mut g = c.benchmark_group("thread_counters");
    g.bench_function("baseline (empty loop)", |b| b.iter(|| black_box(0u64)));
    g.bench_function("jemalloc", |b| {
        b.iter(|| {
            let c = thread_counters();
            black_box(c.allocated);
            black_box(c.deallocated);
        })
    });
    g.bench_function("counting", |b| {
        b.iter(|| {
            let c = CountingAlloc::<System>::thread_counters();
            black_box(c.allocated);
            black_box(c.deallocated);
        })
    });
    g.finish();
}

fn alloc_pair(c: &mut Criterion) {
    static COUNTING: CountingAlloc<System> = CountingAlloc::new(System);
    for size in [64usize, 4096] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        let mut g = c.benchmark_group(format!("alloc_free_{size}B"));
        g.bench_function("System", |b| {
            b.iter(|| {
                // SAFETY: a non-zero layout, freed with the same layout.
                unsafe {
                    let p = System.alloc(black_box(layout));
                    System.dealloc(black_box(p), layout);
                }
            })
        });
        g.bench_function("CountingAlloc<System>", |b| {
            b.iter(|| {
                // SAFETY: as above.
                unsafe {
                    let p = COUNTING.alloc(black_box(layout));
                    COUNTING.dealloc(black_box(p), layout);
                }
            })
        });
        g.finish();
    }
}

criterion_group!(benches, counters, alloc_pair);
criterion_main!(benches);
