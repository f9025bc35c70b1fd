//! Test data: documents that compress like real traffic, chunked-body framing, and files of
//! fixture trees.

use std::path::Path;

use bytes::Bytes;

/// A JSON document of exactly `size` bytes that compresses like real API output (about 5:1,
/// as the 256 KiB document: gzip-6 to about 54 KB). The same `size` gives the same
/// bytes every time.
pub fn json_doc(size: usize) -> Bytes {
    const WORDS: &[&str] = &[
        "memory", "tower", "layer", "request", "response", "budget", "stream", "body", "codec",
        "window", "pressure", "health", "metrics", "probe", "limit", "spill", "frame", "zstd",
        "gzip", "brotli", "header", "client", "server", "route",
    ];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut out = String::with_capacity(size + 256);
    out.push_str("{\"documents\":[");
    let mut id = 0;
    while out.len() < size {
        if id > 0 {
            out.push(',');
        }
        let words: Vec<&str> = (0..8)
            .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
            .collect();
        out.push_str(&format!(
            "{{\"id\":{id},\"title\":\"{} {}\",\"author\":\"user{}\",\"score\":{},\"tags\":[\"{}\",\"{}\"],\"summary\":\"{}\"}}",
            words[0],
            words[1],
            next() % 1000,
            next() % 100_000,
            words[2],
            words[3],
            words[4..].join(" ")
        ));
        id += 1;
    }
    out.truncate(size.saturating_sub(2));
    out.push_str("]}");
    out.truncate(size);
    Bytes::from(out)
}

/// Writes `text` to `root/rel`, creating the directories on the way: one file of a fixture tree
/// (a fake `/proc` or cgroup hierarchy under a temporary root, say).
pub fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// One chunk of a chunked HTTP/1 body, as it goes on the wire (`"{len:x}\r\n{data}\r\n"`).
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}
