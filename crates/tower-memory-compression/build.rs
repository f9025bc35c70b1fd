//! cfg aliases for the codec features, so that the code says `cfg(any_codec)` once instead of
//! repeating `any(feature = "gzip", feature = "deflate", feature = "br", feature = "zstd")`.
//!
//! - `zlib`: gzip or deflate (both on zlib-rs, one encoder and one decoder for the two).
//! - `any_codec`: at least one codec.
//! - `all_codecs`: every codec (the unit tests that compare codecs need them all).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(zlib)");
    println!("cargo::rustc-check-cfg=cfg(any_codec)");
    println!("cargo::rustc-check-cfg=cfg(all_codecs)");
    let on = |feature: &str| std::env::var_os(format!("CARGO_FEATURE_{feature}")).is_some();
    if on("GZIP") || on("DEFLATE") {
        println!("cargo::rustc-cfg=zlib");
    }
    let codecs = ["GZIP", "DEFLATE", "BR", "ZSTD"];
    if codecs.into_iter().any(on) {
        println!("cargo::rustc-cfg=any_codec");
    }
    if codecs.into_iter().all(on) {
        println!("cargo::rustc-cfg=all_codecs");
    }
}
