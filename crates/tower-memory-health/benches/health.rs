//! In-process costs of tower-memory-health, each next to its baseline:
//!
//! - `layers`: a request through `PressureShedLayer` and `HealthLayer` (pass-through, and a
//!   refusal under `Critical`) against the bare service;
//! - `endpoints`: answering `/health/ready`, `/health` (from the latest snapshot) and `/metrics`;
//! - `monitor`: one real sample of this process (`/proc`, cgroup, allocator) through the state
//!   machine, and the trend fit over an hour of samples.
//!
//! `cargo bench -p tower-memory-health --bench health -- --warm-up-time 1 --measurement-time 2`

use std::convert::Infallible;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use tower::{Service, ServiceExt, service_fn};
use tower_layer::Layer;
use tower_memory_health::{
    GrowthTrend, HealthLayer, MemoryMonitor, PressureShedLayer, PrometheusMetrics, Sample,
    SampleError, SampleSource,
};
use tower_memory_probe::ProcessMemory;

/// A source at a fixed usage against a 1000-byte limit, to put the monitor at a chosen level.
#[derive(Clone)]
struct Fixed(u64);

impl SampleSource for Fixed {
    fn sample(&self) -> Result<Sample, SampleError> {
        let mut s = Sample::at(Instant::now());
        s.process = Some(ProcessMemory {
            rss_bytes: self.0,
            peak_rss_bytes: self.0,
            virtual_bytes: self.0,
        });
        Ok(s)
    }
}

fn request(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).body(Full::new(Bytes::new())).unwrap()
}

fn handler() -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone {
    service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn monitor_at(rt: &tokio::runtime::Runtime, usage: u64) -> MemoryMonitor {
    let monitor = MemoryMonitor::builder()
        .source(Fixed(usage))
        .limit_bytes(1000)
        .reclaim_enabled(false)
        .build()
        .unwrap();
    rt.block_on(monitor.sample_now()).unwrap();
    monitor
}

fn layers(c: &mut Criterion) {
    let rt = runtime();
    let normal = monitor_at(&rt, 100);
    let critical = monitor_at(&rt, 900);
    let mut g = c.benchmark_group("layers");
    let bare = handler();
    g.bench_function("bare", |b| {
        b.iter(|| {
            rt.block_on(bare.clone().oneshot(request("/api/work")))
                .unwrap()
        })
    });
    let shed = PressureShedLayer::new(&normal).layer(handler());
    g.bench_function("shed_pass_through", |b| {
        b.iter(|| {
            rt.block_on(shed.clone().oneshot(request("/api/work")))
                .unwrap()
        })
    });
    let shed_proportional = PressureShedLayer::new(&normal)
        .proportional(0.5)
        .layer(handler());
    g.bench_function("shed_proportional_pass_through", |b| {
        b.iter(|| {
            rt.block_on(shed_proportional.clone().oneshot(request("/api/work")))
                .unwrap()
        })
    });
    let refusing = PressureShedLayer::new(&critical).layer(handler());
    g.bench_function("shed_refusal_503", |b| {
        b.iter(|| {
            rt.block_on(refusing.clone().oneshot(request("/api/work")))
                .unwrap()
        })
    });
    let health = HealthLayer::new(&normal).layer(handler());
    g.bench_function("health_pass_through", |b| {
        b.iter(|| {
            rt.block_on(health.clone().oneshot(request("/api/work")))
                .unwrap()
        })
    });
    g.finish();
}

fn endpoints(c: &mut Criterion) {
    let rt = runtime();
    let monitor = MemoryMonitor::builder()
        .reclaim_enabled(false)
        .build()
        .unwrap();
    let _guard = rt.enter();
    monitor.start().unwrap();
    rt.block_on(monitor.sample_now()).unwrap();
    let metrics = PrometheusMetrics::install().unwrap();
    let svc = HealthLayer::new(&monitor).metrics(metrics).layer(handler());
    let mut g = c.benchmark_group("endpoints");
    for path in [
        "/api/health/ready",
        "/api/health/live",
        "/api/health",
        "/api/metrics",
    ] {
        g.bench_function(path, |b| {
            b.iter(|| {
                let response = rt.block_on(svc.clone().oneshot(request(path))).unwrap();
                black_box(response)
            })
        });
    }
    g.finish();
    monitor.stop();
}

fn monitor(c: &mut Criterion) {
    let rt = runtime();
    let real = MemoryMonitor::builder()
        .reclaim_enabled(false)
        .build()
        .unwrap();
    let mut g = c.benchmark_group("monitor");
    g.bench_function("sample_now_real_process", |b| {
        b.iter(|| rt.block_on(real.sample_now()).unwrap())
    });
    g.bench_function("probe_source_read_only", |b| {
        let source = tower_memory_health::ProbeSource::new();
        b.iter(|| black_box(source.sample().unwrap()))
    });
    let start = Instant::now();
    let mut trend = GrowthTrend::new(Duration::from_secs(3600));
    for s in 0..3600u64 {
        trend.record(start + Duration::from_secs(s), 300_000_000 + s * 12_500);
    }
    g.bench_function("trend_estimate_3600_points", |b| {
        b.iter(|| black_box(trend.estimate()))
    });
    g.finish();
}

criterion_group!(benches, layers, endpoints, monitor);
criterion_main!(benches);
