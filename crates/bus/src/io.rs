//! Byte streams between async I/O and the CSV parsers: a channel of byte
//! chunks read as a blocking `Read` (a parser on a blocking thread, fed by a
//! request body or an object store read) or as an `AsyncRead` (an object
//! store write, fed by a request body).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::sync::mpsc;

/// Chunks of a byte stream; an `Err` ends it with that error.
pub type Chunks = mpsc::Receiver<std::io::Result<Bytes>>;

/// A blocking `Read` over chunks: call it from a blocking thread only.
#[derive(Debug)]
pub struct BlockingReader {
    rx: Chunks,
    current: Bytes,
}

impl BlockingReader {
    pub fn new(rx: Chunks) -> BlockingReader {
        BlockingReader { rx, current: Bytes::new() }
    }
}

impl std::io::Read for BlockingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// An `AsyncRead` over chunks.
#[derive(Debug)]
pub struct ChunkReader {
    rx: Chunks,
    current: Bytes,
}

impl ChunkReader {
    pub fn new(rx: Chunks) -> ChunkReader {
        ChunkReader { rx, current: Bytes::new() }
    }
}

impl tokio::io::AsyncRead for ChunkReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.current.is_empty() {
            match ready!(self.rx.poll_recv(cx)) {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = buf.remaining().min(self.current.len());
        let chunk = self.current.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}
