//! The main job: an axum service with the whole memory-aware stack.
//!
//! ```sh
//! cargo run --release --example server --features full
//! ```
//!
//! Listens on 127.0.0.1:5000 (`BIND`, `PORT`), configured from the environment (README,
//! "Configuration"), prints the address and the effective configuration, and serves:
//!
//! - `GET /api/hello`
//! - `GET /api/documents?count=N`: N realistic JSON records (default 1000, about 256 KiB)
//! - `POST /api/documents`: a JSON array, buffered; `{"received": count}`
//! - `POST /api/documents/stream`: NDJSON of any size, processed record by record as it streams
//!   in; `{"records": n, "bytes": n, "max_id": n, "score_sum": x}`
//! - `POST /api/uploads`: streamed to a file in `UPLOAD_DIR`; `{"bytes": n, "sha256": "..."}`
//! - `GET /api/events?count=N&interval_ms=M`: server-sent events
//! - `GET /api/reports/heavy?mib=N`: an N MiB report built across awaits (the heavy path)
//! - `/api/health`, `/api/health/live`, `/api/health/ready`, `/api/metrics`,
//!   `/api/debug/pprof/heap` (with `HEAP_PROFILE_TOKEN`; dumps go through `HEAP_PROFILE_DIR`);
//!   with `ADMIN_PORT`, `/metrics` and `/debug/pprof/heap` move to the admin listener
//! - `server --probe http://127.0.0.1:5000/api/health/live`: the container health check
//! - `GET /api/faults/panic` (with `FAULT_ROUTES=true`): a handler that panics
//!
//! The stack, outermost first: HealthLayer, PressureShedLayer, MemoryInterceptorLayer,
//! CompressionLayer, RequestDecompressionLayer, StreamBodyLayer, CatchPanicLayer, handler, built by
//! `tower_memory::stack::MemoryStack` from the configuration and applied as one layer (with
//! tower-http's CatchPanicLayer innermost: a panicking handler is an ordinary 500 to every layer,
//! one report, its memory and budget returned). On SIGTERM or SIGINT readiness
//! turns 503, in-flight requests finish (at most `DRAIN_TIMEOUT_MS`), and the process exits 0.

mod config;
mod documents;
mod ndjson;
mod probe;
mod routes;
mod serve;
mod shared;
mod shutdown;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tikv_jemallocator::Jemalloc;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_memory::stack::MemoryStack;
use tower_memory_health::PrometheusMetrics;
use tower_memory_stream_body::SpoolConfig;

use config::ServerConfig;
use routes::Uploads;

use shutdown::shutdown_signal;

#[global_allocator]
static GLOBAL: Jemalloc = Jemalloc;

/// jemalloc starts with heap profiling on (sampling every 512 KiB on average, jemalloc's
/// default), so `/api/debug/pprof/heap` answers whenever a token is configured.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8; 27] = b"prof:true,prof_active:true\0";

fn main() {
    // `server --probe URL`: the container's health check (no curl in the image).
    if let Some(code) = probe::from_args() {
        std::process::exit(code);
    }
    let config = match ServerConfig::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("configuration error: {e}");
            std::process::exit(2);
        }
    };
    init_logging(config.json_logs);
    // One warning per variable meant for this server that it does not read (the Node.js
    // guide's NODE_* settings, misspelt MEMORY_* names), naming what to use instead.
    tower_memory::config::warn_unrecognized_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(serve(config)) {
        tracing::error!(error = %e, "server failed");
        std::process::exit(1);
    }
}

fn init_logging(json: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colours only on a terminal: log files, `kubectl logs` and log shippers get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    if json {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_ansi(ansi)
            .with_env_filter(filter)
            .init();
    }
}

async fn serve(config: ServerConfig) -> Result<(), Box<dyn std::error::Error>> {
    let check = tower_memory_probe::self_check();
    let threshold = config.stack.stream_body.buffer_threshold;

    std::fs::create_dir_all(&config.upload_dir)?;
    // The whole stack from the configuration, in one call (README, "Configuration"). Uploads
    // spool into the upload directory itself: keeping one is then a rename. Refused at start-up
    // if the directory is a tmpfs (its files would count as memory).
    let stack = MemoryStack::builder(config.stack.clone())
        .spool(
            SpoolConfig::builder(&config.upload_dir)
                .allow_tmpfs(config.upload_dir_allow_tmpfs)
                .build()?,
        )
        .metrics(PrometheusMetrics::install()?)
        .admin_endpoints(config.admin.is_some())
        .build()?;
    stack.start()?;
    let drain = stack.drain();

    let mut app = Router::new()
        .route("/api/hello", get(routes::hello))
        .route(
            "/api/documents",
            get(routes::list_documents).post(routes::receive_documents),
        )
        .route("/api/documents/stream", post(ndjson::stream_documents))
        .route("/api/uploads", post(routes::upload))
        .route("/api/events", get(routes::events))
        .route("/api/reports/heavy", get(routes::heavy_report));
    if config.fault_routes {
        app = app.route("/api/faults/panic", get(routes::panic));
    }
    let app = app
        .with_state(Uploads::new(config.upload_dir.clone()))
        // One `layer` call: axum boxes a layered route once per `Router::layer`, so the stack,
        // the panic catcher and axum's body limit (collecting extractors such as `Json` never
        // take more than the body layer buffers) go in as one layer, after routing (route
        // labels). A panic is caught innermost, so the layers see a 500 and every one of them
        // ends its request normally (one report, the body's reservation and the governor's
        // returned).
        .layer(
            ServiceBuilder::new()
                .layer(stack.layer())
                .layer(CatchPanicLayer::new())
                .layer(DefaultBodyLimit::max(threshold as usize)),
        );

    let stop_signal = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(config.bind, config.port)).await?;
    let addr = listener.local_addr()?;
    // The admin listener: metrics and the heap profile, off the public port.
    let admin = match (config.admin, stack.admin_layer()) {
        (Some(at), Some(layer)) => {
            let listener = tokio::net::TcpListener::bind(at).await?;
            Some((listener, Router::new().layer(layer)))
        }
        _ => None,
    };
    let summary = config.summary();
    if config.json_logs {
        tracing::info!(
            backend = %check.backend,
            allocator = %check.allocator,
            config = %summary,
            "listening on http://{addr}"
        );
    } else {
        println!("listening on http://{addr}");
        println!(
            "counters: {}, allocator: {}",
            check.backend, check.allocator
        );
        println!("configuration {summary}");
    }
    // Announced after the public address (tests and scripts read that one first).
    if let Some((admin_listener, admin_app)) = admin {
        let admin_addr = admin_listener.local_addr()?;
        if config.json_logs {
            tracing::info!("admin listening on http://{admin_addr}");
        } else {
            println!("admin listening on http://{admin_addr}");
        }
        // Lives until the process exits: metrics and profiles stay reachable during the drain.
        tokio::spawn(async move {
            if let Err(e) = axum::serve(admin_listener, admin_app).await {
                tracing::error!(error = %e, "admin listener failed");
            }
        });
    }

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let drain_delay = config.drain_delay;
    let shutdown = async move {
        stop_signal.await;
        drain.start();
        tracing::info!(
            delay_ms = drain_delay.as_millis() as u64,
            "draining: readiness is 503"
        );
        tokio::time::sleep(drain_delay).await;
        let _ = stop_tx.send(());
    };
    // Not axum::serve: it sets no header timeout, head size or write timeout (serve.rs).
    let server = serve::serve(listener, app, config.connection_limits, shutdown);
    let drain_timeout = config.drain_timeout;
    let deadline = async move {
        // Only once the listener has closed does the drain timeout start.
        if stop_rx.await.is_ok() {
            tokio::time::sleep(drain_timeout).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result?,
        () = deadline => tracing::warn!(
            timeout_ms = drain_timeout.as_millis() as u64,
            "drain timeout: closing the connections still open"
        ),
    }
    stack.stop();
    // HEAP_PROFILE_ON_EXIT: what was still allocated at the end, for `pprof -diff_base`.
    if let Some(result) = tokio::task::block_in_place(|| stack.write_exit_profile()) {
        match result {
            Ok((path, bytes)) => {
                tracing::info!(path = %path.display(), bytes, "heap profile written on exit")
            }
            Err(e) => tracing::error!(error = %e, "heap profile on exit failed"),
        }
    }
    tracing::info!("shut down");
    Ok(())
}
