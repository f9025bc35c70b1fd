//! [`SpooledReader`]: a spooled body read back from its start.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncBufRead, AsyncRead, ReadBuf};

/// Reads a [`SpooledBody`](crate::SpooledBody) from its start: [`AsyncRead`] and [`AsyncBufRead`].
pub struct SpooledReader {
    pub(super) kind: ReaderKind,
}

pub(super) enum ReaderKind {
    Memory(VecDeque<Bytes>),
    File(tokio::io::BufReader<tokio::fs::File>),
}

impl fmt::Debug for SpooledReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            ReaderKind::Memory(_) => "memory",
            ReaderKind::File(_) => "file",
        };
        f.debug_struct("SpooledReader")
            .field("kind", &kind)
            .finish()
    }
}

impl AsyncRead for SpooledReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().kind {
            ReaderKind::Memory(chunks) => {
                while let Some(front) = chunks.front_mut() {
                    if front.is_empty() {
                        chunks.pop_front();
                        continue;
                    }
                    let n = front.len().min(buf.remaining());
                    buf.put_slice(&front[..n]);
                    front.advance(n);
                    break;
                }
                Poll::Ready(Ok(()))
            }
            ReaderKind::File(file) => Pin::new(file).poll_read(cx, buf),
        }
    }
}

impl AsyncBufRead for SpooledReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        match &mut self.get_mut().kind {
            ReaderKind::Memory(chunks) => {
                while chunks.front().is_some_and(Bytes::is_empty) {
                    chunks.pop_front();
                }
                Poll::Ready(Ok(chunks.front().map_or(&[][..], |b| &b[..])))
            }
            ReaderKind::File(file) => Pin::new(file).poll_fill_buf(cx),
        }
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        match &mut self.get_mut().kind {
            ReaderKind::Memory(chunks) => {
                if let Some(front) = chunks.front_mut() {
                    front.advance(amt.min(front.len()));
                }
            }
            ReaderKind::File(file) => Pin::new(file).consume(amt),
        }
    }
}
