//! Does reusing a buffer pay? Serializing 1,000 small records, each into a fresh `Vec` versus one
//! `Vec` cleared between records (the README's best-practices example).
//!
//! `cargo bench --bench practices`

use std::hint::black_box;
use std::io::Write;

use criterion::{Criterion, criterion_group, criterion_main};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn records(c: &mut Criterion) {
    let mut g = c.benchmark_group("serialize_1000_records");
    g.bench_function("fresh Vec per record", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(64 * 1024);
            for id in 0..1000u32 {
                let mut line = Vec::new();
                write!(line, r#"{{"id":{id},"name":"record {id}"}}"#).unwrap();
                out.extend_from_slice(&line);
                out.push(b'\n');
            }
            black_box(out)
        })
    });
    g.bench_function("one Vec, cleared", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(64 * 1024);
            let mut line = Vec::with_capacity(256);
            for id in 0..1000u32 {
                line.clear();
                write!(line, r#"{{"id":{id},"name":"record {id}"}}"#).unwrap();
                out.extend_from_slice(&line);
                out.push(b'\n');
            }
            black_box(out)
        })
    });
    g.finish();
}

criterion_group!(benches, records);
criterion_main!(benches);
