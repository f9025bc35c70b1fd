//! tower-memory-probe with `CountingAlloc<MiMalloc>` as the global allocator.

mod common;

use mimalloc::MiMalloc;
use tower_memory_probe::{AllocatorKind, Backend, CountingAlloc, self_check};

#[global_allocator]
static GLOBAL: CountingAlloc<MiMalloc> = CountingAlloc::new(MiMalloc);

#[test]
fn self_check_finds_mimalloc_under_the_counting_wrapper() {
    let check = self_check();
    assert_eq!(check.backend, Backend::Counting);
    assert_eq!(check.allocator, AllocatorKind::Mimalloc);
}

#[test]
fn one_mib_vec_is_counted() {
    common::one_mib_vec_is_counted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reclaim_returns_freed_memory() {
    common::reclaim_returns_freed_memory().await;
}
