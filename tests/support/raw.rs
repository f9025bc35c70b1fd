//! HTTP/1.1 over a bare TCP socket, for the inputs a client library refuses to send: broken
//! framing, conflicting lengths, bodies that never end, headers one byte at a time. Bytes go out
//! exactly as given; responses are parsed just enough to read the status, the headers and the
//! body. Every wait has a timeout.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// One response as it came off the wire.
#[derive(Debug, Clone)]
pub(crate) struct RawResponse {
    pub status: u16,
    /// Lower-cased names, values as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How reading a response ended when no whole response arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NoResponse {
    /// The server closed (or reset) the connection; what it had sent of a response, if anything.
    Closed(Vec<u8>),
    /// Nothing complete within the timeout.
    Timeout,
}

/// The reading half of a raw connection, with what it has buffered.
pub(crate) struct RawReader {
    read: OwnedReadHalf,
    buf: Vec<u8>,
}

/// A raw client connection, split so that a test can keep writing while it waits for an answer.
pub(crate) struct Raw {
    pub reader: RawReader,
    pub writer: OwnedWriteHalf,
}

impl Raw {
    pub(crate) async fn connect(addr: &str) -> Raw {
        let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
            .await
            .expect("connect within 10 s")
            .expect("connect");
        stream.set_nodelay(true).unwrap();
        let (read, writer) = stream.into_split();
        Raw {
            reader: RawReader {
                read,
                buf: Vec::new(),
            },
            writer,
        }
    }

    /// Writes `bytes` (errors are returned: the server may have answered and closed already).
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await
    }

    /// Writes `bytes` in pieces of `piece` bytes, `every` apart.
    pub(crate) async fn send_paced(
        &mut self,
        bytes: &[u8],
        piece: usize,
        every: Duration,
    ) -> std::io::Result<()> {
        send_paced(&mut self.writer, bytes, piece, every).await
    }

    /// Closes the writing half (the server reads end of stream); reading goes on.
    pub(crate) async fn shutdown_write(&mut self) {
        let _ = self.writer.shutdown().await;
    }

    pub(crate) async fn response(&mut self, timeout: Duration) -> Result<RawResponse, NoResponse> {
        self.reader.response(timeout).await
    }

    /// Sends one request and reads its response.
    pub(crate) async fn exchange(
        &mut self,
        request: &[u8],
        timeout: Duration,
    ) -> Result<RawResponse, NoResponse> {
        if let Err(e) = self.send(request).await {
            // The server may have answered before taking all of it.
            let answer = self.response(timeout).await;
            return answer.map_err(|n| match n {
                NoResponse::Timeout => NoResponse::Closed(format!("write: {e}").into_bytes()),
                other => other,
            });
        }
        self.response(timeout).await
    }
}

/// Writes `bytes` in pieces of `piece` bytes, `every` apart.
pub(crate) async fn send_paced(
    writer: &mut OwnedWriteHalf,
    bytes: &[u8],
    piece: usize,
    every: Duration,
) -> std::io::Result<()> {
    for chunk in bytes.chunks(piece.max(1)) {
        writer.write_all(chunk).await?;
        tokio::time::sleep(every).await;
    }
    Ok(())
}

impl RawReader {
    /// Reads one response (body framed by `Content-Length`, chunked, or the end of the
    /// connection), or says why none came.
    pub(crate) async fn response(&mut self, timeout: Duration) -> Result<RawResponse, NoResponse> {
        let deadline = Instant::now() + timeout;
        loop {
            // Interim responses (100 Continue) are skipped.
            let response = self.one(deadline).await?;
            if !(100..200).contains(&response.status) {
                return Ok(response);
            }
        }
    }

    /// Reads whatever arrives next (what is buffered first); 0 on the end of the connection or
    /// after `timeout` without data.
    pub(crate) async fn read_some(&mut self, timeout: Duration) -> usize {
        if self.buf.is_empty() {
            match self.fill(Instant::now() + timeout).await {
                Fill::Data => {}
                Fill::Eof | Fill::Timeout => return 0,
            }
        }
        let n = self.buf.len();
        self.buf.clear();
        n
    }

    /// Reads until the server closes the connection; `true` if it did within `timeout`.
    pub(crate) async fn closed(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.fill(deadline).await {
                Fill::Data => continue,
                Fill::Eof => return true,
                Fill::Timeout => return false,
            }
        }
    }

    async fn one(&mut self, deadline: Instant) -> Result<RawResponse, NoResponse> {
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            match self.fill(deadline).await {
                Fill::Data => {}
                Fill::Eof => return Err(NoResponse::Closed(std::mem::take(&mut self.buf))),
                Fill::Timeout => return Err(NoResponse::Timeout),
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {head:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut response = RawResponse {
            status,
            headers: headers.clone(),
            body: Vec::new(),
        };
        if (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(response);
        }
        if let Some(len) = get("content-length") {
            let len: usize = len.parse().expect("numeric Content-Length");
            while self.buf.len() < len {
                match self.fill(deadline).await {
                    Fill::Data => {}
                    Fill::Eof => return Err(NoResponse::Closed(std::mem::take(&mut self.buf))),
                    Fill::Timeout => return Err(NoResponse::Timeout),
                }
            }
            response.body = self.buf.drain(..len).collect();
        } else if get("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    match self.fill(deadline).await {
                        Fill::Data => {}
                        Fill::Eof => {
                            return Err(NoResponse::Closed(std::mem::take(&mut self.buf)));
                        }
                        Fill::Timeout => return Err(NoResponse::Timeout),
                    }
                };
                let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
                let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                    .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
                while self.buf.len() < line_end + 2 + size + 2 {
                    match self.fill(deadline).await {
                        Fill::Data => {}
                        Fill::Eof => {
                            return Err(NoResponse::Closed(std::mem::take(&mut self.buf)));
                        }
                        Fill::Timeout => return Err(NoResponse::Timeout),
                    }
                }
                response
                    .body
                    .extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
                self.buf.drain(..line_end + 2 + size + 2);
                if size == 0 {
                    break;
                }
            }
        } else {
            // Delimited by the end of the connection.
            loop {
                match self.fill(deadline).await {
                    Fill::Data => {}
                    Fill::Eof => break,
                    Fill::Timeout => return Err(NoResponse::Timeout),
                }
            }
            response.body = std::mem::take(&mut self.buf);
        }
        Ok(response)
    }

    async fn fill(&mut self, deadline: Instant) -> Fill {
        let mut chunk = [0u8; 16 * 1024];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.read.read(&mut chunk)).await {
            Err(_) => Fill::Timeout,
            // A reset counts as the end: the server is gone from this connection either way.
            Ok(Ok(0)) | Ok(Err(_)) => Fill::Eof,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Fill::Data
            }
        }
    }
}

enum Fill {
    Data,
    Eof,
    Timeout,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A request head: `METHOD path HTTP/1.1`, `Host`, the given header lines, the blank line.
pub(crate) fn head(method: &str, path: &str, headers: &[&str]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}
