//! `POST /api/documents/stream`: a large JSON payload as NDJSON (one JSON object per line),
//! processed record by record as the body streams in, never buffered whole.

use axum::Json;
use axum::body::Body;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::routes::AppError;

/// Longest record (line) accepted: 1 MiB. The line being assembled across frames is the only
/// buffer, so this bounds the route's memory whatever the body's size.
pub(crate) const MAX_RECORD: usize = 1 << 20;

/// The fields the route reads from each record; the rest are skipped by the parser without being
/// kept.
#[derive(Deserialize)]
struct Record {
    id: Option<u64>,
    score: Option<f64>,
}

/// What the route answers once the body has ended.
#[derive(Serialize, Default)]
pub(crate) struct StreamSummary {
    records: u64,
    bytes: u64,
    max_id: Option<u64>,
    score_sum: f64,
}

impl StreamSummary {
    fn add(&mut self, line: &[u8], number: u64) -> Result<(), AppError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let record: Record = serde_json::from_slice(line)
            .map_err(|e| AppError::bad_request(format!("line {number}: {e}")))?;
        self.records += 1;
        if let Some(id) = record.id {
            self.max_id = Some(self.max_id.map_or(id, |m| m.max(id)));
        }
        self.score_sum += record.score.unwrap_or(0.0);
        Ok(())
    }
}

/// `POST /api/documents/stream`: NDJSON, one object per line (`\n` or `\r\n`, blank lines
/// skipped), of any total size up to `MAX_BODY_SIZE`. Each record is parsed as soon as its line is
/// complete and dropped; the answer sums them up. A line that is not a JSON object is 400 with its
/// number; a line over [`MAX_RECORD`] is 413. Body limits and slow-body timeouts are the body
/// layer's answers (413, 408).
pub(crate) async fn stream_documents(body: Body) -> Result<Json<StreamSummary>, AppError> {
    let mut frames = body.into_data_stream();
    let mut summary = StreamSummary::default();
    // The start of a line whose end has not arrived yet.
    let mut partial: Vec<u8> = Vec::new();
    let mut line_number = 0u64;
    while let Some(frame) = frames.next().await {
        let frame =
            frame.map_err(|e| AppError::bad_request(format!("reading the body failed: {e}")))?;
        summary.bytes += frame.len() as u64;
        let mut rest: &[u8] = &frame;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            line_number += 1;
            let (line, tail) = (&rest[..end], &rest[end + 1..]);
            if partial.is_empty() {
                check_length(line.len(), line_number)?;
                summary.add(line, line_number)?;
            } else {
                check_length(partial.len() + line.len(), line_number)?;
                partial.extend_from_slice(line);
                summary.add(&partial, line_number)?;
                partial.clear();
            }
            rest = tail;
        }
        check_length(partial.len() + rest.len(), line_number + 1)?;
        partial.extend_from_slice(rest);
    }
    if !partial.is_empty() {
        summary.add(&partial, line_number + 1)?;
    }
    Ok(Json(summary))
}

fn check_length(len: usize, line: u64) -> Result<(), AppError> {
    if len > MAX_RECORD {
        return Err(AppError::too_large(format!(
            "line {line} is longer than {MAX_RECORD} bytes"
        )));
    }
    Ok(())
}
