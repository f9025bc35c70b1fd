//! The Accept-Encoding parser and negotiation on arbitrary bytes: no panic, and a chosen coding
//! is always one that was offered and that the client rates above zero.

use tower_memory::compression::Encoding;
use tower_memory::compression::negotiation::{AcceptEncoding, Negotiated};

/// The first byte picks which codings the server offers and in what order; the rest is the
/// header value.
pub(crate) fn check(data: &[u8]) {
    let (selector, text) = data.split_first().unwrap_or((&0, &[]));
    let mut offered: Vec<Encoding> = Encoding::CODINGS
        .into_iter()
        .enumerate()
        .filter(|(i, _)| selector & (1 << i) != 0)
        .map(|(_, e)| e)
        .collect();
    if selector & 0x10 != 0 {
        offered.reverse();
    }
    let Ok(value) = http::HeaderValue::from_bytes(text) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::ACCEPT_ENCODING, value);
    let accept = AcceptEncoding::from_headers(&headers);
    match accept.negotiate(&offered) {
        Negotiated::Encode(e) => {
            assert!(offered.contains(&e));
            assert!(accept.q(e).unwrap_or(0) > 0);
        }
        Negotiated::NotAcceptable => assert_eq!(accept.q(Encoding::Identity), Some(0)),
        Negotiated::Identity => {}
    }
    if let Ok(text) = std::str::from_utf8(text) {
        assert_eq!(
            AcceptEncoding::parse(text).negotiate(&offered),
            accept.negotiate(&offered)
        );
    }
}
