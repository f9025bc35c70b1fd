//! What every bad-input and fault case must leave behind, checked against a running example:
//! peak RSS growth under the case's stated bound (`VmHWM` reset to the current RSS before the
//! case by writing 5 to `/proc/<pid>/clear_refs`), no temporary file and no file the case did not
//! store, the budget back to full (the governor's and the buffered bodies', which the example
//! shares), `http_body_buffered_bytes` back to 0, and `/api/health/live` still 200.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::Server;
use super::health;

pub(crate) const MIB: u64 = 1 << 20;

/// Watches one server across the cases run against it.
pub(crate) struct Watch {
    pid: u32,
    addr: String,
    upload_dir: PathBuf,
    /// Whether `clear_refs` resets the peak; if not, peaks are since the start (stricter).
    resets: bool,
}

/// One case in progress: its name, its bound, the RSS and files when it started.
pub(crate) struct Case<'a> {
    watch: &'a Watch,
    name: String,
    bound: u64,
    rss_before: u64,
    files_before: BTreeSet<String>,
}

/// What a case came to, for the summary table the tests print.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub name: String,
    pub answer: String,
    pub peak_growth: u64,
    pub bound: u64,
}

impl Watch {
    pub(crate) fn of(server: &Server) -> Watch {
        let pid = server.pid();
        let resets = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
        if !resets {
            eprintln!("clear_refs refused: each case's peak is compared since the server started");
        }
        Watch {
            pid,
            addr: server.addr.clone(),
            upload_dir: server.upload_dir.path().to_owned(),
            resets,
        }
    }

    /// Watches `dir` instead of the server's own upload directory (a server started with its
    /// own `UPLOAD_DIR`).
    pub(crate) fn with_upload_dir(mut self, dir: &Path) -> Watch {
        self.upload_dir = dir.to_owned();
        self
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) fn upload_dir(&self) -> &Path {
        &self.upload_dir
    }

    /// Resident and peak bytes now.
    pub(crate) fn memory(&self) -> tower_memory_probe::ProcessMemory {
        tower_memory_probe::process_memory_of(self.pid).expect("the server's /proc status")
    }

    /// Starts a case whose peak RSS may grow by at most `bound` bytes over the RSS now.
    pub(crate) fn case(&self, name: &str, bound: u64) -> Case<'_> {
        if self.resets {
            std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5").expect("clear_refs");
        }
        Case {
            watch: self,
            name: name.to_string(),
            bound,
            rss_before: self.memory().rss_bytes,
            files_before: files(&self.upload_dir),
        }
    }
}

impl Case<'_> {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Peak growth so far.
    pub(crate) fn growth(&self) -> u64 {
        self.watch
            .memory()
            .peak_rss_bytes
            .saturating_sub(self.rss_before)
    }

    /// Checks everything the case must leave behind; `stored` is how many uploads it kept (each
    /// a new `upload-*` file in the upload directory). `answer` says what the client got, for the
    /// summary.
    pub(crate) async fn finish(self, answer: impl Into<String>, stored: usize) -> Outcome {
        let addr = self.watch.addr.clone();
        let name = self.name.clone();
        health::budget_back_to_full(&addr).await;
        let text = health::metrics(&addr).await;
        let buffered = health::sample(&text, "http_body_buffered_bytes", "");
        assert_eq!(buffered, 0.0, "{name}: http_body_buffered_bytes {buffered}");
        // Temporary files go on drop, on a blocking thread: allow a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = files(&self.watch.upload_dir);
            let temporary: Vec<&String> =
                now.iter().filter(|f| !f.starts_with("upload-")).collect();
            let new: Vec<&String> = now.difference(&self.files_before).collect();
            let settled = temporary.is_empty() && new.len() == stored;
            if settled {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: files left in the upload directory: temporary {temporary:?}, new {new:?} (expected {stored} stored)"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(health::live(&addr).await, 200, "{name}: /api/health/live");
        let growth = self.growth();
        let outcome = Outcome {
            name,
            answer: answer.into(),
            peak_growth: growth,
            bound: self.bound,
        };
        println!(
            "case | {} | {} | peak +{:.1} MiB (bound {} MiB)",
            outcome.name,
            outcome.answer,
            growth as f64 / MIB as f64,
            self.bound / MIB
        );
        assert!(
            growth < self.bound,
            "{}: peak RSS grew by {growth} bytes, over the bound of {} bytes",
            outcome.name,
            self.bound
        );
        outcome
    }
}

/// File names in `dir`.
pub(crate) fn files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
