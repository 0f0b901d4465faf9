use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};

/// hyper's I/O for a stream with the `futures` crate's I/O traits (smol's,
/// `async-net`'s), as hyper-util's `TokioIo` is for tokio's.
///
/// Reads go through a small buffer on the stack: hyper hands out an
/// uninitialised buffer (16 KiB for an HTTP/1 connection), and a futures
/// reader needs an initialised one. Zeroing hyper's buffer on every read
/// (what a generic wrapper must do) makes every page of it resident; an
/// idle connection then costs 16 KiB more than it uses (the benchmark's
/// scenario 8b measures smol's HTTP server, which reads through this, next
/// to a hand-wired tokio one). Writes go straight to the stream; hyper's
/// shutdown closes it.
#[derive(Debug)]
pub struct FuturesIo<T> {
    stream: T,
    vectored: bool,
}

impl<T> FuturesIo<T> {
    /// Wraps `stream`; hyper copies a response's head and body into one
    /// buffer, so one write carries both (a stream whose vectored write
    /// writes its first buffer alone, the `futures` traits' default, would
    /// take two).
    pub fn new(stream: T) -> Self {
        FuturesIo {
            stream,
            vectored: false,
        }
    }

    /// Wraps `stream`, whose vectored write writes every buffer it can
    /// (`writev(2)`, as `async-io`'s sockets do): hyper hands it a
    /// response's head and body together, without copying them into one.
    pub fn vectored(stream: T) -> Self {
        FuturesIo {
            stream,
            vectored: true,
        }
    }

    /// The stream inside.
    pub fn inner(&self) -> &T {
        &self.stream
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> T {
        self.stream
    }
}

impl<T: AsyncRead + Unpin> hyper::rt::Read for FuturesIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        crate::poll_read_staged(buf, |chunk| Pin::new(&mut self.stream).poll_read(cx, chunk))
    }
}

impl<T: AsyncWrite + Unpin> hyper::rt::Write for FuturesIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.vectored
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use hyper::rt::{Read, ReadBuf, Write};

    use super::FuturesIo;

    #[test]
    fn reads_and_writes_reach_the_stream() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut io = FuturesIo::new(futures_util::io::Cursor::new(b"hello".to_vec()));
        let mut storage = [std::mem::MaybeUninit::uninit(); 16];
        let mut buf = ReadBuf::uninit(&mut storage);
        let read = pin!(&mut io).poll_read(&mut cx, buf.unfilled());
        assert!(matches!(read, Poll::Ready(Ok(()))));
        assert_eq!(buf.filled(), b"hello");
        let wrote = pin!(&mut io).poll_write(&mut cx, b"!");
        assert!(matches!(wrote, Poll::Ready(Ok(1))));
        assert!(!io.is_write_vectored());
        assert_eq!(io.into_inner().into_inner(), b"hello!");
        let cursor = futures_util::io::Cursor::new(Vec::new());
        assert!(FuturesIo::vectored(cursor).is_write_vectored());
    }
}
