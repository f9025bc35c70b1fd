//! The runtime the async harnesses run each input on, one per thread: a current-thread runtime
//! with time paused (Tokio's test clock), so timers fire as soon as nothing else can run and an
//! input costs no real time waiting. `body_limits.rs` and `framing.rs` use it as
//! `crate::paused_runtime`: their fuzz targets and `tests/fuzz_harnesses.rs` include it once, at
//! the crate root.

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
}

/// Runs `f` to completion on this thread's paused runtime.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    RUNTIME.with(|rt| rt.block_on(f))
}
