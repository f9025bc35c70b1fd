//! Load shedding under memory pressure: [`PressureShedLayer`] refuses work with 503 and
//! `Retry-After` before it allocates anything, health paths exempt.
//!
//! The refusal follows the workspace's one convention for memory 503s (see
//! [`tower_memory_probe::overload_body`]): `reason` is `critical` (pressure is critical) or
//! `proportional` (a share shed between the thresholds), the same token as the
//! `memory_shed_requests_total` label.

mod layer;
mod service;

pub use layer::PressureShedLayer;
pub use service::PressureShed;

pub use crate::body::ResponseBody;
pub use crate::future::ResponseFuture;
