//! [`StreamBodyConfig`]: the layer's settings, at the bottom of the crate's import graph (it
//! imports no layer, service, future or body module).

use std::time::Duration;

use tower_memory_probe::MemoryBudget;

use crate::spool::SpoolConfig;

/// Default `max_body_size`: 1 GiB.
pub const DEFAULT_MAX_BODY_SIZE: u64 = 1024 * 1024 * 1024;
/// Default `buffer_threshold`: 10 MiB.
pub const DEFAULT_BUFFER_THRESHOLD: u64 = 10 * 1024 * 1024;
/// Default `chunk_size`: 64 KiB.
pub const DEFAULT_CHUNK_SIZE: usize = 64 * 1024;
/// Default `idle_timeout` between body frames: 30 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `min_rate`: 240 bytes per second (Kestrel's default minimum request body data rate).
pub const DEFAULT_MIN_RATE: u64 = 240;
/// Default grace period before `min_rate` applies: 5 s.
pub const DEFAULT_MIN_RATE_GRACE: Duration = Duration::from_secs(5);
/// Default `budget_wait`: how long a request waits for budget before its 503.
pub const DEFAULT_BUDGET_WAIT: Duration = Duration::from_secs(1);
/// Default `handler_grace`: how long a handler may keep running after its body failed.
pub const DEFAULT_HANDLER_GRACE: Duration = Duration::from_secs(5);

/// The slow-body guard's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlowConfig {
    /// Longest wait for the next frame.
    pub(crate) idle_timeout: Option<Duration>,
    /// Minimum average bytes per second of waiting time (0: no minimum).
    pub(crate) min_rate: u64,
    /// Waiting time before the minimum rate applies.
    pub(crate) grace: Duration,
}

/// The settings of a [`StreamBodyLayer`](crate::StreamBodyLayer): build one with the methods
/// below (or read the `STREAM_*` variables with [`from_env`](Self::from_env)) and hand it to
/// [`StreamBodyLayer::from_config`](crate::StreamBodyLayer::from_config). The layer's own builder
/// methods set the same values.
///
/// `Default`: `max_body_size` 1 GiB, `buffer_threshold` 10 MiB, `chunk_size` 64 KiB, the
/// governor's budget or else [`MemoryBudget::global`] (256 MiB), `budget_wait` 1 s, `retry_after`
/// [`tower_memory_probe::DEFAULT_RETRY_AFTER`] (1 s), `idle_timeout` 30 s, `min_rate` 240 B/s after a
/// 5 s grace, `handler_grace` 5 s, no spool directory (the system temporary directory).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StreamBodyConfig {
    /// See [`max_body_size`](Self::max_body_size()).
    pub max_body_size: u64,
    /// See [`buffer_threshold`](Self::buffer_threshold()).
    pub buffer_threshold: u64,
    /// See [`chunk_size`](Self::chunk_size()) (a 0 here counts as 1).
    pub chunk_size: usize,
    /// `None`: the request's own handle on the budget when the interceptor's governor put one
    /// in its extensions, else [`MemoryBudget::global`].
    pub(crate) budget: Option<MemoryBudget>,
    /// See [`budget_wait`](Self::budget_wait()).
    pub budget_wait: Duration,
    /// See [`retry_after`](Self::retry_after()).
    pub retry_after: Duration,
    pub(crate) slow: SlowConfig,
    /// See [`handler_grace`](Self::handler_grace()).
    pub handler_grace: Duration,
    pub(crate) spool: Option<SpoolConfig>,
}

impl Default for StreamBodyConfig {
    fn default() -> Self {
        Self {
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            buffer_threshold: DEFAULT_BUFFER_THRESHOLD,
            chunk_size: DEFAULT_CHUNK_SIZE,
            budget: None,
            budget_wait: DEFAULT_BUDGET_WAIT,
            retry_after: tower_memory_probe::DEFAULT_RETRY_AFTER,
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

impl StreamBodyConfig {
    /// The defaults (see the type's docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Largest body accepted. A larger `Content-Length` gets 413 before a byte is read; a body
    /// of unknown length that grows past it gets 413 too.
    #[must_use]
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.max_body_size = bytes;
        self
    }

    /// Bodies of known length up to this size are buffered by the layer (under the memory
    /// budget) and handed over as one frame; larger ones, and unknown-length ones that grow past
    /// it, stream (`STREAM_BUFFER_THRESHOLD`).
    #[must_use]
    pub fn buffer_threshold(mut self, bytes: u64) -> Self {
        self.buffer_threshold = bytes;
        self
    }

    /// Largest frame a streaming body yields, at least 1 byte (`STREAM_CHUNK_SIZE`).
    #[must_use]
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes.max(1);
        self
    }

    /// The memory budget buffered bodies are charged to. Give every layer of the process a clone
    /// of one budget to bound them together (the interceptor's governor too: bytes reserved for
    /// a buffered body are then counted once). The default is the budget of the governor that
    /// admitted the request, when there is one, else [`MemoryBudget::global`].
    #[must_use]
    pub fn memory_budget(mut self, budget: MemoryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// How long a request waits for budget before the layer answers 503 (default 1 s).
    #[must_use]
    pub fn budget_wait(mut self, wait: Duration) -> Self {
        self.budget_wait = wait;
        self
    }

    /// The `Retry-After` of that 503, rounded up to whole seconds (default
    /// [`tower_memory_probe::DEFAULT_RETRY_AFTER`], 1 s).
    #[must_use]
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry_after = after;
        self
    }

    /// Longest wait for the next piece of body: past it, 408 and the connection closes.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.slow.idle_timeout = Some(timeout);
        self
    }

    /// No idle timeout.
    #[must_use]
    pub fn disable_idle_timeout(mut self) -> Self {
        self.slow.idle_timeout = None;
        self
    }

    /// Minimum average data rate in bytes per second, measured over the time spent waiting on
    /// the client once `grace` of such time has passed; under it, 408. `0` disables the check.
    #[must_use]
    pub fn min_rate(mut self, bytes_per_second: u64, grace: Duration) -> Self {
        self.slow.min_rate = bytes_per_second;
        self.slow.grace = grace;
        self
    }

    /// How long a handler may keep running after its streaming body failed (too large, too
    /// slow, broken off) before the layer drops it and answers anyway (default 5 s). A handler
    /// that returns earlier has its response replaced by the layer's.
    #[must_use]
    pub fn handler_grace(mut self, grace: Duration) -> Self {
        self.handler_grace = grace;
        self
    }

    /// Where a [`SpooledBody`](crate::SpooledBody) extracted behind the layer spills; without
    /// it the extractor uses the system temporary directory (refused if that is a tmpfs).
    #[must_use]
    pub fn spool(mut self, spool: SpoolConfig) -> Self {
        self.spool = Some(spool);
        self
    }

    /// The memory budget given with [`memory_budget`](Self::memory_budget), else
    /// [`MemoryBudget::global`] (what requests without a governor's handle draw on).
    pub fn budget(&self) -> MemoryBudget {
        self.budget.clone().unwrap_or_else(MemoryBudget::global)
    }
}
