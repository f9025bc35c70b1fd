//! tower-memory-probe with `CountingAlloc<System>` as the global allocator (glibc underneath).

mod common;

use std::alloc::System;
use std::hint::black_box;

use tower_memory_probe::{
    AllocatorKind, Backend, CountingAlloc, allocator_stats, self_check, thread_counters,
};

#[global_allocator]
static GLOBAL: CountingAlloc<System> = CountingAlloc::new(System);

#[test]
fn self_check_finds_the_counting_wrapper_and_glibc() {
    let check = self_check();
    assert_eq!(check.backend, Backend::Counting);
    assert_eq!(check.allocator, AllocatorKind::Glibc);
    let warns_about_jemalloc = check
        .warnings
        .iter()
        .any(|w| w.contains("jemalloc is linked"));
    // With the `jemalloc` feature the library is linked but not installed here: say so.
    assert_eq!(
        warns_about_jemalloc,
        cfg!(feature = "jemalloc"),
        "{:?}",
        check.warnings
    );
}

#[test]
fn one_mib_vec_is_counted() {
    common::one_mib_vec_is_counted();
}

#[test]
fn counters_are_per_thread() {
    common::counters_are_per_thread();
}

#[test]
fn realloc_counts_as_free_plus_alloc() {
    let mut v: Vec<u8> = Vec::with_capacity(1024);
    v.push(1);
    let before = thread_counters();
    v.reserve_exact(4096 - v.len());
    black_box(&v);
    let d = thread_counters().since(before);
    assert_eq!(d.allocated, 4096);
    assert_eq!(d.deallocated, 1024);
}

#[test]
fn glibc_stats_report_what_mallinfo_knows() {
    let keep = vec![1u8; 8 << 20];
    let s = allocator_stats().unwrap();
    assert!(s.allocated_bytes.unwrap() >= 8 << 20);
    assert!(s.mapped_bytes.is_some());
    assert_eq!(s.resident_bytes, None);
    assert_eq!(s.retained_bytes, None);
    drop(keep);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reclaim_returns_freed_memory() {
    common::reclaim_returns_freed_memory().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reclaim_is_single_flight_and_rate_limited() {
    common::reclaim_is_single_flight_and_rate_limited().await;
}

#[tokio::test]
async fn reclaim_counts_every_run_by_trigger() {
    common::reclaim_counts_every_run_by_trigger().await;
}
