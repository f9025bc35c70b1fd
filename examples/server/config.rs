//! The server's own settings, from the environment, next to the stack's (`tower_memory::config`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tower_memory::config::Config;

/// Everything the server reads at start.
pub(crate) struct ServerConfig {
    /// `BIND` (default 127.0.0.1).
    pub(crate) bind: IpAddr,
    /// `PORT` (default 5000; 0 picks a free port).
    pub(crate) port: u16,
    /// `ADMIN_BIND` and `ADMIN_PORT` (default unset: no admin listener): where `/metrics` and
    /// `/debug/pprof/heap` are served instead of the public port (`ADMIN_BIND` defaults to
    /// 127.0.0.1; `ADMIN_PORT` 0 picks a free port).
    pub(crate) admin: Option<SocketAddr>,
    /// `LOG_FORMAT`: `text` (default) or `json` (one JSON object per line).
    pub(crate) json_logs: bool,
    /// `UPLOAD_DIR` (default `<temp>/tower-memory-uploads`, created; `/var/tmp` when the temp dir
    /// is a tmpfs).
    pub(crate) upload_dir: PathBuf,
    /// `UPLOAD_DIR_ALLOW_TMPFS` (default false): accept an `UPLOAD_DIR` on a tmpfs, whose files
    /// count as memory (small test filesystems; never the default).
    pub(crate) upload_dir_allow_tmpfs: bool,
    /// `FAULT_ROUTES` (default false): serve `GET /api/faults/panic`, a handler that panics, for
    /// fault-injection tests.
    pub(crate) fault_routes: bool,
    /// `HEADER_READ_TIMEOUT_MS` (default 30000), `MAX_HEADER_BYTES` (default 65536) and
    /// `WRITE_TIMEOUT_MS` (default 60000): what each connection may take (serve.rs).
    pub(crate) connection_limits: crate::serve::Limits,
    /// `DRAIN_DELAY_MS` (default 0): after SIGTERM, readiness answers 503 this long while the
    /// server still accepts connections (a load balancer without a preStop hook notices).
    pub(crate) drain_delay: Duration,
    /// `DRAIN_TIMEOUT_MS` (default 20000): how long in-flight requests may take to finish after
    /// the listener closes.
    pub(crate) drain_timeout: Duration,
    /// The stack's variables, every layer's (`MEMORY_*`, `HEAP_PROFILE_*`, `STREAM_*`,
    /// `COMPRESSION_*`, `MAX_BODY_SIZE`, `MAX_REQUEST_MEMORY`).
    pub(crate) stack: Config,
}

/// A variable with a value the server cannot use.
#[derive(Debug)]
pub(crate) struct ConfigError(String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A boolean variable: true/false, 1/0, yes/no, on/off (as tower-memory-health reads its own).
fn flag(name: &str) -> Result<bool, ConfigError> {
    let value: String = var(name, "false".to_string(), "true or false")?;
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ConfigError(format!(
            "{name}={value:?} is invalid: expected true or false"
        ))),
    }
}

fn var<T: FromStr>(name: &str, default: T, expected: &str) -> Result<T, ConfigError> {
    Ok(optional_var(name, expected)?.unwrap_or(default))
}

fn optional_var<T: FromStr>(name: &str, expected: &str) -> Result<Option<T>, ConfigError> {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(ConfigError(format!(
            "{name}={v:?} is invalid: expected {expected}"
        ))),
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ConfigError(format!("{name}={v:?} is invalid: expected {expected}"))),
    }
}

/// `<temp dir>/tower-memory-uploads`, unless the temp dir is a tmpfs (many distributions mount
/// `/tmp` so): spooled uploads there would count as memory, so `/var/tmp`, which is on disk by
/// convention, is used instead. The body layer itself refuses a tmpfs spool directory.
fn default_upload_dir() -> PathBuf {
    let temp = std::env::temp_dir();
    let on_disk =
        |dir: &std::path::Path| !tower_memory_stream_body::is_memory_backed(dir).unwrap_or(true);
    let base = if on_disk(&temp) {
        temp
    } else {
        PathBuf::from("/var/tmp")
    };
    base.join("tower-memory-uploads")
}

impl ServerConfig {
    /// Reads every variable; the first bad value is an error naming it.
    pub(crate) fn from_env() -> Result<Self, Box<dyn std::error::Error>> {
        let log_format: String = var("LOG_FORMAT", "text".to_string(), "text or json")?;
        let json_logs = match log_format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(ConfigError(format!(
                    "LOG_FORMAT={other:?} is invalid: expected text or json"
                ))
                .into());
            }
        };
        let upload_dir = match std::env::var_os("UPLOAD_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            Some(_) => return Err(ConfigError("UPLOAD_DIR is empty".into()).into()),
            None => default_upload_dir(),
        };
        let stack = Config::from_env()?;
        let admin_bind: Option<IpAddr> = optional_var("ADMIN_BIND", "an IP address")?;
        let admin_port: Option<u16> = optional_var("ADMIN_PORT", "a port number")?;
        let admin = match (admin_bind, admin_port) {
            (_, Some(port)) => Some(SocketAddr::new(
                admin_bind.unwrap_or(IpAddr::from([127, 0, 0, 1])),
                port,
            )),
            (Some(_), None) => {
                return Err(ConfigError(
                    "ADMIN_BIND is set but ADMIN_PORT is not: set ADMIN_PORT to start the admin listener"
                        .into(),
                )
                .into());
            }
            (None, None) => None,
        };
        let config = ServerConfig {
            bind: var("BIND", IpAddr::from([127, 0, 0, 1]), "an IP address")?,
            port: var("PORT", 5000, "a port number")?,
            admin,
            json_logs,
            upload_dir,
            upload_dir_allow_tmpfs: flag("UPLOAD_DIR_ALLOW_TMPFS")?,
            fault_routes: flag("FAULT_ROUTES")?,
            connection_limits: crate::serve::Limits {
                header_read_timeout: Duration::from_millis(var(
                    "HEADER_READ_TIMEOUT_MS",
                    30_000,
                    "milliseconds",
                )?),
                max_header_bytes: var("MAX_HEADER_BYTES", 64 << 10, "bytes, at least 8192")?,
                write_timeout: Duration::from_millis(var(
                    "WRITE_TIMEOUT_MS",
                    60_000,
                    "milliseconds",
                )?),
            },
            drain_delay: Duration::from_millis(var("DRAIN_DELAY_MS", 0, "milliseconds")?),
            drain_timeout: Duration::from_millis(var("DRAIN_TIMEOUT_MS", 20_000, "milliseconds")?),
            stack,
        };
        let limits = &config.connection_limits;
        if limits.max_header_bytes < 8192 {
            // hyper's smallest read buffer.
            return Err(ConfigError(format!(
                "MAX_HEADER_BYTES={} is invalid: expected bytes, at least 8192",
                limits.max_header_bytes
            ))
            .into());
        }
        if limits.header_read_timeout.is_zero() || limits.write_timeout.is_zero() {
            return Err(ConfigError(
                "HEADER_READ_TIMEOUT_MS and WRITE_TIMEOUT_MS must be above 0".into(),
            )
            .into());
        }
        Ok(config)
    }

    /// The effective configuration as JSON, for the start-up line (the token is never shown).
    pub(crate) fn summary(&self) -> serde_json::Value {
        let m = &self.stack.memory;
        let body = &self.stack.stream_body;
        let compression = &self.stack.compression;
        serde_json::json!({
            "bind": self.bind.to_string(),
            "port": self.port,
            "admin": self.admin.map(|a| a.to_string()),
            "log_format": if self.json_logs { "json" } else { "text" },
            "max_body_size": body.max_body_size,
            "max_request_memory": self.stack.max_request_memory,
            "upload_dir": self.upload_dir.display().to_string(),
            "upload_dir_allow_tmpfs": self.upload_dir_allow_tmpfs,
            "fault_routes": self.fault_routes,
            "header_read_timeout_ms": self.connection_limits.header_read_timeout.as_millis() as u64,
            "max_header_bytes": self.connection_limits.max_header_bytes,
            "write_timeout_ms": self.connection_limits.write_timeout.as_millis() as u64,
            "drain_delay_ms": self.drain_delay.as_millis() as u64,
            "drain_timeout_ms": self.drain_timeout.as_millis() as u64,
            "memory_monitoring_enabled": m.monitoring_enabled,
            "memory_warning_threshold": m.warning_threshold,
            "memory_critical_threshold": m.critical_threshold,
            "memory_check_interval_ms": m.check_interval.as_millis() as u64,
            "memory_reclaim_enabled": m.reclaim_enabled,
            "memory_reclaim_interval_ms": m.reclaim_interval.as_millis() as u64,
            "memory_reclaim_aggressive": m.reclaim_aggressive,
            "memory_reclaim_on_warning": m.reclaim_on_warning,
            "memory_limit_bytes": m.limit_bytes,
            "memory_allocator_profile": m.allocator_profile.map(|p| p.to_string()),
            "stream_buffer_threshold": body.buffer_threshold,
            "stream_chunk_size": body.chunk_size,
            "compression_enabled": compression.enabled,
            "compression_level": compression.level,
            "compression_threshold": compression.threshold,
            "heap_profile": m.profile_token.is_some(),
            "heap_profile_dir": m.profile_dir().display().to_string(),
            "heap_profile_on_exit": m.heap_profile_on_exit.as_ref().map(|p| p.display().to_string()),
            "memory_governor_enabled": m.governor_enabled,
            "memory_request_budget": format!("{:?}", m.request_budget),
            "memory_admission_queue": m.admission_queue,
            "memory_admission_timeout_ms": m.admission_timeout.as_millis() as u64,
            "memory_admission_floor": m.admission_floor,
            "memory_park_timeout_ms": m.park_timeout.as_millis() as u64,
            "memory_log_query": m.log_query_strings,
        })
    }
}
