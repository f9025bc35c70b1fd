// Over 400 lines: the builder, the composed layer and its service share one list of layers; to be split once the other branches' renames in it have landed.
//! The whole stack as one layer, built from the configuration in one call.
//!
//! Applying six layers one `Router::layer` at a time makes axum box the route's service and the
//! response body again for each of them (and clone the boxed service for every request);
//! [`MemoryStackLayer`] composes them into one service type that axum boxes once. It also holds the
//! one mapping of the configuration ([`Config`], every crate's variables) to the layers, so that
//! no program writes it by hand: [`MemoryStack::from_env`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;

use compression_layer::{
    Compression, CompressionLayer, RequestDecompression, RequestDecompressionBody,
    RequestDecompressionLayer,
};
use http::{Method, Request, Response, Uri};
use memory_health::{
    BuildError, Drain, Health, HealthLayer, MemoryMonitor, PressureShed, PressureShedLayer,
    StartError,
};
use memory_interceptor_layer::{InFlight, Ledger, MemoryInterceptor, MemoryInterceptorLayer};
use memory_probe::{MemoryBudget, PressureSignal, Reclaimer};
use pin_project_lite::pin_project;
use stream_body_layer::{SpoolConfig, StreamBodyLayer, StreamBodyLimit};
use tower_layer::Layer;
use tower_service::Service;

use crate::config::{Config, ConfigError};
pub use crate::config::{DEFAULT_MAX_BODY_SIZE, DEFAULT_MAX_REQUEST_MEMORY};
/// The boxed error of [`StackBody`].
pub use memory_probe::BoxError;
/// Routes the ledger keeps by default: 256.
pub const DEFAULT_LEDGER_ROUTES: usize = 256;
/// Routes `/health` lists by default: 10.
pub const DEFAULT_TOP_ROUTES: usize = 10;

type RouteFn = dyn Fn(&Method, &Uri) -> Option<&'static str> + Send + Sync;

/// Builds a [`MemoryStack`]; every setting has a default (stated on each method).
#[must_use]
pub struct MemoryStackBuilder {
    config: Config,
    #[cfg(feature = "prometheus")]
    metrics: Option<memory_health::PrometheusMetrics>,
    ledger_routes: usize,
    top_routes: usize,
    prefix: Option<String>,
    route_classifier: Option<std::sync::Arc<RouteFn>>,
    admin: bool,
}

impl std::fmt::Debug for MemoryStackBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStackBuilder")
            .field("config", &self.config)
            .field("ledger_routes", &self.ledger_routes)
            .field("top_routes", &self.top_routes)
            .field("admin_endpoints", &self.admin)
            .finish_non_exhaustive()
    }
}

/// Why a [`MemoryStack`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StackError {
    /// The monitor's settings are invalid.
    #[error("memory monitor: {0}")]
    Monitor(#[from] BuildError),
    /// The monitor could not start (no Tokio runtime).
    #[error("memory monitor: {0}")]
    Start(#[from] StartError),
    /// Heap profiles are configured (`HEAP_PROFILE_TOKEN`, `HEAP_PROFILE_ON_EXIT`) but their
    /// directory cannot take a dump.
    #[cfg(feature = "heap-profile")]
    #[error("heap profiles: {0}")]
    Profile(#[from] memory_health::HeapProfileError),
}

impl StackError {
    /// Whether the refusal comes from the machine rather than from the configuration's values:
    /// a heap-profile directory that does not exist or cannot be written here.
    pub fn is_environmental(&self) -> bool {
        #[cfg(feature = "heap-profile")]
        if matches!(self, StackError::Profile(_)) {
            return true;
        }
        false
    }
}

impl MemoryStackBuilder {
    /// Requests with a larger body get 413 (`MAX_BODY_SIZE`; default [`DEFAULT_MAX_BODY_SIZE`],
    /// 1 GiB).
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.config.stream_body.max_body_size = bytes;
        self
    }

    /// The interceptor's per-request quota (`MAX_REQUEST_MEMORY`; default
    /// [`DEFAULT_MAX_REQUEST_MEMORY`], 1 GiB).
    pub fn max_request_memory(mut self, bytes: u64) -> Self {
        self.config.max_request_memory = bytes;
        self
    }

    /// Where spooled request bodies go (default: the system temporary directory, refused if it
    /// is a tmpfs).
    pub fn spool(mut self, spool: SpoolConfig) -> Self {
        self.config.stream_body = self.config.stream_body.spool(spool);
        self
    }

    /// Serves `/metrics` from this recorder (default: no `/metrics`).
    #[cfg(feature = "prometheus")]
    pub fn metrics(mut self, metrics: memory_health::PrometheusMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Routes the ledger keeps before it counts the rest under `<other>` (default 256).
    pub fn ledger_routes(mut self, routes: usize) -> Self {
        self.ledger_routes = routes;
        self
    }

    /// Routes `/health` lists, most memory-intensive first (default 10).
    pub fn top_routes(mut self, routes: usize) -> Self {
        self.top_routes = routes;
        self
    }

    /// Where the health endpoints are served (default `/api`).
    pub fn health_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Names routes for services without axum's `MatchedPath` (plain hyper, tonic); see
    /// [`MemoryInterceptorLayer::route_classifier`].
    pub fn route_classifier<F>(mut self, f: F) -> Self
    where
        F: Fn(&Method, &Uri) -> Option<&'static str> + Send + Sync + 'static,
    {
        self.route_classifier = Some(std::sync::Arc::new(f));
        self
    }

    /// Serves `/metrics` and `/debug/pprof/heap` on a separate layer for an admin listener
    /// ([`MemoryStack::admin_layer`], at the root: `/metrics`, `/debug/pprof/heap`, `/health`,
    /// `/health/live`, `/health/ready`) instead of under the public prefix (default false: all
    /// endpoints under the prefix). The health and probe endpoints stay on the public layer too.
    pub fn admin_endpoints(mut self, separate: bool) -> Self {
        self.admin = separate;
        self
    }

    /// Builds the monitor, the budget, the ledger and the layers (the monitor is not started:
    /// [`MemoryStack::start`]), and applies the configured allocator profile now, whether or not
    /// the monitor will run.
    pub fn build(self) -> Result<MemoryStack, StackError> {
        let Config {
            memory: c,
            stream_body,
            compression: compression_config,
            max_request_memory,
        } = self.config;
        let c = &c;
        c.apply_allocator_profile();
        // One reclaimer for the monitor's schedule and the interceptor's heavy requests: their
        // runs coalesce, share one rate limit and are counted together. One budget for what
        // requests hold: the governor's admissions and growth and the buffered bodies. One
        // pressure signal, published by the monitor, read by the layers.
        let reclaimer = Reclaimer::new();
        let budget = c.budget();
        let signal = PressureSignal::new();
        let ledger = Ledger::new(self.ledger_routes);

        let mut interceptor = MemoryInterceptorLayer::new()
            .ledger(ledger.clone())
            .reclaimer(reclaimer.clone())
            .max_request_memory(max_request_memory)
            .abort_under_pressure(signal.clone())
            .log_query_strings(c.log_query_strings);
        if c.governor_enabled {
            interceptor = interceptor.governor(c.governor(budget.clone()));
        }
        if let Some(classify) = self.route_classifier {
            interceptor = interceptor.route_classifier(move |m, u| classify(m, u));
        }
        // Taken after the last builder call (each call makes a new registry).
        let in_flight = interceptor.in_flight();

        let mut monitor = c
            .monitor_builder()
            .signal(signal.clone())
            .reclaimer(reclaimer.clone())
            .budget(budget.clone(), c.request_budget);
        if let Some(in_flight) = &in_flight {
            monitor = monitor.in_flight(in_flight.clone());
        }
        let monitor = monitor.build()?;

        let with_views = |mut health: HealthLayer| {
            health = health.ledger(ledger.clone(), self.top_routes);
            if let Some(in_flight) = &in_flight {
                health = health.in_flight(in_flight.clone());
            }
            health
        };
        let mut health = with_views(HealthLayer::new(&monitor));
        if let Some(prefix) = &self.prefix {
            health = health.prefix(prefix.clone());
        }
        let drain = health.drain_handle();
        // The endpoints an operator should not expose publicly (metrics, heap profile) go on
        // the admin layer when there is one.
        let mut admin = self
            .admin
            .then(|| with_views(HealthLayer::new(&monitor).prefix("")).drain(drain.clone()));
        #[cfg_attr(
            not(any(feature = "prometheus", feature = "heap-profile")),
            allow(unused_variables)
        )]
        let private = admin.as_mut().unwrap_or(&mut health);
        #[cfg(feature = "prometheus")]
        if let Some(metrics) = self.metrics {
            *private = private.clone().metrics(metrics);
            // Descriptions go to the recorder installed now.
            stream_body_layer::describe_metrics();
            compression_layer::describe_metrics();
        }
        #[cfg(feature = "heap-profile")]
        {
            // Checked now, so a read-only directory stops the start with its name, instead of
            // answering 500 when an operator needs a profile.
            let dir = c.profile_dir();
            if let Some(token) = &c.profile_token {
                memory_health::check_profile_dir(&dir)?;
                *private = private.clone().heap_profile_token(token);
            }
            *private = private.clone().heap_profile_dir(dir);
            if let Some(path) = &c.heap_profile_on_exit {
                memory_health::check_profile_dir(parent_dir(path))?;
            }
        }

        // With the governor, request memory is bounded by construction: shedding between the
        // thresholds would only refuse requests that cost nothing while the budget does its
        // work. Critical pressure (memory outside the governor's reach) still sheds.
        let mut shed = PressureShedLayer::new(&monitor);
        if let Some(prefix) = &self.prefix {
            shed = shed.health_prefix(prefix);
        }
        if !c.governor_enabled {
            shed = shed.proportional(0.5);
        }

        let mut compression = CompressionLayer::new()
            .enabled(compression_config.enabled)
            .threshold(compression_config.threshold)
            .pressure(signal);
        if let Some(level) = compression_config.level {
            compression = compression.level(level);
        }

        let body = StreamBodyLayer::from_config(stream_body.memory_budget(budget.clone()));

        Ok(MemoryStack {
            layer: MemoryStackLayer {
                health,
                shed,
                interceptor,
                compression,
                decompression: RequestDecompressionLayer::new(),
                body,
            },
            admin,
            monitoring: c.monitoring_enabled,
            exit_profile: c.heap_profile_on_exit.clone(),
            monitor,
            budget,
            ledger,
            in_flight,
            reclaimer,
            drain,
        })
    }
}

/// The whole memory-aware stack, built from a [`Config`] in one call: the monitor, the
/// process-wide budget, the ledger and the layers, outermost first
/// `HealthLayer -> PressureShedLayer -> MemoryInterceptorLayer -> CompressionLayer ->
/// RequestDecompressionLayer -> StreamBodyLayer`, applied as one [`MemoryStackLayer`].
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_memory::config::Config;
/// use tower_memory::stack::MemoryStack;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // In a program: `MemoryStack::from_env()?.build()?`, every variable of every layer.
/// let config = Config::from_vars([("MEMORY_CHECK_INTERVAL", "5000")])?;
/// let stack = MemoryStack::builder(config).max_body_size(64 << 20).build()?;
/// stack.start()?;
/// let app: Router = Router::new()
///     .route("/api/hello", get(|| async { "hello" }))
///     // One `layer` call: axum boxes the stack once, and routing has happened (route labels).
///     .layer(stack.layer());
/// let drain = stack.drain();
/// // On SIGTERM: drain.start(), then stop the server.
/// # let _ = (app, drain);
/// # Ok(())
/// # }
/// ```
pub struct MemoryStack {
    layer: MemoryStackLayer,
    admin: Option<HealthLayer>,
    monitoring: bool,
    #[cfg_attr(not(feature = "heap-profile"), allow(dead_code))]
    exit_profile: Option<std::path::PathBuf>,
    monitor: MemoryMonitor,
    budget: MemoryBudget,
    ledger: Ledger,
    in_flight: Option<InFlight>,
    reclaimer: Reclaimer,
    drain: Drain,
}

impl std::fmt::Debug for MemoryStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStack")
            .field("monitor", &self.monitor)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl MemoryStack {
    /// A builder from `config` ([`Config::from_env`]'s variables; a
    /// [`MemoryConfig`](memory_health::MemoryConfig) alone takes the other layers' defaults).
    pub fn builder(config: impl Into<Config>) -> MemoryStackBuilder {
        MemoryStackBuilder {
            config: config.into(),
            #[cfg(feature = "prometheus")]
            metrics: None,
            ledger_routes: DEFAULT_LEDGER_ROUTES,
            top_routes: DEFAULT_TOP_ROUTES,
            prefix: None,
            route_classifier: None,
            admin: false,
        }
    }

    /// A builder from every variable of the stack in the process environment
    /// ([`Config::from_env`]): the one call a program makes, then the builder's settings that
    /// are code (metrics recorder, route classifier, spool directory) and
    /// [`build`](MemoryStackBuilder::build).
    pub fn from_env() -> Result<MemoryStackBuilder, ConfigError> {
        Ok(Self::builder(Config::from_env()?))
    }

    /// Starts the monitor's sampling task on the current Tokio runtime, unless
    /// `MEMORY_MONITORING_ENABLED` was false.
    pub fn start(&self) -> Result<(), StackError> {
        if self.monitoring {
            self.monitor.start()?;
        }
        Ok(())
    }

    /// Stops the monitor's sampling task.
    pub fn stop(&self) {
        self.monitor.stop();
    }

    /// The layer to apply (once: `Router::layer(stack.layer())`, or in a `ServiceBuilder`).
    pub fn layer(&self) -> MemoryStackLayer {
        self.layer.clone()
    }

    /// The admin endpoints at the root (`/metrics`, `/debug/pprof/heap`, `/health`,
    /// `/health/live`, `/health/ready`), for a listener of their own: `Some` with
    /// [`MemoryStackBuilder::admin_endpoints`]. Apply it to a router with no routes
    /// (`Router::new().layer(stack.admin_layer().unwrap())`): everything else is 404.
    pub fn admin_layer(&self) -> Option<HealthLayer> {
        self.admin.clone()
    }

    /// The requests in flight holding memory now, largest first (what `/health` lists).
    pub fn in_flight(&self) -> Option<&InFlight> {
        self.in_flight.as_ref()
    }

    /// The monitor.
    pub fn monitor(&self) -> &MemoryMonitor {
        &self.monitor
    }

    /// The process-wide budget.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// The ledger of memory-intensive routes.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The reclaimer the monitor and the interceptor share.
    pub fn reclaimer(&self) -> &Reclaimer {
        &self.reclaimer
    }

    /// The handle that turns readiness to 503 on shutdown.
    pub fn drain(&self) -> Drain {
        self.drain.clone()
    }

    /// Writes the heap profile to `HEAP_PROFILE_ON_EXIT` (mode 0600), when it is set: call it
    /// once the server has stopped. Blocking (a dump and a conversion). `None` when no path is
    /// configured; the path and the profile's size otherwise.
    #[cfg(feature = "heap-profile")]
    pub fn write_exit_profile(
        &self,
    ) -> Option<Result<(std::path::PathBuf, u64), memory_health::HeapProfileError>> {
        let path = self.exit_profile.as_ref()?;
        Some(memory_health::write_heap_profile(path).map(|size| (path.clone(), size)))
    }

    /// How long the shed layer's `Retry-After` is.
    pub fn retry_after(&self) -> Duration {
        memory_probe::DEFAULT_RETRY_AFTER
    }
}

/// The directory a file path lives in (`.` for a bare file name).
#[cfg(feature = "heap-profile")]
fn parent_dir(path: &std::path::Path) -> std::path::PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    }
}

/// The six layers as one [`Layer`]: see [`MemoryStack`].
#[derive(Clone)]
pub struct MemoryStackLayer {
    health: HealthLayer,
    shed: PressureShedLayer,
    interceptor: MemoryInterceptorLayer,
    compression: CompressionLayer,
    decompression: RequestDecompressionLayer,
    body: StreamBodyLayer,
}

impl std::fmt::Debug for MemoryStackLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStackLayer")
            .field("interceptor", &self.interceptor)
            .finish_non_exhaustive()
    }
}

/// Every layer, outermost first: health, shedding, interceptor, compression, decompression,
/// body limits.
pub type FullService<S> =
    Health<PressureShed<MemoryInterceptor<Compression<RequestDecompression<StreamBodyLimit<S>>>>>>;

/// The layers that act on a request no outer layer acts on: interceptor, compression, body
/// limits. See [`MemoryStackService`]; it is called with the request body typed as behind the
/// decompression layer ([`RequestDecompressionBody::plain`]), so the inner service sees one type.
pub type LightService<S> = MemoryInterceptor<Compression<StreamBodyLimit<S>>>;

impl<S: Clone> Layer<S> for MemoryStackLayer {
    type Service = MemoryStackService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let full = {
            let body = self.body.layer(inner.clone());
            let decompression = self.decompression.layer(body);
            let compression = self.compression.layer(decompression);
            let interceptor = self.interceptor.layer(compression);
            let shed = self.shed.layer(interceptor);
            self.health.layer(shed)
        };
        let light = self
            .interceptor
            .layer(self.compression.layer(self.body.layer(inner)));
        MemoryStackService {
            full,
            light,
            health: self.health.clone(),
            shed: self.shed.clone(),
        }
    }
}

/// The service [`MemoryStackLayer`] makes around `S`.
///
/// Three of the six layers act only on some requests: the health layer on its own paths,
/// shedding under memory pressure, decompression on a `Content-Encoding`. A request none of them
/// would act on (most requests, most of the time) goes through the other three alone
/// ([`LightService`]): the same answer, without three more futures and bodies around it (each
/// costs a move of the request and of the response and a wrapper per body frame). The rest go
/// through all six ([`FullService`]). Deciding costs a path comparison, one relaxed load and a
/// header lookup.
pub struct MemoryStackService<S> {
    full: FullService<S>,
    light: LightService<S>,
    health: HealthLayer,
    shed: PressureShedLayer,
}

impl<S: Clone> Clone for MemoryStackService<S> {
    fn clone(&self) -> Self {
        MemoryStackService {
            full: self.full.clone(),
            light: self.light.clone(),
            health: self.health.clone(),
            shed: self.shed.clone(),
        }
    }
}

impl<S> std::fmt::Debug for MemoryStackService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStackService").finish_non_exhaustive()
    }
}

impl<S> MemoryStackService<S> {
    /// Whether only the light path's layers can act on `req`.
    #[inline]
    fn light<B>(&self, req: &Request<B>) -> bool {
        self.shed.idle()
            && !req.headers().contains_key(http::header::CONTENT_ENCODING)
            && !self.health.serves(req.uri().path())
    }
}

impl<S, ReqBody, FullBody, LightBody, E> Service<Request<ReqBody>> for MemoryStackService<S>
where
    FullService<S>: Service<Request<ReqBody>, Response = Response<FullBody>, Error = E>,
    LightService<S>: Service<
            Request<RequestDecompressionBody<ReqBody>>,
            Response = Response<LightBody>,
            Error = E,
        >,
    FullBody: http_body::Body<Data = Bytes>,
    FullBody::Error: Into<BoxError>,
    LightBody: http_body::Body<Data = Bytes>,
    LightBody::Error: Into<BoxError>,
{
    type Response = Response<StackBody<FullBody, LightBody>>;
    type Error = E;
    type Future = StackFuture<
        <FullService<S> as Service<Request<ReqBody>>>::Future,
        <LightService<S> as Service<Request<RequestDecompressionBody<ReqBody>>>>::Future,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Either path may take the next request: both must be ready (as `tower::steer` does).
        let full = self.full.poll_ready(cx)?;
        let light = self.light.poll_ready(cx)?;
        if full.is_ready() && light.is_ready() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    #[inline]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if self.light(&req) {
            // The same request body type as behind the decompression layer: the inner service
            // is called with one type on either path.
            StackFuture::Light {
                future: self.light.call(req.map(RequestDecompressionBody::plain)),
            }
        } else {
            StackFuture::Full {
                future: self.full.call(req),
            }
        }
    }
}

pin_project! {
    /// The response future of [`MemoryStackService`].
    #[project = StackFutureProj]
    pub enum StackFuture<F, L> {
        /// Through every layer.
        Full { #[pin] future: F },
        /// Through the layers that act on this request.
        Light { #[pin] future: L },
    }
}

impl<F, L, FB, LB, E> Future for StackFuture<F, L>
where
    F: Future<Output = Result<Response<FB>, E>>,
    L: Future<Output = Result<Response<LB>, E>>,
{
    type Output = Result<Response<StackBody<FB, LB>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            StackFutureProj::Full { future } => future
                .poll(cx)
                .map_ok(|r| r.map(|body| StackBody::Full { body })),
            StackFutureProj::Light { future } => future
                .poll(cx)
                .map_ok(|r| r.map(|body| StackBody::Light { body })),
        }
    }
}

pin_project! {
    /// The response body of [`MemoryStackService`].
    #[project = StackBodyProj]
    pub enum StackBody<F, L> {
        /// Through every layer.
        Full { #[pin] body: F },
        /// Through the layers that acted on this request.
        Light { #[pin] body: L },
    }
}

impl<F, L> http_body::Body for StackBody<F, L>
where
    F: http_body::Body<Data = Bytes>,
    F::Error: Into<BoxError>,
    L: http_body::Body<Data = Bytes>,
    L::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        match self.project() {
            StackBodyProj::Full { body } => body.poll_frame(cx).map_err(Into::into),
            StackBodyProj::Light { body } => body.poll_frame(cx).map_err(Into::into),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self {
            StackBody::Full { body } => body.is_end_stream(),
            StackBody::Light { body } => body.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            StackBody::Full { body } => body.size_hint(),
            StackBody::Light { body } => body.size_hint(),
        }
    }
}
