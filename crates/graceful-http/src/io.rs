use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use graceful_core::Runtime;

use crate::service::Activity;
use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};

/// A connection's I/O with a staged close: when hyper shuts the connection
/// down after its last response, the write side is shut first. Closing a
/// socket with unread data makes the kernel send a reset, which can destroy
/// the response the client has not read yet; so when the client may still
/// be sending (request bytes are already pending, or the last request came
/// with a body the handler may not have read to its end), what it sends is
/// read and discarded until it closes its side or `linger` passes, and only
/// then is the socket dropped. Otherwise the socket closes at once, so the
/// process can exit right after its last response (as nginx's
/// `lingering_close auto`).
pub struct Io<I, R: Runtime> {
    inner: I,
    rt: R,
    linger: Duration,
    activity: Option<Arc<Activity>>,
    /// How many bytes of the HTTP/2 preface the first reads matched, until
    /// they match it whole or differ from it (`None`: done looking).
    preface: Option<usize>,
    close: Close<R::Sleep>,
}

/// What an HTTP/2 client with prior knowledge sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum Close<S> {
    Open,
    Lingering(Pin<Box<S>>),
    Done,
}

impl<I, R: Runtime> Io<I, R> {
    /// Wraps `inner`; the close lingers at most `linger`, and only when
    /// request bytes are pending at the close.
    pub fn new(inner: I, rt: R, linger: Duration) -> Self {
        Io {
            inner,
            rt,
            linger,
            activity: None,
            preface: None,
            close: Close::Open,
        }
    }

    /// Wraps `inner` for a connection whose requests `activity` sees: the
    /// close also lingers after a request that came with a body, and an
    /// HTTP/2 connection is known as one from its preface, before its first
    /// request (so it gets its GOAWAY at the trigger even when idle).
    pub(crate) fn with_activity(
        inner: I,
        rt: R,
        linger: Duration,
        activity: Arc<Activity>,
    ) -> Self {
        Io {
            activity: Some(activity),
            preface: Some(0),
            ..Io::new(inner, rt, linger)
        }
    }

    /// The wrapped I/O.
    pub fn get_ref(&self) -> &I {
        &self.inner
    }

    /// Tells the connection's activity that a write would block: hyper
    /// keeps what it could not write until a flush goes through (which is
    /// also blocked while a flush returns `Pending`).
    fn note_write(&self, blocked: bool) {
        if let (true, Some(activity)) = (blocked, &self.activity) {
            activity.set_write_blocked(true);
        }
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
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(matched) = this.preface else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        // Until the preface is decided, read through a small buffer to see
        // the bytes (hyper reads the first 24 bytes this way too, to pick
        // the protocol).
        let mut first = [0u8; 64];
        let want = buf.remaining().min(first.len());
        let mut seen = ReadBuf::new(&mut first[..want]);
        ready!(Pin::new(&mut this.inner).poll_read(cx, seen.unfilled()))?;
        let got = seen.filled();
        buf.put_slice(got);
        let rest = &H2_PREFACE[matched..];
        let n = got.len().min(rest.len());
        this.preface = if got.is_empty() || got[..n] != rest[..n] {
            None
        } else if matched + n == H2_PREFACE.len() {
            if let Some(activity) = &this.activity {
                activity.mark_http2();
            }
            None
        } else {
            Some(matched + n)
        };
        Poll::Ready(Ok(()))
    }
}

impl<I: Read + Write + Unpin, R: Runtime> Write for Io<I, R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.note_write(written.is_pending());
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.note_write(written.is_pending());
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.inner).poll_flush(cx);
        // A stream that buffers its writes (TLS) takes them at once and
        // blocks in its flush instead.
        match (&flushed, &this.activity) {
            (Poll::Ready(Ok(())), Some(activity)) => activity.set_write_blocked(false),
            (Poll::Pending, Some(activity)) => activity.set_write_blocked(true),
            _ => {}
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.close {
                Close::Open => {
                    ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
                    this.close = if this.linger.is_zero() {
                        Close::Done
                    } else {
                        match discard(&mut this.inner, cx) {
                            // Bytes pending: the client is still sending.
                            Poll::Ready(Some(true)) => {
                                Close::Lingering(Box::pin(this.rt.sleep(this.linger)))
                            }
                            // It closed its side, or the socket failed.
                            Poll::Ready(_) => Close::Done,
                            // Nothing pending: linger only if the last
                            // request's body may still be on its way.
                            Poll::Pending
                                if this.activity.as_ref().is_some_and(|a| a.had_body()) =>
                            {
                                Close::Lingering(Box::pin(this.rt.sleep(this.linger)))
                            }
                            Poll::Pending => Close::Done,
                        }
                    };
                }
                Close::Lingering(timer) => {
                    // The timer first: a client that keeps sending cannot
                    // hold the linger past its limit.
                    if timer.as_mut().poll(cx).is_ready() {
                        this.close = Close::Done;
                        continue;
                    }
                    match ready!(discard(&mut this.inner, cx)) {
                        Some(true) => continue,
                        _ => this.close = Close::Done,
                    }
                }
                Close::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// Reads and discards what the client sent: `Some(true)` if it read bytes,
/// `Some(false)` at end-of-stream, `None` on an error.
fn discard<I: Read + Unpin>(inner: &mut I, cx: &mut Context<'_>) -> Poll<Option<bool>> {
    let mut scratch = [0u8; 1024];
    let mut buf = ReadBuf::new(&mut scratch);
    match ready!(Pin::new(inner).poll_read(cx, buf.unfilled())) {
        Ok(()) => Poll::Ready(Some(!buf.filled().is_empty())),
        Err(_) => Poll::Ready(None),
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::sync::Arc;
    use std::task::{Context, Waker};
    use std::time::Duration;

    use hyper::rt::Write;

    use super::Io;
    use crate::service::Activity;
    use crate::test_support::{NoTimers, Stream};

    #[test]
    fn bytes_held_unwritten_keep_the_connection_from_reading_quiet() {
        let mut cx = Context::from_waker(Waker::noop());
        let activity = Arc::new(Activity::default());
        let stream = Stream::default();
        stream.wire().flush_blocks = true;
        let mut io = Io::with_activity(stream.clone(), NoTimers, Duration::ZERO, activity.clone());
        assert!(activity.is_quiet());
        // Taken by the stream, then its flush blocks.
        assert!(pin!(&mut io)
            .poll_write(&mut cx, b"HTTP/1.1 200 OK\r\n")
            .is_ready());
        assert!(activity.is_quiet(), "a write taken at once holds nothing");
        assert!(pin!(&mut io).poll_flush(&mut cx).is_pending());
        assert!(!activity.is_quiet(), "the stream holds bytes unwritten");
        stream.wire().flush_blocks = false;
        assert!(pin!(&mut io).poll_flush(&mut cx).is_ready());
        assert!(activity.is_quiet());
        // A write that blocks: hyper keeps the bytes until a flush.
        stream.wire().write_blocks = true;
        assert!(pin!(&mut io).poll_write(&mut cx, b"body").is_pending());
        assert!(!activity.is_quiet(), "hyper holds bytes unwritten");
        stream.wire().write_blocks = false;
        assert!(pin!(&mut io).poll_write(&mut cx, b"body").is_ready());
        assert!(!activity.is_quiet(), "not flushed yet");
        assert!(pin!(&mut io).poll_flush(&mut cx).is_ready());
        assert!(activity.is_quiet());
    }
}
