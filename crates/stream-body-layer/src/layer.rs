//! [`StreamBodyLayer`] and its settings.

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use crate::budget::MemoryBudget;
use crate::service::StreamBodyService;
use crate::slow::SlowConfig;
use crate::spool::SpoolConfig;

/// Default `max_body_size`: 1 GiB.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 1024 * 1024 * 1024;
/// Default `buffer_threshold`: 10 MiB (the `STREAM_FILE_THRESHOLD` of the original guide).
pub const DEFAULT_BUFFER_THRESHOLD: u64 = 10 * 1024 * 1024;
/// Default `chunk_size`: 64 KiB (the `STREAM_CHUNK_SIZE` of the original guide).
pub const DEFAULT_CHUNK_SIZE: usize = 64 * 1024;
/// Default `idle_timeout` between body frames: 30 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `min_rate`: 240 bytes per second (Kestrel's default minimum request body data rate).
pub const DEFAULT_MIN_RATE: u64 = 240;
/// Default grace period before `min_rate` applies: 5 s.
pub const DEFAULT_MIN_RATE_GRACE: Duration = Duration::from_secs(5);
/// Default `budget_wait`: how long a request waits for budget before its 503.
pub const DEFAULT_BUDGET_WAIT: Duration = Duration::from_secs(1);
/// Default `Retry-After` of the 503 for an exhausted budget.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Default `handler_grace`: how long a handler may keep running after its body failed.
pub const DEFAULT_HANDLER_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) max_body_size: u64,
    pub(crate) buffer_threshold: u64,
    pub(crate) chunk_size: usize,
    /// `None`: the request's own handle on the budget when the interceptor's governor put one
    /// in its extensions, else [`MemoryBudget::global`].
    pub(crate) budget: Option<MemoryBudget>,
    pub(crate) budget_wait: Duration,
    pub(crate) retry_after: Duration,
    pub(crate) slow: SlowConfig,
    pub(crate) handler_grace: Duration,
    pub(crate) spool: Option<SpoolConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            buffer_threshold: DEFAULT_BUFFER_THRESHOLD,
            chunk_size: DEFAULT_CHUNK_SIZE,
            budget: None,
            budget_wait: DEFAULT_BUDGET_WAIT,
            retry_after: DEFAULT_RETRY_AFTER,
            slow: SlowConfig {
                idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
                min_rate: DEFAULT_MIN_RATE,
                grace: DEFAULT_MIN_RATE_GRACE,
            },
            handler_grace: DEFAULT_HANDLER_GRACE,
            spool: None,
        }
    }
}

/// Bounds the memory request bodies take: size limit, memory budget, chunked streaming, and a
/// slow-body guard. See the [crate docs](crate) for the behaviour.
///
/// Every setter has a sensible default; `StreamBodyLayer::new()` is ready to use.
#[derive(Debug, Clone, Default)]
pub struct StreamBodyLayer {
    config: Config,
}

impl StreamBodyLayer {
    /// A layer with the defaults: `max_body_size` 1 GiB, `buffer_threshold` 10 MiB,
    /// `chunk_size` 64 KiB, the governor's budget or else the process-wide
    /// [`MemoryBudget::global`] (256 MiB), `idle_timeout`
    /// 30 s, `min_rate` 240 B/s after a 5 s grace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Largest body accepted. A larger `Content-Length` gets 413 before a byte is read; a body
    /// of unknown length that grows past it gets 413 too.
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.config.max_body_size = bytes;
        self
    }

    /// Bodies of known length up to this size are buffered by the layer (under the memory
    /// budget) and handed over as one frame; larger ones, and unknown-length ones that grow past
    /// it, stream.
    pub fn buffer_threshold(mut self, bytes: u64) -> Self {
        self.config.buffer_threshold = bytes;
        self
    }

    /// Largest frame a streaming body yields (at least 1 byte).
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.config.chunk_size = bytes.max(1);
        self
    }

    /// The memory budget buffered bodies are charged to. Give every layer of the process a clone
    /// of one budget to bound them together (the interceptor's governor too: bytes reserved for
    /// a buffered body are then counted once). The default is the budget of the governor that
    /// admitted the request, when there is one, else [`MemoryBudget::global`].
    pub fn memory_budget(mut self, budget: MemoryBudget) -> Self {
        self.config.budget = Some(budget);
        self
    }

    /// How long a request waits for budget before the layer answers 503 (default 1 s).
    pub fn budget_wait(mut self, wait: Duration) -> Self {
        self.config.budget_wait = wait;
        self
    }

    /// The `Retry-After` of that 503, rounded up to whole seconds (default 1 s).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.config.retry_after = after;
        self
    }

    /// Longest wait for the next piece of body: past it, 408 and the connection closes.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.slow.idle_timeout = Some(timeout);
        self
    }

    /// No idle timeout.
    pub fn disable_idle_timeout(mut self) -> Self {
        self.config.slow.idle_timeout = None;
        self
    }

    /// Minimum average data rate in bytes per second, measured over the time spent waiting on
    /// the client once `grace` of such time has passed; under it, 408. `0` disables the check.
    pub fn min_rate(mut self, bytes_per_second: u64, grace: Duration) -> Self {
        self.config.slow.min_rate = bytes_per_second;
        self.config.slow.grace = grace;
        self
    }

    /// How long a handler may keep running after its streaming body failed (too large, too
    /// slow, broken off) before the layer drops it and answers anyway (default 5 s). A handler
    /// that returns earlier has its response replaced by the layer's.
    pub fn handler_grace(mut self, grace: Duration) -> Self {
        self.config.handler_grace = grace;
        self
    }

    /// Where a [`SpooledBody`](crate::SpooledBody) extracted behind this layer spills; without
    /// it the extractor uses the system temporary directory (refused if that is a tmpfs).
    pub fn spool(mut self, spool: SpoolConfig) -> Self {
        self.config.spool = Some(spool);
        self
    }

    /// The memory budget given with [`memory_budget`](Self::memory_budget), else
    /// [`MemoryBudget::global`] (what requests without a governor's handle draw on).
    pub fn budget(&self) -> MemoryBudget {
        self.config
            .budget
            .clone()
            .unwrap_or_else(MemoryBudget::global)
    }
}

impl<S> Layer<S> for StreamBodyLayer {
    type Service = StreamBodyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StreamBodyService::new(inner, Arc::new(self.config.clone()))
    }
}
