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
    use std::io;
    use std::pin::{pin, Pin};
    use std::task::{Context, Poll, Waker};

    use hyper::rt::{Read, ReadBuf, Write};

    use super::FuturesIo;

    /// A stream that records the calls it gets: each read's buffer length,
    /// and the write-side methods by name.
    #[derive(Default)]
    struct Recorder {
        reads: Vec<usize>,
        calls: Vec<&'static str>,
    }

    impl futures_io::AsyncRead for Recorder {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            self.reads.push(buf.len());
            buf[..5].copy_from_slice(b"hello");
            Poll::Ready(Ok(5))
        }
    }

    impl futures_io::AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.calls.push("write");
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.calls.push("write_vectored");
            Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()))
        }
        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.calls.push("flush");
            Poll::Ready(Ok(()))
        }
        fn poll_close(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.calls.push("close");
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn reads_are_staged_and_writes_flushes_and_shutdowns_reach_the_stream() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut io = FuturesIo::new(Recorder::default());
        // hyper's buffer is larger than the stage: the stream is handed
        // the 8 KiB stage, never hyper's uninitialised buffer.
        let mut storage = vec![std::mem::MaybeUninit::uninit(); 64 * 1024];
        let mut buf = ReadBuf::uninit(&mut storage);
        let read = pin!(&mut io).poll_read(&mut cx, buf.unfilled());
        assert!(matches!(read, Poll::Ready(Ok(()))));
        assert_eq!(buf.filled(), b"hello");

        let bufs = [io::IoSlice::new(b"head"), io::IoSlice::new(b"body")];
        assert!(matches!(
            pin!(&mut io).poll_write(&mut cx, b"!"),
            Poll::Ready(Ok(1))
        ));
        let wrote = pin!(&mut io).poll_write_vectored(&mut cx, &bufs);
        assert!(matches!(wrote, Poll::Ready(Ok(8))));
        assert!(pin!(&mut io).poll_flush(&mut cx).is_ready());
        assert!(pin!(&mut io).poll_shutdown(&mut cx).is_ready());
        assert!(!io.is_write_vectored());
        let stream = io.into_inner();
        assert_eq!(stream.reads, [8192]);
        assert_eq!(stream.calls, ["write", "write_vectored", "flush", "close"]);
        assert!(FuturesIo::vectored(Recorder::default()).is_write_vectored());
    }
}
