//! `PrometheusMetrics`: the process-wide Prometheus recorder behind `/metrics`.

use std::fmt;
use std::sync::Mutex;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::gauges::record_metrics;
use crate::metrics::describe_metrics;
use crate::monitor::MemoryMonitor;

/// Histogram buckets for `*_bytes` histograms: 256 B to 1 GiB in steps of 4.
const BYTES_BUCKETS: &[f64] = &[
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
];

/// Histogram buckets for `*_seconds` histograms: 1 ms to 60 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

static INSTALLED: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Why the Prometheus recorder could not be installed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricsError {
    /// Another `metrics` recorder is already the global one.
    #[error("cannot install the Prometheus recorder: {0}")]
    Install(String),
}

/// The global `metrics` recorder rendered as Prometheus text; what `/metrics` serves.
///
/// A process has one global recorder: [`install`](Self::install) sets it the first time and
/// returns the same handle on every later call. Histograms whose names end in `_bytes` or
/// `_seconds` get buckets (true Prometheus histograms, which aggregate across instances, rather
/// than summaries).
///
/// An application that installed its recorder itself (its own
/// `PrometheusBuilder::install_recorder()`, or a crate such as axum-prometheus) hands its handle
/// to [`from_handle`](Self::from_handle) instead: `/metrics` then renders that recorder, the
/// application's metrics and this workspace's together.
///
/// ```
/// use tower_memory_health::PrometheusMetrics;
///
/// let metrics = PrometheusMetrics::install().expect("no other recorder installed");
/// metrics::counter!("demo_requests_total").increment(1);
/// assert!(metrics.render(None).contains("demo_requests_total 1"));
/// // Idempotent.
/// PrometheusMetrics::install().unwrap();
/// ```
#[derive(Clone)]
pub struct PrometheusMetrics {
    handle: PrometheusHandle,
}

impl fmt::Debug for PrometheusMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusMetrics").finish_non_exhaustive()
    }
}

impl PrometheusMetrics {
    /// Installs the recorder with this crate's bucket defaults (or returns the one installed).
    pub fn install() -> Result<Self, MetricsError> {
        Self::install_with(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_bytes".into()), BYTES_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                })
                .expect("bucket lists are not empty")
        })
    }

    /// Installs a recorder from the builder `make` returns, unless one was installed through
    /// this type already (then `make` is not called and that one is returned).
    pub fn install_with(make: impl FnOnce() -> PrometheusBuilder) -> Result<Self, MetricsError> {
        let mut slot = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(handle) = slot.as_ref() {
            return Ok(Self {
                handle: handle.clone(),
            });
        }
        let handle = make()
            .install_recorder()
            .map_err(|e| MetricsError::Install(e.to_string()))?;
        spawn_upkeep(handle.clone());
        describe_metrics();
        *slot = Some(handle.clone());
        Ok(Self { handle })
    }

    /// Serves `/metrics` from a recorder the application installed itself: everything recorded
    /// in it, the application's metrics and this workspace's, is rendered. Describes this
    /// crate's metrics to the installed recorder (as [`install`](Self::install) does).
    ///
    /// `upkeep` says who folds the exporter's histogram samples: until `run_upkeep` runs, every
    /// sample stays queued, and the interceptor records two per request, so an unscraped service
    /// grows without bound. [`Upkeep::Spawn`] (use it unless you know otherwise) starts a thread
    /// that runs it every 5 s for this handle; [`Upkeep::External`] leaves it to the application
    /// (`PrometheusBuilder::install()` with its own HTTP listener runs one, and so does a program
    /// that calls `run_upkeep` on a timer). A second upkeep of the same recorder is harmless, a
    /// missing one is a leak. Every [`render`](Self::render) runs upkeep too. Build it once per
    /// handle and clone it (each call with `Upkeep::Spawn` starts a thread).
    ///
    /// ```
    /// use metrics_exporter_prometheus::PrometheusBuilder;
    /// use tower_memory_health::{PrometheusMetrics, Upkeep};
    ///
    /// let handle = PrometheusBuilder::new().install_recorder().expect("the first recorder");
    /// metrics::counter!("app_logins_total").increment(1);
    /// let metrics = PrometheusMetrics::from_handle(handle, Upkeep::Spawn);
    /// assert!(metrics.render(None).contains("app_logins_total 1"));
    /// ```
    ///
    /// The handle is `metrics-exporter-prometheus` 0.18's (the version this crate builds on;
    /// a crate that installs the recorder for you must use the same one). A handle of a recorder
    /// that is not the global one renders only what is recorded into it (the workspace emits into
    /// the global recorder; a metrics-util fanout that contains it is fine).
    pub fn from_handle(handle: PrometheusHandle, upkeep: Upkeep) -> Self {
        if upkeep == Upkeep::Spawn {
            spawn_upkeep(handle.clone());
        }
        describe_metrics();
        Self { handle }
    }

    /// The exporter's handle.
    pub fn handle(&self) -> &PrometheusHandle {
        &self.handle
    }

    /// Updates the monitor's gauges (when given), runs the exporter's upkeep and renders the
    /// text exposition.
    pub fn render(&self, monitor: Option<&MemoryMonitor>) -> String {
        if let Some(monitor) = monitor {
            record_metrics(monitor);
        }
        self.handle.run_upkeep();
        self.handle.render()
    }
}

/// Who runs the exporter's upkeep for a handle given to [`PrometheusMetrics::from_handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Upkeep {
    /// A thread of this crate runs `run_upkeep` every 5 s for the process's life.
    Spawn,
    /// The application runs it (and scrapes run it too).
    External,
}

/// How often the exporter's histogram samples are folded into their summaries when nobody
/// scrapes: the exporter's own default for the recorders it installs itself.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// `install_recorder` leaves upkeep to the caller, and until it runs every histogram sample stays
/// queued: an unscraped service (no Prometheus yet, a broken scrape) grew by about 40 bytes per
/// request without bound (1.1 M requests: +45 MiB; the outcomes soak: +8 MiB/hour). A plain thread,
/// so that no Tokio runtime is needed; it lives as long as the process (a handle it was given
/// may outlive its recorder's use, and keeping it costs a sleep every 5 s).
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "no metrics upkeep thread: histogram samples are folded only when /metrics is scraped");
    }
}
