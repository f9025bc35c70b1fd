//! Metric names (emitted through the `metrics` facade) and their descriptions.

use crate::{Encoding, SkipReason};

/// Uncompressed bytes fed to an encoder, by `encoding`.
pub const COMPRESSION_INPUT_BYTES: &str = "http_compression_input_bytes_total";
/// Compressed bytes sent, by `encoding`.
pub const COMPRESSION_OUTPUT_BYTES: &str = "http_compression_output_bytes_total";
/// Responses compressed, by `encoding`.
pub const COMPRESSED_RESPONSES: &str = "http_compression_responses_total";
/// Responses sent uncompressed, by `reason` (see [`SkipReason::as_str`]).
pub const SKIPPED_RESPONSES: &str = "http_compression_skipped_total";
/// Requests answered 406 because no acceptable coding remained.
pub const NOT_ACCEPTABLE: &str = "http_compression_not_acceptable_total";
/// Compressed request bytes read, by `encoding` (the outermost coding).
pub const DECOMPRESSION_INPUT_BYTES: &str = "http_decompression_input_bytes_total";
/// Decoded request bytes handed to the handler, by `encoding`.
pub const DECOMPRESSION_OUTPUT_BYTES: &str = "http_decompression_output_bytes_total";
/// Request bodies refused, by `reason` (`too_large`, `ratio`, `window`, `corrupt`, `truncated`,
/// `unsupported`).
pub const DECOMPRESSION_REJECTED: &str = "http_decompression_rejected_total";

/// Registers descriptions and units of every metric above with the installed recorder.
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter};
    describe_counter!(
        COMPRESSION_INPUT_BYTES,
        Unit::Bytes,
        "Uncompressed response bytes fed to an encoder, by encoding."
    );
    describe_counter!(
        COMPRESSION_OUTPUT_BYTES,
        Unit::Bytes,
        "Compressed response bytes sent, by encoding."
    );
    describe_counter!(
        COMPRESSED_RESPONSES,
        Unit::Count,
        "Responses compressed, by encoding."
    );
    describe_counter!(
        SKIPPED_RESPONSES,
        Unit::Count,
        "Responses sent uncompressed, by reason."
    );
    describe_counter!(
        NOT_ACCEPTABLE,
        Unit::Count,
        "Requests answered 406 Not Acceptable by the compression layer."
    );
    describe_counter!(
        DECOMPRESSION_INPUT_BYTES,
        Unit::Bytes,
        "Compressed request bytes read, by encoding."
    );
    describe_counter!(
        DECOMPRESSION_OUTPUT_BYTES,
        Unit::Bytes,
        "Decoded request bytes handed to the handler, by encoding."
    );
    describe_counter!(
        DECOMPRESSION_REJECTED,
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
    let register = || metrics::counter!(SKIPPED_RESPONSES, "reason" => reason.as_str());
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

pub(crate) fn compressed(encoding: Encoding) {
    metrics::counter!(COMPRESSED_RESPONSES, "encoding" => encoding.as_str()).increment(1);
}

pub(crate) fn bytes(encoding: Encoding, input: u64, output: u64) {
    if input > 0 {
        metrics::counter!(COMPRESSION_INPUT_BYTES, "encoding" => encoding.as_str())
            .increment(input);
    }
    if output > 0 {
        metrics::counter!(COMPRESSION_OUTPUT_BYTES, "encoding" => encoding.as_str())
            .increment(output);
    }
}
