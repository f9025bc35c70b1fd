//! Which responses are not compressed, and why: the reasons, the content-type rules, the
//! per-response opt-out and the header tests the decision (`decision.rs`) makes.

use http::HeaderMap;
use http::header::CACHE_CONTROL;

/// A response extension that keeps the layer from compressing this response (counted as
/// skipped with reason `disabled`).
///
/// ```
/// let mut response = http::Response::new(());
/// response.extensions_mut().insert(tower_memory_compression::SkipCompression);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SkipCompression;

/// Why a response was sent without compression (the `reason` label of
/// `http_compression_skipped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SkipReason {
    /// The client accepts no coding the layer offers (or prefers `identity`).
    NotAccepted,
    /// The response already has a `Content-Encoding`.
    AlreadyEncoded,
    /// The response is a range (`Content-Range`): compressing it would change what the range
    /// refers to.
    ContentRange,
    /// A `HEAD` request: there is no body.
    Head,
    /// A status without a body (1xx, 204, 304).
    Status,
    /// `Cache-Control: no-transform`.
    NoTransform,
    /// gRPC (`application/grpc*`) does its own per-message compression.
    Grpc,
    /// The content type is on the skip list (already compressed media, archives, opaque bytes).
    ContentType,
    /// The body is smaller than the threshold.
    BelowThreshold,
    /// Memory pressure is `Critical`.
    Pressure,
    /// Compressed in one shot, the body came out no smaller: the original was sent.
    Incompressible,
    /// The encoder could not be created or failed before the response started (logged).
    EncoderError,
    /// The response opted out with [`SkipCompression`](crate::SkipCompression), or the layer is
    /// disabled.
    Disabled,
}

impl SkipReason {
    /// How many reasons there are.
    pub(crate) const COUNT: usize = 13;

    /// A dense index, for per-reason tables.
    pub(crate) fn index(self) -> usize {
        match self {
            SkipReason::NotAccepted => 0,
            SkipReason::AlreadyEncoded => 1,
            SkipReason::ContentRange => 2,
            SkipReason::Head => 3,
            SkipReason::Status => 4,
            SkipReason::NoTransform => 5,
            SkipReason::Grpc => 6,
            SkipReason::ContentType => 7,
            SkipReason::BelowThreshold => 8,
            SkipReason::Pressure => 9,
            SkipReason::Incompressible => 10,
            SkipReason::EncoderError => 11,
            SkipReason::Disabled => 12,
        }
    }

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotAccepted => "not_accepted",
            SkipReason::AlreadyEncoded => "already_encoded",
            SkipReason::ContentRange => "content_range",
            SkipReason::Head => "head",
            SkipReason::Status => "status",
            SkipReason::NoTransform => "no_transform",
            SkipReason::Grpc => "grpc",
            SkipReason::ContentType => "content_type",
            SkipReason::BelowThreshold => "below_threshold",
            SkipReason::Pressure => "pressure",
            SkipReason::Incompressible => "incompressible",
            SkipReason::EncoderError => "encoder_error",
            SkipReason::Disabled => "disabled",
        }
    }
}

/// Content types that are sent as they are, compared case-insensitively on the media type
/// (parameters such as `; charset=utf-8` are ignored).
///
/// The default list skips what is already compressed or opaque: `image/*` except
/// `image/svg+xml`, `audio/*`, `video/*`, WOFF/WOFF2 fonts, zip/gzip/zstd/brotli/7z/xz/bzip2/rar
/// archives, and `application/octet-stream`. gRPC is always skipped (it compresses per message).
///
/// ```
/// use tower_memory_compression::SkipRules;
///
/// let rules = SkipRules::default()
///     .skip("application/x-custom-packed")   // one more exact type
///     .skip_prefix("model/")                 // a whole top-level type
///     .compress("image/bmp");                // an exception: bitmaps compress well
/// assert!(rules.skips("Application/X-Custom-Packed; v=1"));
/// assert!(rules.skips("image/png"));
/// assert!(!rules.skips("image/bmp"));
/// assert!(!rules.skips("image/svg+xml"));
/// assert!(!rules.skips("application/json"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipRules {
    exact: Vec<String>,
    prefixes: Vec<String>,
    exceptions: Vec<String>,
}

const DEFAULT_EXACT: &[&str] = &[
    "font/woff",
    "font/woff2",
    "application/font-woff",
    "application/font-woff2",
    "application/x-font-woff",
    "application/zip",
    "application/gzip",
    "application/x-gzip",
    "application/zstd",
    "application/x-zstd",
    "application/x-brotli",
    "application/brotli",
    "application/x-7z-compressed",
    "application/x-xz",
    "application/x-bzip2",
    "application/vnd.rar",
    "application/x-rar-compressed",
    "application/octet-stream",
];

const DEFAULT_PREFIXES: &[&str] = &["image/", "audio/", "video/"];

const DEFAULT_EXCEPTIONS: &[&str] = &["image/svg+xml"];

impl Default for SkipRules {
    fn default() -> Self {
        let own = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect();
        SkipRules {
            exact: own(DEFAULT_EXACT),
            prefixes: own(DEFAULT_PREFIXES),
            exceptions: own(DEFAULT_EXCEPTIONS),
        }
    }
}

impl SkipRules {
    /// An empty list: every content type is compressed (gRPC still is not).
    #[must_use]
    pub fn none() -> Self {
        SkipRules {
            exact: Vec::new(),
            prefixes: Vec::new(),
            exceptions: Vec::new(),
        }
    }

    /// Also skips this exact media type.
    #[must_use]
    pub fn skip(mut self, media_type: &str) -> Self {
        self.exact.push(media_type.trim().to_ascii_lowercase());
        self
    }

    /// Also skips every media type starting with `prefix` (e.g. `"model/"`).
    #[must_use]
    pub fn skip_prefix(mut self, prefix: &str) -> Self {
        self.prefixes.push(prefix.trim().to_ascii_lowercase());
        self
    }

    /// Compresses this exact media type even if a rule above would skip it.
    #[must_use]
    pub fn compress(mut self, media_type: &str) -> Self {
        let media_type = media_type.trim().to_ascii_lowercase();
        self.exact.retain(|t| *t != media_type);
        self.exceptions.push(media_type);
        self
    }

    /// Whether a response with this `Content-Type` value is skipped.
    pub fn skips(&self, content_type: &str) -> bool {
        self.skips_essence(essence(content_type))
    }

    /// [`skips`](Self::skips) for a media type already stripped of its parameters.
    pub(crate) fn skips_essence(&self, essence: &str) -> bool {
        let eq = |t: &String| essence.eq_ignore_ascii_case(t);
        if self.exceptions.iter().any(eq) {
            return false;
        }
        self.exact.iter().any(eq)
            || self
                .prefixes
                .iter()
                .any(|p| essence.len() >= p.len() && essence[..p.len()].eq_ignore_ascii_case(p))
    }
}

/// The media type without parameters.
pub(crate) fn essence(content_type: &str) -> &str {
    match content_type.as_bytes().iter().position(|&b| b == b';') {
        Some(i) => content_type[..i].trim(),
        None => content_type.trim(),
    }
}

/// Whether the media type (without parameters) is gRPC (`application/grpc`,
/// `application/grpc+proto`, ...).
pub(crate) fn is_grpc(essence: &str) -> bool {
    let e = essence;
    let p = "application/grpc";
    e.len() >= p.len()
        && e[..p.len()].eq_ignore_ascii_case(p)
        && matches!(e.as_bytes().get(p.len()), None | Some(b'+') | Some(b'-'))
}

pub(crate) fn has_no_transform(headers: &HeaderMap) -> bool {
    headers.get_all(CACHE_CONTROL).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',').any(|d| {
                d.split('=')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .eq_ignore_ascii_case("no-transform")
            })
        })
    })
}

/// Media types of streams that trickle: a body of one of these that pauses below the
/// threshold is compressed anyway (the stream as a whole will cross it), so that its events
/// are not held back until enough of them have accumulated.
pub(crate) const STREAMING_TYPES: &[&str] = &[
    "text/event-stream",
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
    "application/stream+json",
    "application/json-seq",
];

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn default_list() {
        let r = SkipRules::default();
        for t in [
            "image/png",
            "IMAGE/JPEG",
            "image/webp; q=1",
            "audio/ogg",
            "video/mp4",
            "font/woff2",
            "font/WOFF",
            "application/zip",
            "application/gzip",
            "application/zstd",
            "application/x-brotli",
            "application/octet-stream",
            "Application/Octet-Stream; x=y",
        ] {
            assert!(r.skips(t), "{t}");
        }
        for t in [
            "image/svg+xml",
            "Image/SVG+XML; charset=utf-8",
            "text/html",
            "application/json",
            "text/event-stream",
            "font/ttf",
            "application/javascript",
            "",
        ] {
            assert!(!r.skips(t), "{t}");
        }
        assert!(!SkipRules::none().skips("image/png"));
    }

    #[test]
    fn no_transform() {
        let mut h = HeaderMap::new();
        h.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, No-Transform"),
        );
        assert!(has_no_transform(&h));
        h.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=3"));
        assert!(!has_no_transform(&h));
    }

    #[test]
    fn grpc() {
        assert!(is_grpc("application/grpc"));
        assert!(is_grpc("application/grpc+proto"));
        assert!(is_grpc("Application/GRPC-Web; charset=x"));
        assert!(!is_grpc("application/grpcx"));
        assert!(!is_grpc("application/json"));
    }
}
