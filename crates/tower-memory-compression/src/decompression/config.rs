//! [`Config`]: what every clone of a
//! [`RequestDecompressionLayer`](super::RequestDecompressionLayer) and its services share. At the
//! bottom of the decompression module's imports.

use crate::Encoding;
use crate::limits::DecodeLimits;

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) limits: DecodeLimits,
    pub(crate) accepted: Vec<Encoding>,
    pub(crate) max_codings: usize,
}

impl Default for Config {
    /// Every compiled coding, default [`DecodeLimits`], at most 2 stacked codings.
    fn default() -> Self {
        Config {
            limits: DecodeLimits::default(),
            accepted: Encoding::CODINGS
                .into_iter()
                .filter(|e| e.can_decompress())
                .collect(),
            max_codings: 2,
        }
    }
}
