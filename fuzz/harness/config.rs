//! The configuration parser on arbitrary variable sets: no panic; a configuration it accepts is
//! consistent and builds a whole stack; one it refuses names a variable that was set, with its
//! value.

use tower_memory::health::{MemoryConfig, VARIABLES};
use tower_memory::stack::MemoryStack;

/// Pairs from the bytes: a byte picks the variable (or an unknown name), the value runs to the
/// next 0xff byte, as lossy UTF-8.
pub(crate) fn pairs(data: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&pick, tail)) = rest.split_first() {
        let end = tail.iter().position(|&b| b == 0xff).unwrap_or(tail.len());
        let name = VARIABLES
            .get(pick as usize % (VARIABLES.len() + 1))
            .map_or("NOT_A_MEMORY_VARIABLE", |v| *v);
        out.push((
            name.to_string(),
            String::from_utf8_lossy(&tail[..end]).into_owned(),
        ));
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    out
}

pub(crate) fn check(data: &[u8]) {
    check_pairs(&pairs(data));
}

pub(crate) fn check_pairs(pairs: &[(String, String)]) {
    match MemoryConfig::from_vars(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(c) => {
            assert!(0.0 < c.warning_threshold && c.warning_threshold < c.critical_threshold);
            assert!(c.critical_threshold <= 1.0);
            assert!(!c.check_interval.is_zero() && !c.cleanup_interval.is_zero());
            assert!((1..=16 << 20).contains(&c.stream_chunk_size));
            assert!(c.compression_level.is_none_or(|l| l <= 9));
            // Whatever parses must build: the monitor, the budget and every layer. The one
            // refusal that depends on the machine, not on the values: a heap-profile directory
            // that does not exist or cannot be written here.
            match MemoryStack::builder(c.clone()).build() {
                Ok(_) => {}
                Err(e) if e.is_environmental() => {}
                Err(e) => panic!("{c:?} parsed but does not build: {e}"),
            }
        }
        Err(e) => {
            let variable = e.variable().expect("the error names a variable");
            let given: Vec<&(String, String)> =
                pairs.iter().filter(|(k, _)| k == variable).collect();
            assert!(!given.is_empty(), "{e} names a variable that was not set");
            let message = e.to_string();
            assert!(message.contains(variable), "{message}");
        }
    }
}
