//! `server --probe URL`: the container health check, done by the server binary itself so that the
//! image needs no curl. One HTTP/1.1 GET over a plain TCP connection, bounded in time; exit 0 on a
//! 2xx answer, 1 on anything else, 2 on a usage error.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long the probe may take in all (connect, send, read).
const TIMEOUT: Duration = Duration::from_secs(3);
/// Most of the answer read: the status line and a little of the body for the message.
const MAX_ANSWER: usize = 4096;

/// When the arguments ask for a probe, runs it and returns the exit code.
pub(crate) fn from_args() -> Option<i32> {
    let mut args = std::env::args().skip(1);
    let first = args.next()?;
    let code = match (first.as_str(), args.next(), args.next()) {
        ("--probe", Some(url), None) => match probe(&url) {
            Ok(status) => {
                println!("{url}: {status}");
                0
            }
            Err(e) => {
                eprintln!("{url}: {e}");
                1
            }
        },
        _ => {
            eprintln!("usage: server [--probe http://HOST:PORT/PATH]");
            2
        }
    };
    Some(code)
}

/// GETs `url` (`http://host:port/path`); `Ok` with the status line when it is 2xx.
fn probe(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs can be probed")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err("the URL has no host".into());
    }
    let address = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority} resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: server-probe\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER as u64)
        .read_to_end(&mut answer)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or_default().to_string();
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer: {status_line:?}"))?;
    if (200..300).contains(&code) {
        Ok(status_line)
    } else {
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
        Err(format!("{status_line} {body}"))
    }
}
