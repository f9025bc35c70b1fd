//! The harnesses the workspace's test suites, benches and bench drivers share (not published).
//!
//! - [`process`]: a server as a child process: start it on port 0, read back the address it
//!   announces, keep its output, signal it, kill it on drop ([`ChildServer`]); the test binary
//!   re-run as its own server process ([`spawn_test_child`]).
//! - [`poll`]: wait for a condition with a deadline ([`wait_for`], [`eventually`], ...), bound a
//!   test body in time ([`bounded`]), the two-worker [`runtime`].
//! - [`cgroup`]: a real memory cgroup, child of the process's own (cgroup v1, v2 and hybrid
//!   hosts), with a limit, to run a program under and read what the kernel did to it
//!   ([`MemoryCgroup`]); the skip-with-reason rule where one cannot be created ([`skip`]).
//! - [`fixtures`]: deterministic data ([`json_doc`]), HTTP/1 chunk framing ([`chunk`]), fixture
//!   trees ([`fixtures::write`]).
//! - [`capture`]: output kept in memory for the test to read ([`Captured`]), log lines too
//!   ([`capture_warnings`]).
//!
//! It depends on none of the workspace's crates on purpose: the crates' own tests use it as a
//! dev-dependency, and a dependency back on a crate would give those tests two copies of its
//! types. It is an oracle, too: the cgroup helper resolves cgroups independently of tower-memory-probe,
//! the code under test. See `ARCHITECTURE.md` at the project root for where it sits.
//!
//! Every helper panics with a message on failure: it is for tests.

pub mod capture;
pub mod cgroup;
pub mod fixtures;
pub mod poll;
pub mod process;

pub use capture::{Captured, capture_warnings};
pub use cgroup::{MemoryCgroup, Skip, must_not_skip, skip};
pub use fixtures::{chunk, json_doc};
pub use poll::{
    bounded, eventually, eventually_blocking, run_bounded, runtime, wait_for, wait_for_async,
};
pub use process::{
    ChildServer, example_path, exit_when_stdin_closes, free_port, listening_on_http, send_signal,
    spawn_test_child,
};
