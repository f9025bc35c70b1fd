//! Output captured in memory: a `Write` to hand a logger (a `tracing_subscriber` writer, say),
//! read back by the test; and the global `tracing` subscriber that writes there.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// Bytes written to any clone of it, kept in memory.
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything written so far; panics if it is not UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// The lines written so far (invalid UTF-8 replaced).
    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Installs the process's global `tracing` subscriber: plain text (no colours) at WARN and above,
/// into the returned [`Captured`]. Once per process: it panics if a global subscriber is set.
pub fn capture_warnings() -> Captured {
    let log = Captured::default();
    let writer = log.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .finish(),
    )
    .unwrap();
    log
}
