//! tower-memory-probe with jemalloc as the global allocator.

mod common;

use tower_memory_probe::{AllocatorKind, Backend, allocator_stats, self_check};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[test]
fn self_check_finds_jemalloc() {
    let check = self_check();
    assert_eq!(check.backend, Backend::Jemalloc);
    assert_eq!(check.allocator, AllocatorKind::Jemalloc);
    assert!(check.warnings.is_empty(), "{:?}", check.warnings);
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
fn stats_are_complete_and_consistent() {
    let keep = vec![1u8; 8 << 20];
    let s = allocator_stats().unwrap();
    let allocated = s.allocated_bytes.unwrap();
    let active = s.active_bytes.unwrap();
    let resident = s.resident_bytes.unwrap();
    let mapped = s.mapped_bytes.unwrap();
    assert!(allocated >= 8 << 20, "allocated {allocated}");
    assert!(active >= allocated && mapped >= active && resident >= active);
    assert!(s.retained_bytes.is_some() && s.metadata_bytes.unwrap() > 0);
    assert!(s.fragmentation_ratio().unwrap() >= 0.0);
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
