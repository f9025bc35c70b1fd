//! Spooling: a request body kept in memory up to a threshold, then in a temporary file
//! ([`SpooledBody`]), where it goes ([`SpoolConfig`]), how it is read back ([`SpooledReader`]),
//! and what can go wrong ([`SpoolError`]).

mod body;
mod config;
mod error;
mod reader;
#[cfg(test)]
mod tests;

pub use body::SpooledBody;
pub use config::{
    DEFAULT_SPOOL_MEMORY_THRESHOLD, SpoolConfig, SpoolConfigBuilder, is_memory_backed,
};
pub use error::SpoolError;
pub use reader::SpooledReader;
