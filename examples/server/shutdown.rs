//! The shutdown signal of every example server (`server`, `hyper_server`, `tonic_server` and
//! `baseline_server` include this file): one definition, kept out of the library on purpose. The
//! umbrella crate does not depend on tokio's signal handling, and the baseline server must not
//! depend on this workspace at all; each example still shows the whole pattern in one place.

/// Resolves on SIGTERM or SIGINT. The handlers are installed when this is called, not when the
/// future is first polled: call it before announcing the address, so that a signal sent right
/// after the announcement is never missed.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
