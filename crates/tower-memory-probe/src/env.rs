//! Reading settings from environment variables: the pieces every crate's `from_env` shares.
//!
//! Each crate parses its own variables into its own configuration type (tower-memory-health the
//! `MEMORY_*`, tower-memory-stream-body the `STREAM_*`, the umbrella the rest); how a set of variables is
//! read, and how a number or a switch is parsed with an error that names the variable, is the same
//! everywhere and lives here.

use std::collections::HashMap;

/// A variable whose value cannot be used. Each crate's `ConfigError` converts from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?} is invalid: {expected}")]
pub struct InvalidVariable {
    /// The variable.
    pub variable: &'static str,
    /// The value found (lossily decoded when it was not UTF-8).
    pub value: String,
    /// What the variable accepts.
    pub expected: &'static str,
}

/// The variables among `names` that the process environment sets, with their values; a value
/// that is not UTF-8 is an error naming its variable.
pub fn read_env(names: &[&'static str]) -> Result<HashMap<&'static str, String>, InvalidVariable> {
    let mut found = HashMap::new();
    for &name in names {
        if let Some(raw) = std::env::var_os(name) {
            let value = raw.into_string().map_err(|raw| InvalidVariable {
                variable: name,
                value: raw.to_string_lossy().into_owned(),
                expected: "valid UTF-8",
            })?;
            found.insert(name, value);
        }
    }
    Ok(found)
}

/// `(name, value)` pairs as a map; the last pair of a name wins.
pub fn vars_map<I, K, V>(vars: I) -> HashMap<String, String>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    vars.into_iter()
        .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string()))
        .collect()
}

/// `true`, `1`, `yes`, `on` or `false`, `0`, `no`, `off` (any case, surrounding spaces ignored).
pub fn parse_bool((variable, value): (&'static str, String)) -> Result<bool, InvalidVariable> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(InvalidVariable {
            variable,
            value,
            expected: "true or false",
        }),
    }
}

/// A whole number in `min..=max`; `expected` says what the variable accepts.
pub fn parse_u64(
    (variable, value): (&'static str, String),
    min: u64,
    max: u64,
    expected: &'static str,
) -> Result<u64, InvalidVariable> {
    match value.trim().parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(InvalidVariable {
            variable,
            value,
            expected,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names_the_variable() {
        assert_eq!(parse_bool(("X", " Yes ".into())), Ok(true));
        assert_eq!(parse_bool(("X", "off".into())), Ok(false));
        let err = parse_bool(("X", "maybe".into())).unwrap_err();
        assert_eq!(err.variable, "X");
        assert_eq!(parse_u64(("N", "7".into()), 1, 10, "1 to 10"), Ok(7));
        let err = parse_u64(("N", "0".into()), 1, 10, "1 to 10").unwrap_err();
        assert_eq!(err.to_string(), r#"N="0" is invalid: 1 to 10"#);
        let map = vars_map([("A", "1"), ("A", "2")]);
        assert_eq!(map["A"], "2");
    }
}
