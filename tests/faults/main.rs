//! Faults the example server must survive, as a real process on 127.0.0.1: a handler that panics,
//! clients that go away mid-upload and mid-download, a full disk while spooling, critical memory
//! pressure forced for real in a memory cgroup, and SIGTERM while uploads are in flight. Each
//! checks the answer, that nothing is left behind (files, budget bytes), one report per request
//! where the issue asks for it, and that the server serves on.

#[path = "../support/mod.rs"]
mod support;

mod disconnect;
mod disk_full;
mod panic;
mod pressure;
mod sigterm;

use std::time::Duration;

/// Runs a scenario on a runtime of its own, bounded in time.
pub fn run<F: std::future::Future<Output = ()>>(limit: Duration, f: F) {
    test_support::run_bounded("the scenario", limit, f)
}
