//! Metric names (emitted through the `metrics` facade), spelled once here, their descriptions,
//! and the helpers that emit them.

use crate::Encoding;
use crate::compression::SkipReason;
use crate::limits::DecodeError;

/// Uncompressed bytes fed to an encoder, by `encoding`.
pub(crate) static COMPRESSION_INPUT_BYTES: tower_memory_probe::MetricName =
    tower_memory_probe::MetricName::new("http_compression_input_bytes_total");
/// Compressed bytes sent, by `encoding`.
pub(crate) static COMPRESSION_OUTPUT_BYTES: tower_memory_probe::MetricName =
    tower_memory_probe::MetricName::new("http_compression_output_bytes_total");
/// Responses compressed, by `encoding`.
pub(crate) static COMPRESSED_RESPONSES: tower_memory_probe::MetricName =
    tower_memory_probe::MetricName::new("http_compression_responses_total");
/// Responses sent uncompressed, by `reason` (see [`SkipReason::as_str`]).
pub(crate) static SKIPPED_RESPONSES: tower_memory_probe::MetricName =
    tower_memory_probe::MetricName::new("http_compression_skipped_total");
/// Requests answered 406 because no acceptable coding remained.
pub(crate) static NOT_ACCEPTABLE: tower_memory_probe::MetricName =
    tower_memory_probe::MetricName::new("http_compression_not_acceptable_total");
/// Compressed request bytes read, by `encoding` (the outermost coding).
pub(crate) static DECOMPRESSION_INPUT_BYTES: tower_memory_probe::MetricName =
    tower_memory_probe::MetricName::new("http_decompression_input_bytes_total");
/// Decoded request bytes handed to the handler, by `encoding`.
pub(crate) static DECOMPRESSION_OUTPUT_BYTES: tower_memory_probe::MetricName =
    tower_memory_probe::MetricName::new("http_decompression_output_bytes_total");
/// Request bodies refused, by `reason` (`too_large`, `ratio`, `window`, `corrupt`, `truncated`,
/// `unsupported`).
pub(crate) static DECOMPRESSION_REJECTED: tower_memory_probe::MetricName =
    tower_memory_probe::MetricName::new("http_decompression_rejected_total");

/// Registers the description and unit of every metric of this crate with the installed
/// recorder (call it once, after installing the recorder).
///
/// | Name | Type | Labels | Meaning |
/// |---|---|---|---|
/// | `http_compression_input_bytes_total` | counter, bytes | `encoding` | Uncompressed response bytes fed to an encoder |
/// | `http_compression_output_bytes_total` | counter, bytes | `encoding` | Compressed response bytes sent |
/// | `http_compression_responses_total` | counter | `encoding` | Responses compressed |
/// | `http_compression_skipped_total` | counter | `reason` ([`SkipReason::as_str`]) | Responses sent uncompressed |
/// | `http_compression_not_acceptable_total` | counter | | Requests answered 406 (identity refused, no coding offered acceptable) |
/// | `http_decompression_input_bytes_total` | counter, bytes | `encoding` (outermost) | Compressed request bytes read |
/// | `http_decompression_output_bytes_total` | counter, bytes | `encoding` (outermost) | Decoded request bytes handed to the handler |
/// | `http_decompression_rejected_total` | counter | `reason` (`too_large`, `ratio`, `window`, `corrupt`, `truncated`, `unsupported`) | Compressed request bodies refused |
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter};
    describe_counter!(
        COMPRESSION_INPUT_BYTES.get(),
        Unit::Bytes,
        "Uncompressed response bytes fed to an encoder, by encoding."
    );
    describe_counter!(
        COMPRESSION_OUTPUT_BYTES.get(),
        Unit::Bytes,
        "Compressed response bytes sent, by encoding."
    );
    describe_counter!(
        COMPRESSED_RESPONSES.get(),
        Unit::Count,
        "Responses compressed, by encoding."
    );
    describe_counter!(
        SKIPPED_RESPONSES.get(),
        Unit::Count,
        "Responses sent uncompressed, by reason."
    );
    describe_counter!(
        NOT_ACCEPTABLE.get(),
        Unit::Count,
        "Requests answered 406 Not Acceptable by the compression layer."
    );
    describe_counter!(
        DECOMPRESSION_INPUT_BYTES.get(),
        Unit::Bytes,
        "Compressed request bytes read, by encoding."
    );
    describe_counter!(
        DECOMPRESSION_OUTPUT_BYTES.get(),
        Unit::Bytes,
        "Decoded request bytes handed to the handler, by encoding."
    );
    describe_counter!(
        DECOMPRESSION_REJECTED.get(),
        Unit::Count,
        "Compressed request bodies refused, by reason."
    );
}

/// Counts a response sent uncompressed. Every response that is not compressed passes here, so the
/// handles are kept per thread and recorder: registering a counter by name and label costs more
/// than the rest of the decision.
pub(crate) fn skipped(reason: SkipReason) {
    use std::cell::RefCell;
    type Handles = (usize, [Option<metrics::Counter>; SkipReason::COUNT]);
    thread_local! {
        static HANDLES: RefCell<Handles> = RefCell::new((0, Default::default()));
    }
    let recorder =
        metrics::with_recorder(|r| r as *const dyn metrics::Recorder as *const () as usize);
    let register = || metrics::counter!(SKIPPED_RESPONSES.get(), "reason" => reason.as_str());
    let cached = HANDLES.try_with(|cell| {
        let Ok(mut handles) = cell.try_borrow_mut() else {
            return false;
        };
        if handles.0 != recorder {
            *handles = (recorder, Default::default());
        }
        handles.1[reason.index()]
            .get_or_insert_with(register)
            .increment(1);
        true
    });
    if cached != Ok(true) {
        register().increment(1);
    }
}

/// Counts a request body refused by the decoder.
pub(crate) fn rejected(error: &DecodeError) {
    let reason = match error {
        DecodeError::TooLarge { .. } => "too_large",
        DecodeError::RatioExceeded { .. } => "ratio",
        DecodeError::WindowTooLarge { .. } => "window",
        DecodeError::Corrupt { .. } => "corrupt",
        DecodeError::Truncated { .. } => "truncated",
        DecodeError::Unsupported(_) => "unsupported",
    };
    metrics::counter!(DECOMPRESSION_REJECTED.get(), "reason" => reason).increment(1);
}

pub(crate) fn compressed(encoding: Encoding) {
    metrics::counter!(COMPRESSED_RESPONSES.get(), "encoding" => encoding.as_str()).increment(1);
}

pub(crate) fn bytes(encoding: Encoding, input: u64, output: u64) {
    if input > 0 {
        metrics::counter!(COMPRESSION_INPUT_BYTES.get(), "encoding" => encoding.as_str())
            .increment(input);
    }
    if output > 0 {
        metrics::counter!(COMPRESSION_OUTPUT_BYTES.get(), "encoding" => encoding.as_str())
            .increment(output);
    }
}
