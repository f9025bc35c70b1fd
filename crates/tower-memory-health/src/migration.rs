//! Variables this crate does not read but an operator may set: the Node.js guide's `NODE_*`
//! settings, its other names for memory settings, and misspellings of ours. Each gets a message
//! naming its counterpart, so a setting that would do nothing here is never silently ignored.

use std::fmt;

use crate::config::VARIABLES;

/// Prefixes whose variables belong to this crate: anything under them that [`VARIABLES`] does not
/// list is a mistake or a leftover.
const OWNED_PREFIXES: &[&str] = &["MEMORY_", "STREAM_", "COMPRESSION_", "HEAP_PROFILE_"];

/// The original guide's variables that are not read here, with what to use instead.
const GUIDE: &[(&str, Counterpart)] = &[
    (
        "MEMORY_CHECK_INTERVAL_MS",
        Counterpart::Use("MEMORY_CHECK_INTERVAL", "same value, in milliseconds"),
    ),
    (
        "MEMORY_GC_AFTER_THRESHOLD",
        Counterpart::Use(
            "MEMORY_RECLAIM_ENABLED",
            "memory is returned to the OS on entering critical pressure while cleanup is on",
        ),
    ),
    (
        "NODE_MAX_OLD_SPACE_SIZE",
        Counterpart::Use(
            "MEMORY_LIMIT_BYTES",
            "in bytes, not MiB; unset, the container's limit is read from its cgroup",
        ),
    ),
    (
        "NODE_GC_MAX_OLD_GEN_SIZE",
        Counterpart::Use(
            "MEMORY_REQUEST_BUDGET",
            "what requests may hold at once; the limit itself is MEMORY_LIMIT_BYTES",
        ),
    ),
    (
        "NODE_EXPOSE_GC",
        Counterpart::Use(
            "MEMORY_RECLAIM_ENABLED",
            "there is no collector to call; the reclaimer returns freed memory to the OS",
        ),
    ),
    (
        "NODE_OPTIMIZE_FOR_MEMORY",
        Counterpart::Use(
            "MEMORY_ALLOCATOR_PROFILE",
            "memory-first: background purging, freed pages back to the OS within about a second",
        ),
    ),
    (
        "NODE_MAX_SEMI_SPACE_SIZE",
        Counterpart::None("Rust has no young generation: memory is freed when it is dropped"),
    ),
    (
        "NODE_INITIAL_OLD_SPACE_SIZE",
        Counterpart::None("there is no heap to pre-size: the allocator maps memory as needed"),
    ),
    (
        "NODE_GC_MAX_YOUNG_GEN_SIZE",
        Counterpart::None("Rust has no young generation: memory is freed when it is dropped"),
    ),
    (
        "NODE_OPTIONS",
        Counterpart::None(
            "flags of the node binary; --max-old-space-size is MEMORY_LIMIT_BYTES, --expose-gc is MEMORY_RECLAIM_ENABLED, --optimize-for-size is MEMORY_ALLOCATOR_PROFILE=memory-first (README, migration table)",
        ),
    ),
    (
        "NODE_ENV",
        Counterpart::None(
            "the release build is the production build; LOG_FORMAT=json for production logs",
        ),
    ),
    (
        "STREAM_HIGH_WATER_MARK",
        Counterpart::Use(
            "STREAM_CHUNK_SIZE",
            "the largest frame of a streamed body; there is no separate buffer to size",
        ),
    ),
    (
        "COMPRESSION_MEM_LEVEL",
        Counterpart::None(
            "zlib's memLevel is set in code (CompressionLayer::gzip_params, default 8, the guide's value)",
        ),
    ),
];

/// What to use instead of a variable this crate does not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Counterpart {
    /// This variable, with a note on how it differs.
    Use(&'static str, &'static str),
    /// Nothing: why it does not apply here.
    None(&'static str),
}

/// A variable in the environment that this crate does not read, and its counterpart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnrecognizedVariable {
    /// The variable as set.
    pub variable: String,
    /// What to use instead.
    pub counterpart: Counterpart,
}

impl fmt::Display for UnrecognizedVariable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.counterpart {
            Counterpart::Use(name, note) => write!(
                f,
                "{} is not read by this server: use {name} ({note})",
                self.variable
            ),
            Counterpart::None(why) => write!(
                f,
                "{} is not read by this server and has no counterpart: {why}",
                self.variable
            ),
        }
    }
}

/// The variables among `names` that this crate does not read but that look meant for it: the
/// guide's names (`NODE_*`, `MEMORY_CHECK_INTERVAL_MS`, ...) and unknown names under its prefixes
/// (`MEMORY_`, `STREAM_`, `COMPRESSION_`, `HEAP_PROFILE_`), each with its counterpart (the nearest
/// known name for a misspelling). In the order given.
///
/// ```
/// use tower_memory_health::{Counterpart, unrecognized_variables};
///
/// let found = unrecognized_variables(["PATH", "MEMORY_CHEK_INTERVAL", "NODE_MAX_OLD_SPACE_SIZE"]);
/// assert_eq!(found.len(), 2);
/// assert!(matches!(found[0].counterpart, Counterpart::Use("MEMORY_CHECK_INTERVAL", _)));
/// assert!(matches!(found[1].counterpart, Counterpart::Use("MEMORY_LIMIT_BYTES", _)));
/// ```
pub fn unrecognized_variables<I, S>(names: I) -> Vec<UnrecognizedVariable>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    unrecognized_variables_among(names, VARIABLES)
}

/// As [`unrecognized_variables`], with `known` the variables the program reads (this crate's
/// [`VARIABLES`] and those of the other layers it configures from the environment, e.g.
/// `tower_memory::config::VARIABLES`).
pub fn unrecognized_variables_among<I, S>(
    names: I,
    known: &[&'static str],
) -> Vec<UnrecognizedVariable>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    names
        .into_iter()
        .filter_map(|name| {
            let name = name.as_ref();
            counterpart(name, known).map(|counterpart| UnrecognizedVariable {
                variable: name.to_string(),
                counterpart,
            })
        })
        .collect()
}

/// Logs one warning per variable of the process environment that [`unrecognized_variables`]
/// finds, and returns them. Call it once at start-up, after the logger is installed.
pub fn warn_unrecognized_env() -> Vec<UnrecognizedVariable> {
    warn_unrecognized_env_among(VARIABLES)
}

/// As [`warn_unrecognized_env`], with `known` as in [`unrecognized_variables_among`].
pub fn warn_unrecognized_env_among(known: &[&'static str]) -> Vec<UnrecognizedVariable> {
    let mut names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    names.sort();
    let found = unrecognized_variables_among(&names, known);
    for v in &found {
        tracing::warn!(target: "tower_memory_health", variable = %v.variable, "{v}");
    }
    found
}

fn counterpart(name: &str, known: &[&'static str]) -> Option<Counterpart> {
    if known.contains(&name) {
        return None;
    }
    if let Some((_, c)) = GUIDE.iter().find(|(n, _)| *n == name) {
        return Some(*c);
    }
    if name.starts_with("NODE_") {
        return Some(Counterpart::None(
            "a Node.js setting; this server is not a Node.js process",
        ));
    }
    if !OWNED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return None;
    }
    let nearest = known
        .iter()
        .map(|v| (edit_distance(name, v), *v))
        .min()
        .filter(|(d, _)| *d <= 3);
    Some(match nearest {
        Some((_, v)) => Counterpart::Use(v, "a misspelling?"),
        None => Counterpart::None("not a setting of this server (README, Configuration)"),
    })
}

/// Levenshtein distance over bytes (variable names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("MEMORY_LIMIT", "MEMORY_LIMIT"), 0);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn every_guide_name_is_unread_and_every_counterpart_is_read() {
        for (name, c) in GUIDE {
            assert!(!VARIABLES.contains(name), "{name} is read after all");
            if let Counterpart::Use(v, _) = c {
                // The other layers' variables, read by tower-memory-stream-body and the umbrella crate.
                let elsewhere = v.starts_with("STREAM_") || v.starts_with("COMPRESSION_");
                assert!(
                    VARIABLES.contains(v) || elsewhere,
                    "{name}: {v} is not a variable"
                );
            }
        }
    }

    #[test]
    fn known_and_foreign_names_pass_silently() {
        let found = unrecognized_variables(VARIABLES.iter().chain(&["PATH", "HOME", "RUST_LOG"]));
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn misspellings_unknown_names_and_node_settings() {
        let found = unrecognized_variables([
            "MEMORY_CRITICAL_TRESHOLD",
            "MEMORY_SOMETHING_ELSE_ENTIRELY",
            "NODE_TLS_REJECT_UNAUTHORIZED",
            "NODE_ENV",
            "STREAM_HIGH_WATER_MARK",
        ]);
        let counterparts: Vec<_> = found.iter().map(|f| f.counterpart).collect();
        assert!(matches!(
            counterparts[0],
            Counterpart::Use("MEMORY_CRITICAL_THRESHOLD", _)
        ));
        assert!(matches!(counterparts[1], Counterpart::None(_)));
        assert!(matches!(counterparts[2], Counterpart::None(w) if w.contains("Node.js")));
        assert!(matches!(counterparts[3], Counterpart::None(w) if w.contains("LOG_FORMAT")));
        assert!(matches!(
            counterparts[4],
            Counterpart::Use("STREAM_CHUNK_SIZE", _)
        ));
        assert!(
            found[0]
                .to_string()
                .contains("use MEMORY_CRITICAL_THRESHOLD")
        );
    }
}
