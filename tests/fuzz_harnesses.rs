//! The fuzz targets' checks (fuzz/harness/) in the normal test run: every committed seed
//! (fuzz/seeds/<target>/) replayed, and proptest generating structured inputs for each target, so
//! that what the fuzzers guard is tested on every `cargo test` and a seed that once failed stays
//! fixed. The fuzzers themselves run with cargo-fuzz (fuzz/Cargo.toml, `.ci/fuzz`).

#[path = "../fuzz/harness/accept_encoding.rs"]
mod accept_encoding;
#[path = "../fuzz/harness/body_limits.rs"]
mod body_limits;
#[path = "../fuzz/harness/capped_decoder.rs"]
mod capped_decoder;
#[path = "../fuzz/harness/config.rs"]
mod config;
#[path = "../fuzz/harness/framing.rs"]
mod framing;
#[path = "../fuzz/harness/paused_runtime.rs"]
mod paused_runtime;

use std::path::Path;

use proptest::prelude::*;
use tower_memory::compression::{Encoding, compress_to_vec};

/// The seeds of `target`, by file name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds for {target}");
    out
}

fn replay(target: &str, check: fn(&[u8])) {
    for (name, data) in seeds(target) {
        let result = std::panic::catch_unwind(|| check(&data));
        if let Err(panic) = result {
            eprintln!("{target} seed {name} failed");
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn seeds_accept_encoding() {
    replay("accept_encoding", accept_encoding::check);
}

#[test]
fn seeds_capped_decoder() {
    replay("capped_decoder", capped_decoder::check);
}

#[test]
fn seeds_body_limits() {
    replay("body_limits", body_limits::check);
}

#[test]
fn seeds_config() {
    replay("config", config::check);
}

#[test]
fn seeds_framing() {
    replay("framing", framing::check);
}

/// One HTTP/1.1 request from pieces that each exercise a framing path.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "HEAD", "OPTIONS", "G\tET", ""]);
    let path = prop::sample::select(vec![
        "/hello",
        "/docs",
        "/echo",
        "/stream",
        "/api/health",
        "/api/health/ready",
        "/api/metrics",
        "/nowhere",
        "*",
        "/%zz",
    ]);
    let header = prop_oneof![
        (0u64..200_000).prop_map(|n| format!("Content-Length: {n}")),
        Just("Content-Length: 99999999999999999999999".to_string()),
        Just("Content-Length: abc".to_string()),
        Just("Transfer-Encoding: chunked".to_string()),
        Just("Transfer-Encoding: gzip, chunked".to_string()),
        prop::sample::select(vec![
            "gzip",
            "deflate",
            "br",
            "zstd",
            "gzip, gzip",
            "compress",
            ""
        ])
        .prop_map(|c| format!("Content-Encoding: {c}")),
        "[a-z*;=.0-9, ]{0,40}".prop_map(|v| format!("Accept-Encoding: {v}")),
        Just("Expect: 100-continue".to_string()),
        Just("Connection: close".to_string()),
        "[A-Za-z-]{1,12}: [ -~]{0,30}".prop_map(|h| h),
    ];
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..4).prop_map(|parts| {
            let mut out = Vec::new();
            for p in parts {
                out.extend(format!("{:x}\r\n", p.len()).into_bytes());
                out.extend(p);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            out
        }),
        (
            0usize..200_000,
            prop::sample::select(vec![Encoding::Gzip, Encoding::Zstd, Encoding::Brotli])
        )
            .prop_map(|(n, e)| compress_to_vec(e, &vec![b'z'; n])),
    ];
    (method, path, prop::collection::vec(header, 0..5), body).prop_map(
        |(method, path, headers, body)| {
            let mut out = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n").into_bytes();
            for h in headers {
                out.extend(h.into_bytes());
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
            out.extend(body);
            out
        },
    )
}

fn config_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        (0u64..5000).prop_map(|n| n.to_string()),
        (-1.0f64..2.0).prop_map(|f| f.to_string()),
        prop::sample::select(vec![
            "true",
            "false",
            "on",
            "off",
            "yes",
            "0",
            "1",
            "memory-first",
            "throughput",
            "NaN",
            "inf",
            "",
            " 0.5 ",
            "0.",
            ".5",
            "1e3",
            "-0",
        ])
        .prop_map(str::to_string),
        "[ -~]{0,24}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn framing_holds_for_generated_requests(
        requests in prop::collection::vec(request(), 1..4),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
    ) {
        let mut bytes: Vec<u8> = requests.concat();
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        framing::check(&bytes);
    }

    #[test]
    fn body_limits_hold_for_any_case(data in prop::collection::vec(any::<u8>(), 0..80)) {
        body_limits::check(&data);
    }

    #[test]
    fn config_parser_holds_for_any_variables(
        pairs in prop::collection::vec(
            (prop::sample::select(tower_memory::config::VARIABLES.to_vec()), config_value()),
            0..8,
        )
    ) {
        let pairs: Vec<(String, String)> =
            pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        config::check_pairs(&pairs);
    }

    #[test]
    fn accept_encoding_holds_for_any_bytes(data in prop::collection::vec(any::<u8>(), 0..120)) {
        accept_encoding::check(&data);
    }
}

proptest! {
    // Each case compresses up to 1.5 MiB: fewer cases.
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn capped_decoder_holds_for_mangled_streams(
        selector in any::<u8>(),
        len in 0usize..(3 << 19),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let pick = |bits: u8| match bits & 3 {
            0 => Encoding::Gzip,
            1 => Encoding::Deflate,
            2 => Encoding::Brotli,
            _ => Encoding::Zstd,
        };
        // Encode in the order the decoder undoes (the header lists the outer coding last).
        let mut body = compress_to_vec(pick(selector), &vec![b'q'; len]);
        if selector & 0x4 != 0 {
            body = compress_to_vec(pick(selector >> 3), &body);
        }
        for (at, value) in flips {
            if !body.is_empty() {
                let i = at.index(body.len());
                body[i] = value;
            }
        }
        let mut data = vec![selector];
        data.extend(body);
        capped_decoder::check(&data);
    }
}
