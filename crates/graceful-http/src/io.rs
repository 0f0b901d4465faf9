use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use graceful_core::Runtime;
use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};

/// A connection's I/O with a staged close (B12): when hyper shuts the
/// connection down after its last response, the write side is shut first,
/// then what the client still sends is read and discarded until it closes
/// its side or `linger` passes, and only then is the socket dropped.
/// Closing a socket with unread data makes the kernel send a reset, which
/// can destroy the response the client has not read yet.
pub struct Io<I, R: Runtime> {
    inner: I,
    rt: R,
    linger: Duration,
    close: Close<R::Sleep>,
}

enum Close<S> {
    Open,
    Lingering(Pin<Box<S>>),
    Done,
}

impl<I, R: Runtime> Io<I, R> {
    /// Wraps `inner`; the close lingers at most `linger`.
    pub fn new(inner: I, rt: R, linger: Duration) -> Self {
        Io {
            inner,
            rt,
            linger,
            close: Close::Open,
        }
    }

    /// The wrapped I/O.
    pub fn get_ref(&self) -> &I {
        &self.inner
    }
}

impl<I, R: Runtime> fmt::Debug for Io<I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Io")
            .field("linger", &self.linger)
            .finish_non_exhaustive()
    }
}

// Nothing inside is pinned structurally: `I` is required to be `Unpin` and
// the sleep is boxed.
impl<I: Unpin, R: Runtime> Unpin for Io<I, R> {}

impl<I: Read + Unpin, R: Runtime> Read for Io<I, R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<I: Read + Write + Unpin, R: Runtime> Write for Io<I, R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.close {
                Close::Open => {
                    ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
                    if this.linger.is_zero() {
                        this.close = Close::Done;
                    } else {
                        this.close = Close::Lingering(Box::pin(this.rt.sleep(this.linger)));
                    }
                }
                Close::Lingering(timer) => {
                    let mut scratch = [0u8; 1024];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut this.inner).poll_read(cx, buf.unfilled()) {
                        // The client closed its side, or the socket failed:
                        // nothing more to wait for.
                        Poll::Ready(Ok(())) if buf.filled().is_empty() => this.close = Close::Done,
                        Poll::Ready(Err(_)) => this.close = Close::Done,
                        Poll::Ready(Ok(())) => continue,
                        Poll::Pending => {
                            ready!(timer.as_mut().poll(cx));
                            this.close = Close::Done;
                        }
                    }
                }
                Close::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}
