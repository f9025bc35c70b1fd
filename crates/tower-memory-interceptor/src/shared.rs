//! What every service of one layer shares at run time: the configuration and the pieces built
//! from it once (the registry of in-flight requests, the pressure aborter, the governor), with
//! the thresholds a poll boundary compares against precomputed.
//!
//! Each account holds this, and the governor, the aborter and the registry act on accounts: the
//! crate's one mutual dependency, kept on purpose (a poll boundary reaches the governor through
//! the account it already holds, with no second pointer per request). Nothing imports the layer.

use std::fmt;
use std::sync::Arc;

use crate::config::Config;
use crate::governor::Governor;
use crate::pressure::{PressureAborter, PressureSettings};
use crate::registry::Registry;

/// Built once per layer (on its first use), shared by its services and their requests.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) pressure: Option<Arc<PressureAborter>>,
    pub(crate) governor: Option<Arc<Governor>>,
    /// In-flight accounts, kept when something picks victims among them (pressure, governor).
    pub(crate) registry: Option<Arc<Registry>>,
    /// A request joins the registry once it holds this much: no victim search looks at less.
    pub(crate) register_at: u64,
    /// The smaller of `register_at` and the heavy threshold: below it a poll boundary looks at
    /// nothing more (see `Tracker::watch`).
    pub(crate) watch_at: u64,
    /// Whether an abort can be decided outside the owner's poll (so the owner keeps its waker in
    /// the account).
    pub(crate) external_aborts: bool,
}

impl Shared {
    pub(crate) fn new(config: Config) -> Shared {
        let pressure_settings = config
            .pressure
            .signal
            .clone()
            .map(|signal| PressureSettings {
                signal,
                per_tick: config.pressure.per_tick,
                tick: config.pressure.tick,
                min_bytes: config.pressure.min_bytes,
            });
        let external_aborts = config.max_request_memory.is_some()
            || pressure_settings.is_some()
            || config.governor.is_some();
        let registry = (pressure_settings.is_some() || config.governor.is_some())
            .then(|| Arc::new(Registry::new()));
        let register_at = pressure_settings
            .as_ref()
            .map(|p| p.min_bytes)
            .into_iter()
            .chain(config.governor.as_ref().map(|g| g.floor))
            .min()
            .unwrap_or(u64::MAX);
        let pressure = pressure_settings.map(|settings| {
            Arc::new(PressureAborter::new(
                settings,
                Arc::clone(
                    registry
                        .as_ref()
                        .expect("a registry with pressure settings"),
                ),
            ))
        });
        let governor = config.governor.clone().map(|settings| {
            // The cost model lives in the ledger's route entries: a private one when the user
            // gave none.
            let ledger = config.ledger.clone().unwrap_or_default();
            Arc::new(Governor::new(
                settings,
                ledger,
                Arc::clone(registry.as_ref().expect("a registry with a governor")),
            ))
        });
        Shared {
            watch_at: register_at.min(config.heavy_threshold),
            config,
            pressure,
            governor,
            registry,
            register_at,
            external_aborts,
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt(f)
    }
}
