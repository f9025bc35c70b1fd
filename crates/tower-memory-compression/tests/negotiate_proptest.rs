//! Property tests of the `Accept-Encoding` parser and negotiation against an independent model.

use std::collections::HashMap;

use proptest::prelude::*;
use tower_memory_compression::Encoding;
use tower_memory_compression::negotiation::{AcceptEncoding, Negotiated};

/// One list element as generated: a coding token, an optional q in thousandths, and how the
/// q-value is spelled.
#[derive(Debug, Clone)]
struct Entry {
    token: &'static str,
    q: Option<u16>,
    spelling: u8,
    spaces: bool,
}

const TOKENS: &[&str] = &[
    "gzip",
    "GZIP",
    "x-gzip",
    "deflate",
    "Deflate",
    "br",
    "BR",
    "zstd",
    "ZSTD",
    "identity",
    "IDENTITY",
    "*",
    "compress",
    "exi",
    "pack200-gzip",
];

fn entry() -> impl Strategy<Value = Entry> {
    (
        prop::sample::select(TOKENS),
        prop::option::of(0u16..=1000),
        0u8..3,
        any::<bool>(),
    )
        .prop_map(|(token, q, spelling, spaces)| Entry {
            token,
            q,
            spelling,
            spaces,
        })
}

fn render(e: &Entry) -> String {
    let mut s = e.token.to_owned();
    if let Some(q) = e.q {
        let value = match (q, e.spelling) {
            (1000, 0) => "1".to_owned(),
            (1000, 1) => "1.0".to_owned(),
            (1000, _) => "1.000".to_owned(),
            (0, 0) => "0".to_owned(),
            (q, 0) if q % 100 == 0 => format!("0.{}", q / 100),
            (q, 1) if q % 10 == 0 => format!("0.{:02}", q / 10),
            (q, _) => format!("0.{q:03}"),
        };
        let sep = if e.spaces { " ; q=" } else { ";q=" };
        let name = if e.spelling == 2 { "Q" } else { "q" };
        s.push_str(&sep.replace('q', name));
        s.push_str(&value);
    }
    s
}

/// Elements that are never well formed: they start with a byte no token may start with, or
/// carry a broken q-value.
fn garbage() -> impl Strategy<Value = String> {
    prop_oneof![
        "[\"@(){}\\[\\]/?<>=][ -+\\--~]{0,10}",
        prop::sample::select(TOKENS).prop_map(|t| format!("{t};q=2")),
        prop::sample::select(TOKENS).prop_map(|t| format!("{t};q=0.1234")),
        prop::sample::select(TOKENS).prop_map(|t| format!("{t};q=")),
        prop::sample::select(TOKENS).prop_map(|t| format!("{t};q")),
        prop::sample::select(TOKENS).prop_map(|t| format!("{t};q=-1")),
    ]
}

fn offered() -> impl Strategy<Value = Vec<Encoding>> {
    prop::sample::subsequence(Encoding::CODINGS.to_vec(), 0..=4).prop_shuffle()
}

/// The model: RFC 9110 section 12.5.3, written independently of the implementation.
fn model(entries: &[Entry], offered: &[Encoding]) -> Negotiated {
    let mut first: HashMap<String, u16> = HashMap::new();
    for e in entries {
        let key = match e.token.to_ascii_lowercase().as_str() {
            "x-gzip" => "gzip".to_owned(),
            other => other.to_owned(),
        };
        first.entry(key).or_insert(e.q.unwrap_or(1000));
    }
    let star = first.get("*").copied();
    let rating = |name: &str| first.get(name).copied().or(star);
    let mut candidates: Vec<(u16, usize, Encoding)> = offered
        .iter()
        .enumerate()
        .filter_map(|(i, e)| rating(e.as_str()).map(|q| (q, i, *e)))
        .filter(|(q, _, _)| *q > 0)
        .collect();
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let identity = rating("identity");
    match (candidates.first(), identity) {
        (Some(&(q, _, e)), Some(iq)) if q >= iq => Negotiated::Encode(e),
        (Some(&(_, _, e)), None) => Negotiated::Encode(e),
        (_, Some(0)) => Negotiated::NotAcceptable,
        _ => Negotiated::Identity,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn matches_the_model(entries in prop::collection::vec(entry(), 0..8), offered in offered()) {
        let header = entries.iter().map(render).collect::<Vec<_>>().join(", ");
        let got = AcceptEncoding::parse(&header).negotiate(&offered);
        prop_assert_eq!(got, model(&entries, &offered), "header {:?}", header);
        // Only an offered coding the client rates above zero is ever chosen.
        if let Negotiated::Encode(e) = got {
            prop_assert!(offered.contains(&e));
            prop_assert!(AcceptEncoding::parse(&header).q(e).unwrap_or(0) > 0);
        }
    }

    #[test]
    fn garbage_entries_change_nothing(
        entries in prop::collection::vec(entry(), 0..6),
        junk in prop::collection::vec(garbage(), 1..4),
        positions in prop::collection::vec(any::<prop::sample::Index>(), 1..4),
        offered in offered(),
    ) {
        let mut parts: Vec<String> = entries.iter().map(render).collect();
        let clean = parts.join(",");
        for (j, at) in junk.iter().zip(&positions) {
            let i = at.index(parts.len() + 1);
            parts.insert(i, j.clone());
        }
        let dirty = parts.join(",");
        prop_assert_eq!(
            AcceptEncoding::parse(&dirty).negotiate(&offered),
            AcceptEncoding::parse(&clean).negotiate(&offered),
            "{:?} vs {:?}", dirty, clean
        );
    }

    #[test]
    fn case_and_whitespace_do_not_matter(entries in prop::collection::vec(entry(), 0..8), offered in offered()) {
        let header = entries.iter().map(render).collect::<Vec<_>>().join(",");
        let shouted = entries.iter().map(render).collect::<Vec<_>>().join(" ,\t").to_ascii_uppercase();
        prop_assert_eq!(
            AcceptEncoding::parse(&header).negotiate(&offered),
            AcceptEncoding::parse(&shouted).negotiate(&offered)
        );
    }

    #[test]
    fn never_panics(text in "\\PC{0,64}", offered in offered()) {
        let _ = AcceptEncoding::parse(&text).negotiate(&offered);
    }

    #[test]
    fn header_bytes_parse_like_text(bytes in prop::collection::vec(32u8..=255, 0..64)) {
        if let Ok(value) = http::HeaderValue::from_bytes(&bytes) {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::ACCEPT_ENCODING, value);
            let from_field = AcceptEncoding::from_headers(&headers).negotiate(&Encoding::CODINGS);
            // A field that is text parses the same way as that text (found by cargo-fuzz:
            // a field with one non-ASCII element used to be dropped as a whole).
            if let Ok(text) = std::str::from_utf8(&bytes) {
                prop_assert_eq!(from_field, AcceptEncoding::parse(text).negotiate(&Encoding::CODINGS));
            }
        }
    }

}

/// Found by cargo-fuzz: a field with one non-ASCII element used to be dropped as a whole.
#[test]
fn one_bad_element_does_not_drop_the_field() {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::ACCEPT_ENCODING,
        http::HeaderValue::from_bytes(b" \xd7\x83**#**,*").unwrap(),
    );
    assert_eq!(
        AcceptEncoding::from_headers(&headers).negotiate(&Encoding::CODINGS),
        Negotiated::Encode(Encoding::Zstd)
    );
}
