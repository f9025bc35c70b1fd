//! Helpers shared by the test binaries: a source the test steers, and fixture writers.
#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use test_support::fixtures::write;
use tower_memory_health::{Sample, SampleError, SampleSource};
use tower_memory_probe::ProcessMemory;

/// A source whose reported RSS the test sets, with a clock the test advances: hours of samples
/// run in milliseconds. It can also be told to fail or to block (to stall the monitor).
#[derive(Clone)]
pub(crate) struct Steered {
    pub rss: Arc<AtomicU64>,
    base: Instant,
    /// Synthetic seconds since `base`; `None` means real time.
    offset: Arc<Mutex<Option<Duration>>>,
    pub fail: Arc<AtomicBool>,
    pub block: Arc<AtomicBool>,
}

impl Steered {
    pub(crate) fn new(rss: u64) -> Self {
        Self {
            rss: Arc::new(AtomicU64::new(rss)),
            base: Instant::now(),
            offset: Arc::new(Mutex::new(None)),
            fail: Arc::new(AtomicBool::new(false)),
            block: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn set(&self, rss: u64) {
        self.rss.store(rss, Ordering::SeqCst);
    }

    /// Switches to synthetic time at `offset` after the source was made.
    pub(crate) fn at(&self, offset: Duration) {
        *self.offset.lock().unwrap() = Some(offset);
    }
}

impl SampleSource for Steered {
    fn sample(&self) -> Result<Sample, SampleError> {
        // Bounded: a blocked source gives up after 10 s so that no test can hang on it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.block.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(SampleError::Source("told to fail".into()));
        }
        let taken_at = match *self.offset.lock().unwrap() {
            Some(offset) => self.base + offset,
            None => Instant::now(),
        };
        let rss = self.rss.load(Ordering::SeqCst);
        let mut sample = Sample::at(taken_at);
        sample.process = Some(ProcessMemory {
            rss_bytes: rss,
            peak_rss_bytes: rss,
            virtual_bytes: rss * 4,
        });
        sample.physical_bytes = Some(64 << 30);
        Ok(sample)
    }
}

/// `/proc/self/status` and `/proc/meminfo` of a fixture process.
pub(crate) fn proc_files(root: &Path, rss_kib: u64, mem_total_kib: u64) {
    write(
        root,
        "proc/self/status",
        &format!(
            "Name:\tserver\nVmPeak:\t{v} kB\nVmSize:\t{v} kB\nVmHWM:\t{h} kB\nVmRSS:\t{rss_kib} kB\n",
            v = rss_kib * 4,
            h = rss_kib * 2
        ),
    );
    write(
        root,
        "proc/meminfo",
        &format!("MemTotal:       {mem_total_kib} kB\nMemFree:  1 kB\n"),
    );
}
