//! The server of the end-to-end benchmark (`benches/wrk_hello.sh`): axum on 127.0.0.1 answering
//! `GET /api/hello`, with or without `MemoryInterceptorLayer`.
//!
//! ```text
//! hello_bench [--layer off|noop|on|full] [--port N] [--threads N] [--prometheus]
//! ```
//!
//! - `off`: no layer (the baseline);
//! - `on`: the layer as the example server uses it: defaults plus a ledger;
//! - `full`: also a 256 MiB per-request quota and aborts under critical pressure (the owner keeps
//!   its waker in the account on every poll).
//!
//! `--prometheus` installs the Prometheus recorder, so the histograms are really recorded (without
//! it, metrics go to the no-op recorder). The server prints `listening on <addr>` once bound.

use std::io::Write;
use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use tower_memory_interceptor::{Ledger, MemoryInterceptorLayer};
use tower_memory_probe::PressureSignal;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Args {
    layer: String,
    port: u16,
    threads: usize,
    prometheus: bool,
}

fn parse() -> Args {
    let mut args = Args {
        layer: "on".into(),
        port: 0,
        threads: 1,
        prometheus: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--layer" => args.layer = value("--layer"),
            "--port" => args.port = value("--port").parse().expect("--port N"),
            "--threads" => args.threads = value("--threads").parse().expect("--threads N"),
            "--prometheus" => args.prometheus = true,
            other => panic!(
                "unknown argument {other}; usage: hello_bench [--layer off|noop|on|full] [--port N] [--threads N] [--prometheus]"
            ),
        }
    }
    assert!(
        matches!(args.layer.as_str(), "off" | "noop" | "on" | "full"),
        "--layer off|noop|on|full"
    );
    args
}

fn main() {
    let args = parse();
    let self_check = tower_memory_probe::self_check();
    assert_eq!(
        self_check.backend,
        tower_memory_probe::Backend::Jemalloc,
        "the counters must be live"
    );
    if args.prometheus {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("install the Prometheus recorder");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let app = Router::new().route("/api/hello", get(|| async { "Hello, World!" }));
        let app = match args.layer.as_str() {
            "off" => app,
            // A pass-through layer: what any layer applied with `Router::layer` costs in axum.
            "noop" => app.layer(tower::util::MapResponseLayer::new(
                |r: axum::response::Response| r,
            )),
            "on" => app.layer(MemoryInterceptorLayer::new().ledger(Ledger::default())),
            _ => app.layer(
                MemoryInterceptorLayer::new()
                    .ledger(Ledger::default())
                    .max_request_memory(256 << 20)
                    .abort_under_pressure(PressureSignal::new()),
            ),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        println!("listening on {}", listener.local_addr().expect("address"));
        std::io::stdout().flush().expect("stdout");
        axum::serve(listener, app).await.expect("serve");
    });
}
