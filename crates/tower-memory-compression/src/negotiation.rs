//! `Accept-Encoding` parsing and content-coding negotiation (RFC 9110 section 12.5.3).
//!
//! Parsing never allocates: the known codings and `*` each get one slot. Entries that are not
//! well formed (bad token, bad or out-of-range q-value, bytes outside ASCII) are ignored, as if
//! the client had not sent them; the rest of the field still counts.

use http::HeaderMap;
use http::header::ACCEPT_ENCODING;

use crate::Encoding;

/// A q-value in thousandths: `0..=1000` (`q=0.5` is 500).
pub type QValue = u16;

/// The parsed `Accept-Encoding` request header(s).
///
/// ```
/// use tower_memory_compression::Encoding;
/// use tower_memory_compression::negotiation::AcceptEncoding;
///
/// let accept = AcceptEncoding::parse("GZIP;q=0.5, br, *;q=0, identity;q=0.1, bogus;q=x");
/// assert_eq!(accept.q(Encoding::Gzip), Some(500));
/// assert_eq!(accept.q(Encoding::Brotli), Some(1000));
/// assert_eq!(accept.q(Encoding::Zstd), Some(0)); // from `*;q=0`
/// assert_eq!(accept.q(Encoding::Identity), Some(100));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AcceptEncoding {
    /// Explicit q per coding, indexed by `Encoding::index`.
    explicit: [Option<QValue>; 5],
    star: Option<QValue>,
    present: bool,
}

/// The outcome of negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiated {
    /// Compress with this coding.
    Encode(Encoding),
    /// Send the representation without a coding.
    Identity,
    /// Nothing the server can produce is acceptable (e.g. `identity;q=0` and no supported
    /// coding): answer `406 Not Acceptable`.
    NotAcceptable,
}

impl AcceptEncoding {
    /// Parses every `Accept-Encoding` field of `headers` (several fields are one list).
    /// A request without the header gets `present() == false`.
    pub fn from_headers(headers: &HeaderMap) -> AcceptEncoding {
        let mut accept = AcceptEncoding::default();
        for value in headers.get_all(ACCEPT_ENCODING) {
            accept.present = true;
            accept.add(value.as_bytes());
        }
        accept
    }

    /// Parses one header value.
    pub fn parse(value: &str) -> AcceptEncoding {
        let mut accept = AcceptEncoding {
            present: true,
            ..AcceptEncoding::default()
        };
        accept.add(value.as_bytes());
        accept
    }

    fn add(&mut self, value: &[u8]) {
        // Elements are split on bytes, so that one element with bytes outside ASCII (garbage)
        // does not take the rest of the field with it.
        for element in value.split(|b| *b == b',') {
            let Ok(element) = std::str::from_utf8(element) else {
                continue;
            };
            let Some((coding, q)) = parse_element(element) else {
                continue;
            };
            let slot = match coding {
                Coding::Star => &mut self.star,
                Coding::Known(e) => &mut self.explicit[e.index()],
                Coding::Other => continue,
            };
            // The first entry for a coding wins; later duplicates are ignored.
            if slot.is_none() {
                *slot = Some(q);
            }
        }
    }

    /// Whether the request carried an `Accept-Encoding` field at all.
    pub fn present(&self) -> bool {
        self.present
    }

    /// The q-value that applies to `encoding`: its own entry, else `*`'s; for `identity`
    /// without either, 1000 (identity is acceptable unless excluded). `None` when the header
    /// names neither the coding nor `*` (for codings other than identity: not acceptable).
    pub fn q(&self, encoding: Encoding) -> Option<QValue> {
        let q = self.explicit[encoding.index()].or(self.star);
        if encoding == Encoding::Identity {
            Some(q.unwrap_or(1000))
        } else {
            q
        }
    }

    /// Picks the coding for a response, given the codings the server offers in its order of
    /// preference (earlier wins a tie of q-values).
    ///
    /// The best offered coding with a q above zero is chosen, unless the client rates
    /// `identity` (explicitly, or through `*`) strictly higher. Without any `Accept-Encoding` field the answer is
    /// `Identity` (what clients that send none expect in practice).
    pub fn negotiate(&self, offered: &[Encoding]) -> Negotiated {
        if !self.present {
            return Negotiated::Identity;
        }
        let mut best: Option<(Encoding, QValue)> = None;
        for &e in offered {
            if e == Encoding::Identity {
                continue;
            }
            let q = self.q(e).unwrap_or(0);
            if q > 0 && best.is_none_or(|(_, bq)| q > bq) {
                best = Some((e, q));
            }
        }
        // Only an explicit rating of identity (its own entry or `*`) competes with the codings;
        // the implicit "acceptable unless excluded" only makes it the fallback.
        let identity = self.explicit[Encoding::Identity.index()].or(self.star);
        match best {
            Some((e, q)) if identity.is_none_or(|iq| q >= iq) => Negotiated::Encode(e),
            _ if identity.is_none_or(|iq| iq > 0) => Negotiated::Identity,
            _ => Negotiated::NotAcceptable,
        }
    }
}

enum Coding {
    Star,
    Known(Encoding),
    Other,
}

/// One list element: `token *( OWS ";" OWS param )`. `None` when malformed.
fn parse_element(element: &str) -> Option<(Coding, QValue)> {
    let mut parts = element.split(';');
    let token = parts.next()?.trim_matches(is_ows);
    if token.is_empty() {
        return None;
    }
    let coding = if token == "*" {
        Coding::Star
    } else if token.bytes().all(is_tchar) {
        Encoding::from_token(token).map_or(Coding::Other, Coding::Known)
    } else {
        return None;
    };
    let mut q = 1000;
    for param in parts {
        let param = param.trim_matches(is_ows);
        let (name, value) = param.split_once('=')?;
        let name = name.trim_matches(is_ows);
        if !name.bytes().all(is_tchar) || name.is_empty() {
            return None;
        }
        if name.eq_ignore_ascii_case("q") {
            q = parse_qvalue(value.trim_matches(is_ows))?;
        }
        // Other parameters are not defined for Accept-Encoding; tolerate and ignore them.
    }
    Some((coding, q))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in thousandths.
fn parse_qvalue(text: &str) -> Option<QValue> {
    let bytes = text.as_bytes();
    let (&first, rest) = bytes.split_first()?;
    let fraction = match rest {
        [] => &[][..],
        [b'.', digits @ ..] if digits.len() <= 3 => digits,
        _ => return None,
    };
    if !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths: QValue = 0;
    for (i, d) in fraction.iter().enumerate() {
        thousandths += QValue::from(d - b'0') * [100, 10, 1][i];
    }
    match first {
        b'0' => Some(thousandths),
        b'1' if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Encoding::*;

    const ALL: [Encoding; 4] = Encoding::CODINGS;

    #[test]
    fn negotiation_table() {
        use Negotiated::{Encode, Identity as Id, NotAcceptable as No};
        let table: &[(&str, &[Encoding], Negotiated)] = &[
            // plain lists: server preference breaks ties
            ("gzip", &ALL, Encode(Gzip)),
            ("gzip, deflate, br, zstd", &ALL, Encode(Zstd)),
            ("gzip, br", &ALL, Encode(Brotli)),
            ("deflate", &ALL, Encode(Deflate)),
            ("gzip, br", &[Gzip, Brotli], Encode(Gzip)),
            // q-values
            ("gzip;q=1.0, br;q=0.5", &ALL, Encode(Gzip)),
            ("gzip;q=0.001, zstd;q=0.002", &ALL, Encode(Zstd)),
            ("br;q=0.9, zstd;q=0.8", &ALL, Encode(Brotli)),
            ("gzip; q=0.3 , br ;Q=0.30", &ALL, Encode(Brotli)),
            ("gzip;q=0", &ALL, Id),
            ("gzip;q=0, br;q=0", &ALL, Id),
            // identity rated above every coding
            ("gzip;q=0.5, identity", &ALL, Id),
            ("gzip;q=0.5, identity;q=0.5", &ALL, Encode(Gzip)),
            ("gzip;q=0.5", &ALL, Encode(Gzip)),
            ("gzip;q=0.5, *;q=0.6", &ALL, Encode(Zstd)),
            ("gzip;q=0.5, *;q=0.4", &ALL, Encode(Gzip)),
            ("gzip;q=0.5, zstd;q=0, *;q=0.6", &[Zstd, Gzip], Id),
            // wildcard
            ("*", &ALL, Encode(Zstd)),
            ("*", &[Gzip], Encode(Gzip)),
            ("*;q=0.5, br;q=0.6", &ALL, Encode(Brotli)),
            ("*;q=0.5, zstd;q=0", &ALL, Encode(Brotli)),
            ("*;q=0", &ALL, No),
            ("*;q=0, identity", &ALL, Id),
            ("*;q=0, gzip", &ALL, Encode(Gzip)),
            // identity excluded
            ("identity;q=0", &ALL, No),
            ("identity;q=0, gzip", &ALL, Encode(Gzip)),
            ("identity;q=0, gzip", &[Brotli], No),
            ("identity;q=0, compress", &ALL, No),
            // unknown codings and garbage are ignored
            ("compress, gzip", &ALL, Encode(Gzip)),
            ("compress", &ALL, Id),
            ("gzip;q=2, br", &ALL, Encode(Brotli)),
            ("gzip;q=0.5.5", &ALL, Id),
            ("gzip;q=1.001", &ALL, Id),
            ("gzip;q=0.1234", &ALL, Id),
            ("gzip;q=", &ALL, Id),
            ("gzip;q", &ALL, Id),
            ("gz ip, br", &ALL, Encode(Brotli)),
            ("\"gzip\", deflate", &ALL, Encode(Deflate)),
            (",,, ,gzip,,", &ALL, Encode(Gzip)),
            ("gzip;level=9", &ALL, Encode(Gzip)),
            ("", &ALL, Id),
            ("  ", &ALL, Id),
            ("x-gzip", &ALL, Encode(Gzip)),
            ("GZIP, BR", &[Gzip, Brotli], Encode(Gzip)),
            // duplicates: first wins
            ("gzip;q=0, gzip", &ALL, Id),
            ("gzip, gzip;q=0", &ALL, Encode(Gzip)),
            // nothing offered
            ("gzip", &[], Id),
            ("identity;q=0", &[], No),
        ];
        for (header, offered, expected) in table {
            let got = AcceptEncoding::parse(header).negotiate(offered);
            assert_eq!(
                got, *expected,
                "Accept-Encoding: {header:?} offered {offered:?}"
            );
        }
    }

    #[test]
    fn absent_header_means_identity() {
        let headers = HeaderMap::new();
        let accept = AcceptEncoding::from_headers(&headers);
        assert!(!accept.present());
        assert_eq!(accept.negotiate(&ALL), Negotiated::Identity);
    }

    #[test]
    fn several_fields_are_one_list() {
        let mut headers = HeaderMap::new();
        headers.append(ACCEPT_ENCODING, "gzip;q=0.2".parse().unwrap());
        headers.append(ACCEPT_ENCODING, "br;q=0.4".parse().unwrap());
        let accept = AcceptEncoding::from_headers(&headers);
        assert_eq!(accept.negotiate(&ALL), Negotiated::Encode(Brotli));
        // a non-ASCII element is dropped, the others stay
        let mut headers = HeaderMap::new();
        headers.append(
            ACCEPT_ENCODING,
            http::HeaderValue::from_bytes(b"zstd\xff, \xd7\x83br").unwrap(),
        );
        headers.append(ACCEPT_ENCODING, "gzip".parse().unwrap());
        assert_eq!(
            AcceptEncoding::from_headers(&headers).negotiate(&ALL),
            Negotiated::Encode(Gzip)
        );
    }

    #[test]
    fn qvalues() {
        for (text, q) in [
            ("0", Some(0)),
            ("0.", Some(0)),
            ("0.5", Some(500)),
            ("0.05", Some(50)),
            ("0.005", Some(5)),
            ("0.999", Some(999)),
            ("1", Some(1000)),
            ("1.", Some(1000)),
            ("1.000", Some(1000)),
            ("1.0001", None),
            ("1.5", None),
            ("2", None),
            ("-0", None),
            (".5", None),
            ("0.a", None),
            ("", None),
        ] {
            assert_eq!(parse_qvalue(text), q, "{text:?}");
        }
    }
}
