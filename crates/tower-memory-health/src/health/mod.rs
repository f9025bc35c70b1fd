//! The memory endpoints: [`HealthLayer`] serves `/health`, `/health/live`, `/health/ready`,
//! `/metrics` and (feature `heap-profile`) `/debug/pprof/heap` under a prefix in any Tower stack.

mod endpoints;
mod layer;
mod service;

pub use layer::HealthLayer;
pub use service::Health;

pub(crate) use layer::normalize_prefix;

pub use crate::body::ResponseBody;
pub use crate::future::ResponseFuture;
