//! Content codings this crate speaks, and their HTTP tokens.

use std::fmt;

use http::HeaderValue;

/// A content coding (RFC 9110 section 8.4.1) as used in `Accept-Encoding` and `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Encoding {
    /// `gzip` (RFC 1952); `x-gzip` is read as the same coding.
    Gzip,
    /// `deflate`: a zlib-wrapped (RFC 1950) deflate stream, as HTTP defines it.
    Deflate,
    /// `br` (RFC 7932).
    Brotli,
    /// `zstd` (RFC 8878).
    Zstd,
    /// `identity`: no coding.
    Identity,
}

impl Encoding {
    /// Every coding other than `identity`, in the default server preference
    /// (zstd first: fastest at a ratio close to brotli's; then br, gzip, deflate).
    pub const CODINGS: [Encoding; 4] = [
        Encoding::Zstd,
        Encoding::Brotli,
        Encoding::Gzip,
        Encoding::Deflate,
    ];

    /// The token as sent in `Content-Encoding`.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
            Encoding::Identity => "identity",
        }
    }

    /// The header value for `Content-Encoding`.
    pub fn header_value(self) -> HeaderValue {
        HeaderValue::from_static(self.as_str())
    }

    /// Reads a coding token, case-insensitively; `x-gzip` is `gzip`. `None` for anything else.
    pub fn from_token(token: &str) -> Option<Encoding> {
        let token = token.trim();
        [
            ("gzip", Encoding::Gzip),
            ("x-gzip", Encoding::Gzip),
            ("deflate", Encoding::Deflate),
            ("br", Encoding::Brotli),
            ("zstd", Encoding::Zstd),
            ("identity", Encoding::Identity),
        ]
        .into_iter()
        .find(|(name, _)| token.eq_ignore_ascii_case(name))
        .map(|(_, e)| e)
    }

    /// Whether this build compresses with the codec (its `compression-*` cargo feature is on).
    /// `identity` always does.
    pub fn can_compress(self) -> bool {
        match self {
            Encoding::Gzip => cfg!(feature = "compression-gzip"),
            Encoding::Deflate => cfg!(feature = "compression-deflate"),
            Encoding::Brotli => cfg!(feature = "compression-br"),
            Encoding::Zstd => cfg!(feature = "compression-zstd"),
            Encoding::Identity => true,
        }
    }

    /// Whether this build decodes the codec (its `decompression-*` cargo feature is on).
    /// `identity` always does.
    pub fn can_decompress(self) -> bool {
        match self {
            Encoding::Gzip => cfg!(feature = "decompression-gzip"),
            Encoding::Deflate => cfg!(feature = "decompression-deflate"),
            Encoding::Brotli => cfg!(feature = "decompression-br"),
            Encoding::Zstd => cfg!(feature = "decompression-zstd"),
            Encoding::Identity => true,
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Encoding::Gzip => 0,
            Encoding::Deflate => 1,
            Encoding::Brotli => 2,
            Encoding::Zstd => 3,
            Encoding::Identity => 4,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The comma-separated list of codings, e.g. `"zstd, br, gzip, deflate"` (the callers' lists
/// hold compiled codings only: offered or accepted ones).
pub(crate) fn compiled_list(codings: &[Encoding]) -> String {
    codings
        .iter()
        .filter(|e| **e != Encoding::Identity)
        .map(|e| e.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_case_insensitively() {
        for e in Encoding::CODINGS.into_iter().chain([Encoding::Identity]) {
            assert_eq!(Encoding::from_token(e.as_str()), Some(e));
            assert_eq!(
                Encoding::from_token(&e.as_str().to_ascii_uppercase()),
                Some(e)
            );
        }
        assert_eq!(Encoding::from_token(" X-GZip "), Some(Encoding::Gzip));
        assert_eq!(Encoding::from_token("compress"), None);
        assert_eq!(Encoding::from_token(""), None);
    }
}
