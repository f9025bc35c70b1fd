//! cfg aliases for the codec features, so that the code says `cfg(any_encoder)` once instead of
//! repeating `any(feature = "compression-gzip", feature = "compression-deflate", ...)`.
//!
//! - `zlib_encoder`: gzip or deflate compression (one zlib encoder for the two).
//! - `zlib_decoder`: gzip or deflate decompression.
//! - `any_encoder`, `any_decoder`: at least one codec in that direction.
//! - `all_codecs`: every codec both ways (the unit tests that compare codecs need them all).

fn main() {
    for alias in [
        "zlib_encoder",
        "zlib_decoder",
        "any_encoder",
        "any_decoder",
        "all_codecs",
    ] {
        println!("cargo::rustc-check-cfg=cfg({alias})");
    }
    let on = |feature: &str| {
        let var = format!("CARGO_FEATURE_{}", feature.to_uppercase().replace('-', "_"));
        std::env::var_os(var).is_some()
    };
    let codecs = ["gzip", "deflate", "br", "zstd"];
    let encoders = codecs.map(|c| format!("compression-{c}"));
    let decoders = codecs.map(|c| format!("decompression-{c}"));
    let set = |alias: &str, yes: bool| {
        if yes {
            println!("cargo::rustc-cfg={alias}");
        }
    };
    set(
        "zlib_encoder",
        on("compression-gzip") || on("compression-deflate"),
    );
    set(
        "zlib_decoder",
        on("decompression-gzip") || on("decompression-deflate"),
    );
    let any_encoder = encoders.iter().any(|f| on(f));
    let any_decoder = decoders.iter().any(|f| on(f));
    set("any_encoder", any_encoder);
    set("any_decoder", any_decoder);
    set(
        "all_codecs",
        encoders.iter().chain(&decoders).all(|f| on(f)),
    );
}
