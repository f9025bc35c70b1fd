//! [`StreamBodyLayer`] and its builder methods.

use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;
use tower_memory_probe::MemoryBudget;

use crate::config::StreamBodyConfig;
use crate::service::StreamBodyLimit;
use crate::spool::SpoolConfig;

/// Bounds the memory request bodies take: size limit, memory budget, chunked streaming, and a
/// slow-body guard. See the [crate docs](crate) for the behaviour.
///
/// Every setter has a sensible default; `StreamBodyLayer::new()` is ready to use. The setters
/// are those of [`StreamBodyConfig`]; [`from_config`](Self::from_config) takes a whole one (for
/// instance read from the `STREAM_*` variables with [`StreamBodyConfig::from_env`]).
#[derive(Debug, Clone, Default)]
pub struct StreamBodyLayer {
    config: StreamBodyConfig,
}

impl StreamBodyLayer {
    /// A layer with the defaults: `max_body_size` 1 GiB, `buffer_threshold` 10 MiB,
    /// `chunk_size` 64 KiB, the governor's budget or else the process-wide
    /// [`MemoryBudget::global`] (256 MiB), `idle_timeout`
    /// 30 s, `min_rate` 240 B/s after a 5 s grace.
    pub fn new() -> Self {
        Self::default()
    }

    /// A layer with `config`'s settings.
    pub fn from_config(config: StreamBodyConfig) -> Self {
        Self { config }
    }

    /// The layer's settings.
    pub fn config(&self) -> &StreamBodyConfig {
        &self.config
    }

    /// See [`StreamBodyConfig::max_body_size`](StreamBodyConfig::max_body_size()).
    #[must_use]
    pub fn max_body_size(mut self, bytes: u64) -> Self {
        self.config = self.config.max_body_size(bytes);
        self
    }

    /// See [`StreamBodyConfig::buffer_threshold`](StreamBodyConfig::buffer_threshold()).
    #[must_use]
    pub fn buffer_threshold(mut self, bytes: u64) -> Self {
        self.config = self.config.buffer_threshold(bytes);
        self
    }

    /// See [`StreamBodyConfig::chunk_size`](StreamBodyConfig::chunk_size()).
    #[must_use]
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.config = self.config.chunk_size(bytes);
        self
    }

    /// See [`StreamBodyConfig::memory_budget`].
    #[must_use]
    pub fn memory_budget(mut self, budget: MemoryBudget) -> Self {
        self.config = self.config.memory_budget(budget);
        self
    }

    /// See [`StreamBodyConfig::budget_wait`](StreamBodyConfig::budget_wait()).
    #[must_use]
    pub fn budget_wait(mut self, wait: Duration) -> Self {
        self.config = self.config.budget_wait(wait);
        self
    }

    /// See [`StreamBodyConfig::retry_after`](StreamBodyConfig::retry_after()).
    #[must_use]
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.config = self.config.retry_after(after);
        self
    }

    /// See [`StreamBodyConfig::idle_timeout`].
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config = self.config.idle_timeout(timeout);
        self
    }

    /// See [`StreamBodyConfig::disable_idle_timeout`].
    #[must_use]
    pub fn disable_idle_timeout(mut self) -> Self {
        self.config = self.config.disable_idle_timeout();
        self
    }

    /// See [`StreamBodyConfig::min_rate`].
    #[must_use]
    pub fn min_rate(mut self, bytes_per_second: u64, grace: Duration) -> Self {
        self.config = self.config.min_rate(bytes_per_second, grace);
        self
    }

    /// See [`StreamBodyConfig::handler_grace`](StreamBodyConfig::handler_grace()).
    #[must_use]
    pub fn handler_grace(mut self, grace: Duration) -> Self {
        self.config = self.config.handler_grace(grace);
        self
    }

    /// See [`StreamBodyConfig::spool`].
    #[must_use]
    pub fn spool(mut self, spool: SpoolConfig) -> Self {
        self.config = self.config.spool(spool);
        self
    }

    /// The memory budget given with [`memory_budget`](Self::memory_budget), else
    /// [`MemoryBudget::global`] (what requests without a governor's handle draw on).
    pub fn budget(&self) -> MemoryBudget {
        self.config.budget()
    }
}

impl<S> Layer<S> for StreamBodyLayer {
    type Service = StreamBodyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StreamBodyLimit::new(inner, Arc::new(self.config.clone()))
    }
}
