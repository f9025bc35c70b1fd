//! Realistic JSON records for `GET /api/documents`: ids, names, timestamps, nested tags.

use serde::Serialize;

#[derive(Serialize)]
struct Document<'a> {
    id: u64,
    name: String,
    email: String,
    created_at: String,
    status: &'a str,
    score: f64,
    tags: Vec<Tag<'a>>,
    address: Address<'a>,
}

#[derive(Serialize)]
struct Tag<'a> {
    key: &'a str,
    value: &'a str,
}

#[derive(Serialize)]
struct Address<'a> {
    city: &'a str,
    country: &'a str,
}

const FIRST: [&str; 12] = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Leslie", "Margaret",
    "Niklaus", "Radia",
];
const LAST: [&str; 12] = [
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Lamport",
    "Hamilton", "Wirth", "Perlman",
];
const CITIES: [(&str, &str); 6] = [
    ("Lisbon", "PT"),
    ("Utrecht", "NL"),
    ("Kraków", "PL"),
    ("Tampere", "FI"),
    ("Ghent", "BE"),
    ("Bologna", "IT"),
];
const STATUS: [&str; 4] = ["active", "pending", "suspended", "archived"];
const TAGS: [(&str, &str); 8] = [
    ("tier", "gold"),
    ("tier", "silver"),
    ("region", "eu-west"),
    ("region", "eu-central"),
    ("source", "import"),
    ("source", "signup"),
    ("team", "billing"),
    ("team", "search"),
];

/// A deterministic pseudo-random sequence (splitmix64): the same document for the same id.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn timestamp(seconds_since_2020: u64) -> String {
    // Days from 2020-01-01, enough for realistic-looking ISO 8601 stamps without a date crate.
    let days = seconds_since_2020 / 86_400;
    let secs = seconds_since_2020 % 86_400;
    let (year, day_of_year) = (2020 + days / 365, days % 365);
    let (month, day) = (1 + day_of_year / 31, 1 + day_of_year % 28);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `count` documents as a JSON array (about 256 bytes each).
pub(crate) fn documents_json(count: usize) -> Vec<u8> {
    let docs: Vec<Document<'static>> = (0..count as u64)
        .map(|id| {
            let r = mix(id);
            let first = FIRST[(r % 12) as usize];
            let last = LAST[(r >> 8) as usize % 12];
            let (city, country) = CITIES[(r >> 16) as usize % CITIES.len()];
            let created = (r >> 20) % (5 * 365 * 86_400);
            Document {
                id: id + 1,
                name: format!("{first} {last}"),
                email: format!(
                    "{}.{}{}@example.org",
                    first.to_lowercase(),
                    last.to_lowercase(),
                    id
                ),
                created_at: timestamp(created),
                status: STATUS[(r >> 24) as usize % STATUS.len()],
                score: ((r >> 32) % 10_000) as f64 / 100.0,
                tags: (0..1 + (r >> 44) % 3)
                    .map(|i| {
                        let (key, value) = TAGS[((r >> (48 + 4 * i)) % 8) as usize];
                        Tag { key, value }
                    })
                    .collect(),
                address: Address { city, country },
            }
        })
        .collect();
    serde_json::to_vec(&docs).expect("documents serialize")
}
