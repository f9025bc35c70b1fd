//! Largest-first aborts under critical memory pressure: the registry of in-flight accounts and the
//! task that watches the pressure signal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use memory_probe::Pressure;
use slab::Slab;
use tokio::sync::oneshot;

use crate::account::{ABORT_PRESSURE, Account, LIVE};
use crate::layer::PressureSettings;

/// The accounts of the requests in flight, and the switch that starts the watcher.
pub(crate) struct PressureAborter {
    settings: PressureSettings,
    live: Mutex<Slab<Weak<Account>>>,
    started: AtomicBool,
    // Dropped with the aborter: the watcher then ends.
    _shutdown: oneshot::Sender<()>,
    shutdown_rx: Mutex<Option<oneshot::Receiver<()>>>,
}

impl PressureAborter {
    pub(crate) fn new(settings: PressureSettings) -> PressureAborter {
        let (tx, rx) = oneshot::channel();
        PressureAborter {
            settings,
            live: Mutex::new(Slab::new()),
            started: AtomicBool::new(false),
            _shutdown: tx,
            shutdown_rx: Mutex::new(Some(rx)),
        }
    }

    fn slab(&self) -> std::sync::MutexGuard<'_, Slab<Weak<Account>>> {
        // Entries are plain `Weak`s: a panic elsewhere cannot leave the slab half-updated.
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new account; `make` builds it with its registry key.
    pub(crate) fn register(&self, make: impl FnOnce(usize) -> Account) -> Arc<Account> {
        let mut slab = self.slab();
        let entry = slab.vacant_entry();
        let account = Arc::new(make(entry.key()));
        entry.insert(Arc::downgrade(&account));
        account
    }

    pub(crate) fn deregister(&self, key: usize) {
        self.slab().try_remove(key);
    }

    /// Requests in flight.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.slab().len()
    }

    /// Starts the watcher on the current Tokio runtime, once.
    pub(crate) fn ensure_watcher(self: &Arc<Self>) {
        if self.started.load(Ordering::Relaxed) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(shutdown) = self
            .shutdown_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        let rx = self.settings.signal.subscribe();
        handle.spawn(watch(
            Arc::downgrade(self),
            shutdown,
            rx,
            self.settings.tick,
        ));
    }

    /// One pressure tick: aborts up to `per_tick` of the largest live requests. Returns how many.
    pub(crate) fn abort_largest(&self) -> usize {
        let mut candidates: Vec<(i64, Arc<Account>)> = {
            let slab = self.slab();
            slab.iter()
                .filter_map(|(_, weak)| weak.upgrade())
                .filter(|a| a.state.load(Ordering::Relaxed) == LIVE)
                .map(|a| (a.held(), a))
                .filter(|(held, _)| *held >= self.settings.min_bytes as i64)
                .collect()
        };
        candidates.sort_unstable_by_key(|c| std::cmp::Reverse(c.0));
        let mut aborted = 0;
        for (held, account) in candidates {
            if aborted == self.settings.per_tick {
                break;
            }
            if account.request_abort(ABORT_PRESSURE) {
                tracing::debug!(
                    target: "memory_interceptor",
                    held,
                    route = %account.route(),
                    path = %account.path,
                    "critical memory pressure: aborting the largest request in flight"
                );
                aborted += 1;
            }
        }
        aborted
    }
}

/// Waits for critical pressure, then aborts the largest requests once per tick while it lasts.
async fn watch(
    aborter: Weak<PressureAborter>,
    mut shutdown: oneshot::Receiver<()>,
    mut rx: tokio::sync::watch::Receiver<Pressure>,
    tick: std::time::Duration,
) {
    loop {
        let level = *rx.borrow_and_update();
        if level != Pressure::Critical {
            tokio::select! {
                _ = &mut shutdown => return,
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
            }
        }
        let Some(aborter) = aborter.upgrade() else {
            return;
        };
        aborter.abort_largest();
        drop(aborter);
        // A full tick before the next round, whatever the signal does meanwhile: the number of
        // aborts per tick stays bounded even if the level flaps.
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(tick) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt, Full};
    use memory_probe::PressureSignal;
    use tower::{Layer, Service, service_fn};

    use crate::MemoryInterceptorLayer;

    #[tokio::test]
    async fn the_registry_holds_exactly_the_requests_in_flight() {
        let layer = MemoryInterceptorLayer::new()
            .abort_under_pressure(PressureSignal::new())
            .metrics(false);
        let aborter = layer.config.pressure.clone().expect("an aborter");
        let mut service = layer.layer(service_fn(|_req: Request<()>| async {
            tokio::task::yield_now().await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"x"))))
        }));
        let first = service.call(Request::new(()));
        let second = service.call(Request::new(()));
        assert_eq!(aborter.in_flight(), 2);

        // A future dropped before its response leaves the registry.
        drop(first);
        assert_eq!(aborter.in_flight(), 1);

        // A response in hand is still in flight until its body ends.
        let mut second = pin!(second);
        let mut cx = Context::from_waker(Waker::noop());
        let response = loop {
            if let Poll::Ready(r) = second.as_mut().poll(&mut cx) {
                break r.unwrap();
            }
        };
        assert_eq!(aborter.in_flight(), 1);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "x");
        assert_eq!(aborter.in_flight(), 0);

        // Nothing is in flight: a pressure tick aborts nothing.
        assert_eq!(aborter.abort_largest(), 0);
    }
}
