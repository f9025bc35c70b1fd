//! Largest-first aborts under critical memory pressure: the task that watches the pressure signal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tower_memory_probe::{Pressure, PressureSignal};

use crate::account::State;
use crate::registry::Registry;

/// What the aborter needs of the layer's configuration, once a signal is given.
#[derive(Clone)]
pub(crate) struct PressureSettings {
    pub(crate) signal: PressureSignal,
    pub(crate) per_tick: usize,
    pub(crate) tick: Duration,
    pub(crate) min_bytes: u64,
}

/// Aborts the largest requests in flight while pressure is critical: the settings, the registry it
/// searches and the switch that starts the watcher.
pub(crate) struct PressureAborter {
    settings: PressureSettings,
    registry: Arc<Registry>,
    /// Whether a watcher task is alive (cleared by the task's drop, also when its runtime shuts
    /// down: the next request then starts one on its own runtime).
    watching: Arc<AtomicBool>,
    // Dropped with the aborter: the watcher then ends.
    shutdown: watch::Sender<()>,
}

impl PressureAborter {
    pub(crate) fn new(settings: PressureSettings, registry: Arc<Registry>) -> PressureAborter {
        PressureAborter {
            settings,
            registry,
            watching: Arc::new(AtomicBool::new(false)),
            shutdown: watch::channel(()).0,
        }
    }

    /// Requests in flight.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.registry.in_flight()
    }

    /// Starts the watcher on the current Tokio runtime unless one is alive.
    pub(crate) fn ensure_watcher(self: &Arc<Self>) {
        if self.watching.load(Ordering::Relaxed) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.watching.swap(true, Ordering::AcqRel) {
            return;
        }
        let alive = Alive(Arc::clone(&self.watching));
        handle.spawn(watch(
            Arc::downgrade(self),
            self.shutdown.subscribe(),
            self.settings.signal.subscribe(),
            self.settings.tick,
            alive,
        ));
    }

    /// One pressure tick: aborts up to `per_tick` of the largest live requests. Returns how many.
    pub(crate) fn abort_largest(&self) -> usize {
        let min = self.settings.min_bytes as i64;
        let candidates = self
            .registry
            .ranked(|a| Some(a.held()).filter(|held| *held >= min));
        let mut aborted = 0;
        for (held, account) in candidates {
            if aborted == self.settings.per_tick {
                break;
            }
            if account.request_abort(State::AbortPressure) {
                tracing::debug!(
                    target: "memory_interceptor",
                    held,
                    route = %account.route(),
                    path = account.shared.config.logged_path(&account.path),
                    "critical memory pressure: aborting the largest request in flight"
                );
                aborted += 1;
            }
        }
        aborted
    }
}

/// Clears the "watcher alive" flag when the watcher task goes, however it goes.
struct Alive(Arc<AtomicBool>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Waits for critical pressure, then aborts the largest requests once per tick while it lasts.
async fn watch(
    aborter: Weak<PressureAborter>,
    mut shutdown: watch::Receiver<()>,
    mut rx: watch::Receiver<Pressure>,
    tick: std::time::Duration,
    _alive: Alive,
) {
    loop {
        let level = *rx.borrow_and_update();
        if level != Pressure::Critical {
            tokio::select! {
                // Only ever an error: the aborter (and its sender) is gone.
                _ = shutdown.changed() => return,
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
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(tick) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::task::{Context, Poll, Waker};

    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt, Full};
    use tower::{Layer, Service, service_fn};
    use tower_memory_probe::PressureSignal;

    use crate::MemoryInterceptorLayer;

    #[tokio::test]
    async fn the_registry_holds_exactly_the_requests_in_flight() {
        // Every request is a candidate with `min_bytes` 0: each is registered at its call.
        let layer = MemoryInterceptorLayer::new()
            .abort_under_pressure(PressureSignal::new())
            .pressure_abort_min_bytes(0)
            .metrics(false);
        let aborter = layer.shared().pressure.clone().expect("an aborter");
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

    #[tokio::test]
    async fn small_requests_stay_out_of_the_registry_until_they_grow() {
        let layer = MemoryInterceptorLayer::new()
            .abort_under_pressure(PressureSignal::new())
            .pressure_abort_min_bytes(64 << 10)
            .metrics(false);
        let aborter = layer.shared().pressure.clone().expect("an aborter");
        let mut service = layer.layer(service_fn(|req: Request<()>| async move {
            let size: usize = req.uri().query().unwrap_or("0").parse().unwrap();
            let block = vec![1u8; size];
            tokio::task::yield_now().await;
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(block))))
        }));
        let mut cx = Context::from_waker(Waker::noop());
        let mut small = pin!(service.call(Request::get("/?100").body(()).unwrap()));
        let mut large = pin!(service.call(Request::get("/?1048576").body(()).unwrap()));
        assert_eq!(aborter.in_flight(), 0, "nothing held yet");
        assert!(small.as_mut().poll(&mut cx).is_pending());
        assert!(large.as_mut().poll(&mut cx).is_pending());
        assert_eq!(aborter.in_flight(), 1, "only the request over min_bytes");
        let response = loop {
            if let Poll::Ready(r) = large.as_mut().poll(&mut cx) {
                break r.unwrap();
            }
        };
        drop(response);
        assert_eq!(aborter.in_flight(), 0);
    }

    #[test]
    fn the_watcher_follows_the_runtime_and_ends_with_the_layer() {
        let layer = MemoryInterceptorLayer::new()
            .abort_under_pressure(PressureSignal::new())
            .metrics(false);
        let aborter = layer.shared().pressure.clone().expect("an aborter");
        let watching = Arc::clone(&aborter.watching);
        drop(aborter);
        let mut service = layer.layer(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"x"))))
        }));
        drop(layer);
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        for _ in 0..2 {
            let rt = runtime();
            rt.block_on(async {
                drop(service.call(Request::new(())));
                tokio::task::yield_now().await;
            });
            assert!(watching.load(Ordering::Acquire), "started by the request");
            drop(rt);
            assert!(!watching.load(Ordering::Acquire), "gone with its runtime");
        }
        let rt = runtime();
        rt.block_on(async {
            drop(service.call(Request::new(())));
            tokio::task::yield_now().await;
            assert!(watching.load(Ordering::Acquire));
            // The last service of the layer goes: so does the watcher.
            drop(service);
            for _ in 0..100 {
                if !watching.load(Ordering::Acquire) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            assert!(!watching.load(Ordering::Acquire), "ended with the layer");
        });
    }

    #[test]
    fn requests_from_many_threads_register_and_leave() {
        let layer = MemoryInterceptorLayer::new()
            .abort_under_pressure(PressureSignal::new())
            .pressure_abort_min_bytes(0)
            .metrics(false);
        let aborter = layer.shared().pressure.clone().expect("an aborter");
        let service = layer.layer(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"x"))))
        }));
        let barrier = std::sync::Barrier::new(9);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let mut service = service.clone();
                    let barrier = &barrier;
                    scope.spawn(move || {
                        let futures: Vec<_> =
                            (0..4).map(|_| service.call(Request::new(()))).collect();
                        barrier.wait(); // all 32 registered
                        barrier.wait(); // counted
                        drop(futures);
                    })
                })
                .collect();
            barrier.wait();
            assert_eq!(aborter.in_flight(), 32);
            barrier.wait();
            for handle in handles {
                handle.join().unwrap();
            }
        });
        assert_eq!(aborter.in_flight(), 0);
    }
}
