//! [`MemoryStackLayer`]: the six layers composed in their order, full and light paths.

use tower_layer::Layer;
use tower_memory_compression::{
    Compression, CompressionLayer, RequestDecompression, RequestDecompressionLayer,
};
use tower_memory_health::{Health, HealthLayer, PressureShed, PressureShedLayer};
use tower_memory_interceptor::{MemoryInterceptor, MemoryInterceptorLayer};
use tower_memory_stream_body::{StreamBodyLayer, StreamBodyLimit};

use super::MemoryStackService;
/// The six layers as one [`Layer`]: see [`MemoryStack`](super::MemoryStack).
#[derive(Clone)]
pub struct MemoryStackLayer {
    pub(super) health: HealthLayer,
    pub(super) shed: PressureShedLayer,
    pub(super) interceptor: MemoryInterceptorLayer,
    pub(super) compression: CompressionLayer,
    pub(super) decompression: RequestDecompressionLayer,
    pub(super) body: StreamBodyLayer,
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
/// decompression layer ([`RequestDecompressionBody::plain`](tower_memory_compression::RequestDecompressionBody::plain)), so the inner service sees one type.
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
