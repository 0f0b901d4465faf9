use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use graceful_core::server::Idle;
use graceful_core::{Runtime, Shutdown};

use crate::framing::Framing;
use crate::service::Activity;
use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};

/// A connection's I/O with a staged close. Closing a socket with unread
/// data makes the kernel send a reset, which can destroy the response the
/// client has not read yet; so when hyper shuts the connection down after
/// its last response and the client may still be sending (request bytes
/// are already pending; or, on a connection whose requests it follows, a
/// request's head or body is not all read, requests were read but not
/// answered, or the client pipelines), the write side is shut first, what
/// the client sends is read and discarded until it closes its side or
/// `linger` passes (in the servers of this crate, during a stop, at the
/// latest 25 ms before its deadline), and only then is the socket
/// dropped. Otherwise the connection closes at once, so the process can
/// exit right after its last response (as nginx's `lingering_close
/// auto`): the write side is shut and the socket dropped, or, in the
/// adapters' servers, whose I/O is the socket itself, the socket is just
/// dropped, its close sending the FIN. After a `101` (on I/O that sees
/// the connection's requests, as in `serve_connection` and the adapters'
/// servers) a shutdown is the upgrade handler's, and shuts the write side
/// alone, without a linger: the handler may still read (a half-close), and
/// what the client sends is the handler's to read or to leave.
pub struct Io<I, R: Runtime> {
    inner: I,
    rt: R,
    linger: Duration,
    activity: Option<Arc<Activity>>,
    /// Where the HTTP/1 requests read so far end (`None`: not followed, or
    /// HTTP/2).
    framing: Option<Framing>,
    /// The client sent a request before the previous one was answered: it
    /// pipelines, and its next request may be on its way at the close.
    pipelined: bool,
    /// How many bytes of the HTTP/2 preface the first reads matched, until
    /// they match it whole or differ from it (`None`: done looking).
    preface: Option<usize>,
    /// Dropping the inner I/O closes the connection as shutting its write
    /// side first would (a plain socket): a close that does not linger
    /// leaves the FIN to the drop.
    drop_closes: bool,
    /// The last bytes of a response whose connection hyper hands to an
    /// upgrade at its end, which the socket did not take when hyper wrote
    /// them (see `Tracked`): written out before anything else.
    tail: VecDeque<u8>,
    /// The server whose stop's deadline a linger ends before, if any.
    stop: Option<Shutdown>,
    /// The connection's idleness in its server's registry, told after
    /// each read that finds nothing between requests, if the server can
    /// close an idle connection (see [`Io::idle`]).
    idle: Option<Arc<Idle>>,
    close: Close<R::Sleep>,
}

/// How long before the deadline of its server's stop a linger ends: time
/// for the connection's end to reach the drain before the deadline's timer
/// fires.
const LINGER_DEADLINE_MARGIN: Duration = Duration::from_millis(25);

/// What an HTTP/2 client with prior knowledge sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The most one read takes while its bytes are looked at (every read of an
/// HTTP/1 connection whose framing is followed): as much as hyper's first
/// read, and as the adapters' own staged reads.
const SEEN: usize = 8192;

enum Close<S> {
    Open,
    /// The write side is being shut; then the close lingers, or is done
    /// (`None`: whether it lingers is seen after the shutdown).
    Shutting {
        linger: Option<bool>,
    },
    Lingering(Pin<Box<S>>),
    Done,
}

impl<I, R: Runtime> Io<I, R> {
    /// Wraps `inner`; the close lingers at most `linger`, and only when
    /// request bytes are pending at the close. Without a connection's
    /// activity it cannot tell an upgrade handler's shutdown from hyper's
    /// last one (both may linger): `serve_connection` can.
    pub fn new(inner: I, rt: R, linger: Duration) -> Self {
        Io {
            inner,
            rt,
            linger,
            activity: None,
            framing: None,
            pipelined: false,
            preface: None,
            drop_closes: false,
            tail: VecDeque::new(),
            stop: None,
            idle: None,
            close: Close::Open,
        }
    }

    /// Wraps `inner` for a connection whose requests `activity` sees: the
    /// close also lingers while an HTTP/1 request is not all read, not
    /// answered, or its client pipelines (the bytes read are followed to
    /// where each request ends), or after an HTTP/2 request that came with
    /// a body; and an HTTP/2 connection is known as one from its preface,
    /// before its first request (so it gets its GOAWAY at the trigger even
    /// when idle).
    pub(crate) fn with_activity(
        inner: I,
        rt: R,
        linger: Duration,
        activity: Arc<Activity>,
    ) -> Self {
        Io {
            activity: Some(activity),
            framing: Some(Framing::default()),
            preface: Some(0),
            ..Io::new(inner, rt, linger)
        }
    }

    /// A close that lingers during `server`'s stop ends
    /// [`LINGER_DEADLINE_MARGIN`] before the stop's deadline, if that is
    /// nearer than its limit (it does not linger if that time has passed):
    /// a response already delivered to a client slow to close its side
    /// is not forced work, which would turn a clean stop into a forced one
    /// (exit code 1, the connection named in the report). Not re-timed if
    /// the stop begins while the close already lingers.
    pub(crate) fn linger_within(mut self, server: Shutdown) -> Self {
        self.stop = Some(server);
        self
    }

    /// How long the close lingers: its limit, or until
    /// [`LINGER_DEADLINE_MARGIN`] before the deadline of the server's stop
    /// if that comes first (see [`Io::linger_within`]); `None` if no time
    /// is left.
    fn linger_left(&self) -> Option<Duration> {
        let left = match self.stop.as_ref().and_then(Shutdown::deadline) {
            Some(at) => at
                .saturating_duration_since(self.rt.now())
                .saturating_sub(LINGER_DEADLINE_MARGIN)
                .min(self.linger),
            None => self.linger,
        };
        if left.is_zero() {
            tracing::debug!("a closing connection does not linger: the stop's deadline is near");
        } else if left < self.linger {
            tracing::debug!(
                "a closing connection lingers {left:?}, not {:?}: the stop's deadline is near",
                self.linger
            );
        }
        Some(left).filter(|left| !left.is_zero())
    }

    /// The server may shut the connection down from its registry when its
    /// listener closes, while `idle` says it waits for a next request:
    /// told after each read that finds nothing, with nothing of a request
    /// read and not served, nothing of a response left to write, and no
    /// pipelining, upgrade or HTTP/2. Each read claims the connection while
    /// it runs (see [`Idle::read`]); once it is closed, a read takes
    /// nothing and reports the end of the stream, so hyper ends the
    /// connection as one its client closed between requests, and its close
    /// does not linger: the server already ended it, after its responses,
    /// and bytes that came after its look are not read.
    pub(crate) fn idle(mut self, idle: Option<Arc<Idle>>) -> Self {
        self.idle = idle;
        self
    }

    /// Whether the connection waits for a next request, as
    /// [`Io::idle`] tells it.
    fn between_requests(&self) -> bool {
        let (Some(activity), Some(framing)) = (&self.activity, &self.framing) else {
            return false;
        };
        self.preface.is_none()
            && !framing.is_lost()
            && framing.at_request_end()
            && !self.pipelined
            && self.tail.is_empty()
            && matches!(self.close, Close::Open)
            && activity.requests() > 0
            && activity.is_quiet()
            && !activity.request_waits()
            && !activity.is_http2()
            && !activity.is_upgraded()
            && !activity.is_to_upgrade()
            && !activity.is_ending()
    }

    /// For an inner I/O that is the socket itself: a close that does not
    /// linger leaves the FIN to the socket's drop, which comes right after
    /// (hyper's connection ends with its shutdown; after a `101` the
    /// shutdown is the handler's, and always shuts), instead of shutting
    /// the write side first. That saves a system call per connection and,
    /// on `async-io`, a wake-up of its reactor thread, which the shut
    /// socket's state change sends when its read is awaited. Not for a
    /// layer whose shutdown sends something (TLS's `close_notify`).
    pub(crate) fn drop_closes(mut self, yes: bool) -> Self {
        self.drop_closes = yes;
        self
    }

    /// Whether the client may still be sending, at a close that finds
    /// nothing pending.
    fn may_still_send(&self) -> bool {
        match (&self.activity, &self.framing) {
            (Some(activity), _) if activity.is_http2() => activity.had_body(),
            // A head or a body not all read, or requests read but not
            // served, or a client that pipelines (as nginx's
            // `lingering_close auto`): it may be sending more.
            (Some(activity), Some(framing)) => {
                !framing.at_request_end() || activity.request_waits() || self.pipelined
            }
            _ => false,
        }
    }

    /// The wrapped I/O.
    pub fn get_ref(&self) -> &I {
        &self.inner
    }

    /// Whether the last bytes of a response whose connection hyper hands to
    /// an upgrade are being written: what the socket does not take is
    /// taken into the tail.
    fn ending(&self) -> bool {
        self.activity.as_ref().is_some_and(|a| a.is_ending())
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
        let following = this.framing.as_ref().is_some_and(|f| !f.is_lost())
            && !this.activity.as_ref().is_some_and(|a| a.is_upgraded());
        // Not followed: never told idle (that needs the framing followed),
        // so not closed as idle either.
        if this.preface.is_none() && !following {
            let read = Pin::new(&mut this.inner).poll_read(cx, buf);
            if let (Poll::Ready(_), Some(activity)) = (&read, &this.activity) {
                activity.hear();
            }
            return read;
        }
        // Read through a buffer of our own to see the bytes: the HTTP/2
        // preface first, and where HTTP/1 requests end. On the heap, not
        // the stack: a thread-per-connection adapter would keep the pages
        // of a deeper stack resident for each connection it holds.
        let want = buf.remaining().min(SEEN);
        let mut seen = Vec::with_capacity(want);
        let mut seen = ReadBuf::uninit(&mut seen.spare_capacity_mut()[..want]);
        let inner = &mut this.inner;
        let mut read = || {
            let read = Pin::new(&mut *inner).poll_read(cx, seen.unfilled());
            read.map_ok(|()| seen.filled().len())
        };
        // Once the server closed the idle connection, nothing is read.
        let read = match &this.idle {
            Some(idle) => idle.read(read),
            None => read(),
        };
        if read?.is_pending() {
            if let Some(idle) = this.idle.as_ref().filter(|_| this.between_requests()) {
                idle.set_idle();
            }
            return Poll::Pending;
        }
        let got = seen.filled();
        buf.put_slice(got);
        if let Some(matched) = this.preface {
            let rest = &H2_PREFACE[matched..];
            let n = got.len().min(rest.len());
            this.preface = if got.is_empty() || got[..n] != rest[..n] {
                None
            } else if matched + n == H2_PREFACE.len() {
                if let Some(activity) = &this.activity {
                    activity.mark_http2();
                }
                this.framing = None;
                None
            } else {
                Some(matched + n)
            };
        }
        if let Some(framing) = &mut this.framing {
            let before = framing.heads();
            framing.read(got);
            // Two requests in one read, or one while a response is still
            // in progress.
            let heads = framing.heads() - before;
            let busy = this.activity.as_ref().is_some_and(|a| a.in_flight() > 0);
            this.pipelined |= heads > 1 || (heads > 0 && busy);
            if let Some(activity) = &this.activity {
                activity.set_heads(framing.heads(), framing.in_head());
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: Read + Unpin, R: Runtime> Io<I, R> {
    /// Whether the close lingers: a linger is set and the client may still
    /// be sending (bytes are pending, or, with nothing pending, by what it
    /// sent so far). Discards the bytes it reads.
    fn should_linger(&mut self, cx: &mut Context<'_>) -> bool {
        // Closed as idle by the server: its client was sent the end with
        // every response whole, and saw nothing of what came after.
        let closed_idle = self.idle.as_ref().is_some_and(|idle| idle.is_closed());
        !self.linger.is_zero()
            && !closed_idle
            && match discard(&mut self.inner, cx) {
                Poll::Ready(Some(true)) => true,
                // It closed its side, or the socket failed.
                Poll::Ready(_) => false,
                Poll::Pending => self.may_still_send(),
            }
    }
}

impl<I: Write + Unpin, R: Runtime> Io<I, R> {
    /// Writes out the tail: `Ready(Ok)` once none is left.
    fn poll_tail(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.tail.is_empty() {
            let (front, _) = self.tail.as_slices();
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, front))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.tail.drain(..n);
        }
        Poll::Ready(Ok(()))
    }

    /// Writes `bufs` with `write` after the tail; while ending, takes into
    /// the tail what the socket does not take now.
    fn poll_write_with(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
        write: impl FnOnce(Pin<&mut I>, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let written = match self.poll_tail(cx) {
            Poll::Ready(Ok(())) => write(Pin::new(&mut self.inner), cx),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        };
        if written.is_pending() && self.ending() {
            let mut len = 0;
            for buf in bufs {
                self.tail.extend(buf.iter());
                len += buf.len();
            }
            return Poll::Ready(Ok(len));
        }
        self.note_write(written.is_pending());
        written
    }
}

impl<I: Read + Write + Unpin, R: Runtime> Write for Io<I, R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let slices = [io::IoSlice::new(buf)];
        self.get_mut()
            .poll_write_with(cx, &slices, |inner, cx| inner.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_write_with(cx, bufs, |inner, cx| inner.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // hyper flushes once it wrote everything it held: a response's end
        // is now in the socket or the tail, and what is written next (by a
        // handler holding the connection) waits for the socket again.
        if let Some(activity) = &this.activity {
            activity.end_written();
        }
        let flushed = match this.poll_tail(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        };
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
        ready!(this.poll_tail(cx))?;
        // After a `101` the connection is its handler's, and so is this
        // shutdown: the write side alone, at once, whenever the handler
        // drops the stream later. The handler may go on reading (a
        // half-close), so nothing the client sends is discarded here, and
        // the close does not linger.
        if this.activity.as_ref().is_some_and(|a| a.is_upgraded()) {
            return Pin::new(&mut this.inner).poll_shutdown(cx);
        }
        loop {
            match &mut this.close {
                Close::Open => {
                    this.close = match this.drop_closes {
                        // A socket: whether to linger first, as a close at
                        // once needs no shutdown.
                        true => match this.should_linger(cx) {
                            true => Close::Shutting { linger: Some(true) },
                            false => Close::Done,
                        },
                        // A layer may take a while to shut (TLS flushing
                        // its `close_notify`): shut first, then look at
                        // what came meanwhile too.
                        false => Close::Shutting { linger: None },
                    };
                }
                Close::Shutting { linger } => {
                    let linger = *linger;
                    ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
                    let left = match linger.unwrap_or_else(|| this.should_linger(cx)) {
                        true => this.linger_left(),
                        false => None,
                    };
                    this.close = match left {
                        Some(left) => Close::Lingering(Box::pin(this.rt.sleep(left))),
                        None => Close::Done,
                    };
                }
                Close::Lingering(timer) => {
                    // The timer first: a client that keeps sending cannot
                    // hold the linger past its limit.
                    if timer.as_mut().poll(cx).is_ready() {
                        this.close = Close::Done;
                        continue;
                    }
                    let mut reads = 0;
                    while reads < LINGER_READS_PER_POLL {
                        match ready!(discard(&mut this.inner, cx)) {
                            Some(true) => reads += 1,
                            // It closed its side, or the socket failed.
                            _ => break,
                        }
                    }
                    if reads < LINGER_READS_PER_POLL {
                        this.close = Close::Done;
                        continue;
                    }
                    // Nor can it hold the thread: the task yields, woken
                    // to go on (a runtime may have no budget of its own).
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Close::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl<I, R: Runtime> Io<I, R> {
    /// Whether the connection's close is still to be done, or to be
    /// finished (its shut or its linger begun), and it was not switched
    /// (by a `101`).
    fn unclosed(&self) -> bool {
        !matches!(self.close, Close::Done)
            && !self.activity.as_ref().is_some_and(|a| a.is_upgraded())
    }

    /// An orphaned I/O (see [`Orphanable`]) back with its activity, for
    /// its close.
    pub(crate) fn adopted(mut self, activity: Arc<Activity>) -> Self {
        self.activity = Some(activity);
        self
    }
}

/// An [`Io`] that, dropped before its close (see [`Io::unclosed`]) while
/// the connection's driver is there, is left with the connection's
/// activity for the driver to close. hyper ends an HTTP/1 connection whose
/// request asked for an upgrade (`Upgrade:`) by handing its I/O to that
/// upgrade instead of shutting it, even when the answer switched nothing;
/// nobody takes it, and it is dropped: no linger for a body not all read,
/// no TLS `close_notify`. The driver does the close hyper skipped. (The
/// write-out hyper skipped is the tail's, see `Tracked`.) So it does when
/// the connection is dropped with its close begun (lingering): the driver
/// finishes it, rather than the drop resetting the client. An I/O dropped
/// once the driver is gone (see `Activity::abandon`) is not kept: it closes
/// as it is dropped.
pub(crate) struct Orphanable<I: Send + 'static, R: Runtime> {
    io: Option<Io<I, R>>,
}

impl<I: Send + 'static, R: Runtime> Orphanable<I, R> {
    pub(crate) fn new(io: Io<I, R>) -> Self {
        Orphanable { io: Some(io) }
    }
}

impl<I: Send + 'static, R: Runtime> Drop for Orphanable<I, R> {
    fn drop(&mut self) {
        if let Some(mut io) = self.io.take().filter(Io::unclosed) {
            // Kept without its activity, which keeps it: no cycle.
            if let Some(activity) = io.activity.take() {
                activity.orphan(Box::new(io));
            }
        }
    }
}

impl<I: Send + Unpin + 'static, R: Runtime> Orphanable<I, R> {
    fn io(&mut self) -> Pin<&mut Io<I, R>> {
        Pin::new(self.io.as_mut().expect("taken only as it is dropped"))
    }
}

// As `Io`: nothing inside is pinned structurally.
impl<I: Send + Unpin + 'static, R: Runtime> Unpin for Orphanable<I, R> {}

impl<I: Read + Send + Unpin + 'static, R: Runtime> Read for Orphanable<I, R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().io().poll_read(cx, buf)
    }
}

impl<I: Read + Write + Send + Unpin + 'static, R: Runtime> Write for Orphanable<I, R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().io().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().io().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().io().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().io().poll_shutdown(cx)
    }
}

/// The most reads (of 1 KiB each) a lingering close makes in one poll.
const LINGER_READS_PER_POLL: usize = 64;

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

    use hyper::rt::{Read, ReadBuf, Write};

    use super::Io;
    use crate::service::Activity;
    use crate::test_support::{DueTimers, NoTimers, Stream};
    use std::future::Future;

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

    /// While a response's last bytes are written, what the socket does not
    /// take goes to the tail, in order, ahead of later writes; hyper's next
    /// flush ends that (it wrote everything it held), and writes wait for
    /// the socket again; the tail is written out before the shutdown.
    #[test]
    fn the_end_of_a_response_is_taken_until_hypers_next_flush() {
        let mut cx = Context::from_waker(Waker::noop());
        let activity = Arc::new(Activity::default());
        let stream = Stream::default();
        let mut io = Io::with_activity(stream.clone(), NoTimers, Duration::ZERO, activity.clone());
        stream.wire().write_blocks = true;
        assert!(pin!(&mut io).poll_write(&mut cx, b"held").is_pending());
        activity.set_ending();
        assert!(matches!(
            pin!(&mut io).poll_write(&mut cx, b"0\r\n"),
            std::task::Poll::Ready(Ok(3))
        ));
        let slices = [std::io::IoSlice::new(b"\r"), std::io::IoSlice::new(b"\n")];
        assert!(matches!(
            pin!(&mut io).poll_write_vectored(&mut cx, &slices),
            std::task::Poll::Ready(Ok(2))
        ));
        // hyper's flush: the socket still takes nothing.
        assert!(pin!(&mut io).poll_flush(&mut cx).is_pending());
        assert!(
            pin!(&mut io).poll_write(&mut cx, b"more").is_pending(),
            "taken after hyper's flush"
        );
        stream.wire().write_blocks = false;
        assert!(pin!(&mut io).poll_shutdown(&mut cx).is_ready());
        assert_eq!(stream.wire().written, b"0\r\n\r\n");
        assert_eq!(stream.wire().shutdowns, 1);
    }

    /// Reads everything the client sent so far through `io`, as hyper
    /// does, then shuts it: whether the close is done at once (rather than
    /// lingering, which never ends here: no timer fires, and the client
    /// neither sends more nor closes).
    fn closes_at_once(io: &mut Io<Stream, NoTimers>, sent: &[&[u8]]) -> bool {
        read_all(io, sent);
        let mut cx = Context::from_waker(Waker::noop());
        pin!(io).poll_shutdown(&mut cx).is_ready()
    }

    /// Reads each part of `sent` through `io` as hyper does, and after
    /// each serves every request whose head was read whole.
    fn read_all<R: graceful_core::Runtime>(io: &mut Io<Stream, R>, sent: &[&[u8]]) {
        let mut cx = Context::from_waker(Waker::noop());
        for bytes in sent {
            io.get_ref().wire().to_read.extend(bytes.iter());
            let mut buf = [0u8; 4096];
            let mut buf = ReadBuf::new(&mut buf);
            while pin!(&mut *io).poll_read(&mut cx, buf.unfilled()).is_ready() {}
            if let (Some(activity), Some(framing)) = (&io.activity, &io.framing) {
                while activity.requests() < framing.heads() {
                    activity.request();
                }
            }
        }
    }

    fn http1() -> Io<Stream, NoTimers> {
        http1_with(Arc::default())
    }

    fn http1_with(activity: Arc<Activity>) -> Io<Stream, NoTimers> {
        Io::with_activity(
            Stream::default(),
            NoTimers,
            Duration::from_secs(1),
            activity,
        )
    }

    /// Counts its wake-ups.
    #[derive(Default)]
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// A client that keeps sending while the close lingers does not hold
    /// the thread: each poll of the close discards a bounded amount, then
    /// yields, its task woken to go on; the linger goes on until the
    /// client stops (or the linger's limit).
    #[test]
    fn a_lingering_close_yields_while_the_client_keeps_sending() {
        let mut io = http1();
        read_all(
            &mut io,
            &[b"POST / HTTP/1.1\r\ncontent-length: 9999999\r\n\r\n"],
        );
        let flood = 4 << 20;
        io.get_ref()
            .wire()
            .to_read
            .extend(std::iter::repeat_n(b'x', flood));
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut polls = 0;
        while !io.get_ref().wire().to_read.is_empty() {
            assert!(pin!(&mut io).poll_shutdown(&mut cx).is_pending());
            polls += 1;
        }
        let woken = wakes.0.load(std::sync::atomic::Ordering::SeqCst);
        assert!(polls > 1, "{flood} bytes discarded in one poll");
        // Each poll but the last yielded (the last found nothing more to
        // read, and waits for the socket).
        assert_eq!(
            woken,
            polls - 1,
            "a poll that yielded did not wake its task"
        );
        // Nothing more sent: still lingering, waiting for the client.
        assert!(pin!(&mut io).poll_shutdown(&mut cx).is_pending());
        assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), woken);
    }

    /// The linger ends at its limit (`ServeConfig::linger`) however the
    /// client behaves: one that never closes its side, and one that keeps
    /// sending (the timer is looked at first, before anything is read).
    #[test]
    fn a_linger_ends_at_its_limit_whatever_the_client_does() {
        for keeps_sending in [false, true] {
            let due = DueTimers::default();
            let activity = Arc::new(Activity::default());
            let linger = Duration::from_millis(500);
            let mut io = Io::with_activity(Stream::default(), due.clone(), linger, activity);
            let mut cx = Context::from_waker(Waker::noop());
            read_all(
                &mut io,
                &[b"POST / HTTP/1.1\r\ncontent-length: 9999999\r\n\r\n"],
            );
            // The body is not all read: the close lingers.
            assert!(pin!(&mut io).poll_shutdown(&mut cx).is_pending());
            assert!(pin!(&mut io).poll_shutdown(&mut cx).is_pending());
            due.set();
            if keeps_sending {
                let more = std::iter::repeat_n(b'x', 1 << 20);
                io.get_ref().wire().to_read.extend(more);
            }
            assert!(
                pin!(&mut io).poll_shutdown(&mut cx).is_ready(),
                "lingering past its limit (keeps sending: {keeps_sending})"
            );
            // Nothing was read once the limit had come.
            let left = io.get_ref().wire().to_read.len();
            assert_eq!(left, if keeps_sending { 1 << 20 } else { 0 });
        }
    }

    /// During a stop, a linger ends 25 ms before the deadline, and does
    /// not begin when less than that is left: a stop whose deadline is
    /// 20 ms away closes at once a connection whose body is not all read;
    /// one 10 s away lingers.
    #[test]
    fn a_linger_does_not_begin_with_no_time_left_before_the_deadline() {
        for (timeout, lingers) in [(20, false), (10_000, true)] {
            let server = graceful_core::Shutdown::new();
            let _conn = server.guard();
            server.trigger(graceful_core::Reason::requested());
            let mut cx = Context::from_waker(Waker::noop());
            let timeout = Duration::from_millis(timeout);
            let mut drain = pin!(server.enforce_deadline(&NoTimers, timeout));
            assert!(drain.as_mut().poll(&mut cx).is_pending());
            assert!(server.deadline().is_some());
            let activity = Arc::new(Activity::default());
            let linger = Duration::from_secs(60);
            let mut io = Io::with_activity(Stream::default(), NoTimers, linger, activity)
                .linger_within(server.clone());
            read_all(&mut io, &[b"POST / HTTP/1.1\r\ncontent-length: 9\r\n\r\n"]);
            let closed = pin!(&mut io).poll_shutdown(&mut cx).is_ready();
            assert_eq!(closed, !lingers, "deadline {timeout:?} away");
        }
    }

    #[test]
    fn the_close_lingers_only_while_the_client_may_still_send() {
        let head = b"POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\n".as_slice();
        assert!(closes_at_once(&mut http1(), &[b"GET / HTTP/1.1\r\n\r\n"]));
        assert!(closes_at_once(&mut http1(), &[head, b"hel", b"lo"]));
        assert!(!closes_at_once(&mut http1(), &[head, b"hel"]));
        assert!(!closes_at_once(&mut http1(), &[head]));
        // Half a head: the client is still sending.
        assert!(!closes_at_once(&mut http1(), &[b"GET / HTTP/1.1\r\nho"]));
        let chunked = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n".as_slice();
        assert!(closes_at_once(
            &mut http1(),
            &[chunked, b"2\r\nhi\r\n0\r\n\r\n"]
        ));
        assert!(!closes_at_once(&mut http1(), &[chunked, b"2\r\nhi\r\n"]));
        // Requests one after the other; two sent at once (pipelined).
        let get = b"GET / HTTP/1.1\r\n\r\n".as_slice();
        assert!(closes_at_once(&mut http1(), &[get, get]));
        assert!(!closes_at_once(&mut http1(), &[&[get, get].concat()]));
        // Bytes it cannot follow: it lingers, as when in doubt.
        assert!(!closes_at_once(&mut http1(), &[b"\x16\x03\x01\x00"]));
        // After a `101`, what follows is not HTTP, and the shutdown is the
        // handler's: it shuts the write side at once.
        let upgrade = b"GET / HTTP/1.1\r\nupgrade: echo\r\n\r\n".as_slice();
        assert!(!closes_at_once(&mut http1(), &[upgrade, b"hello\n"]));
        let activity = Arc::new(Activity::default());
        let mut upgraded = http1_with(activity.clone());
        // (The client may send before the `101` is written.)
        read_all(&mut upgraded, &[upgrade, b"hello\n"]);
        activity.mark_upgraded();
        assert!(closes_at_once(&mut upgraded, &[b"world\n"]));
        // HTTP/2: it lingers only once a request came with a body.
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0".as_slice();
        assert!(closes_at_once(&mut http1(), &[h2]));
        let activity = Arc::new(Activity::default());
        activity.mark_body();
        assert!(!closes_at_once(&mut http1_with(activity), &[h2]));
        // Without a connection's activity, only bytes pending count.
        let mut plain = Io::new(Stream::default(), NoTimers, Duration::from_secs(1));
        assert!(closes_at_once(&mut plain, &[head]));
    }

    /// `io` with an idleness, after reading `sent` as hyper does, serving
    /// each request, then once more (finding nothing).
    fn read_to_idle(
        io: Io<Stream, NoTimers>,
        sent: &[&[u8]],
    ) -> (Io<Stream, NoTimers>, Arc<graceful_core::server::Idle>) {
        let idle = Arc::new(graceful_core::server::Idle::default());
        let mut io = io.idle(Some(idle.clone()));
        read_all(&mut io, sent);
        let mut cx = Context::from_waker(Waker::noop());
        let mut buf = [0u8; 64];
        let mut buf = ReadBuf::new(&mut buf);
        assert!(pin!(&mut io)
            .poll_read(&mut cx, buf.unfilled())
            .is_pending());
        (io, idle)
    }

    /// Whether the connection was told idle after reading `sent`.
    fn told_idle(io: Io<Stream, NoTimers>, sent: &[&[u8]]) -> bool {
        read_to_idle(io, sent).1.close()
    }

    #[test]
    fn a_connection_is_told_idle_only_between_whole_requests_served() {
        let get = b"GET / HTTP/1.1\r\n\r\n".as_slice();
        let head = b"POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\n".as_slice();
        assert!(told_idle(http1(), &[get]));
        assert!(told_idle(http1(), &[get, get]));
        assert!(told_idle(http1(), &[head, b"hello"]));
        assert!(!told_idle(http1(), &[]), "before a first request");
        assert!(
            !told_idle(http1(), &[b"GET / HTTP/1.1\r\nho"]),
            "half a head"
        );
        assert!(!told_idle(http1(), &[head, b"hel"]), "half a body");
        assert!(!told_idle(http1(), &[&[get, get].concat()]), "pipelined");
        assert!(!told_idle(http1(), &[b"\x16\x03\x01\x00"]), "not followed");
        let h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0".as_slice();
        assert!(!told_idle(http1(), &[h2]), "HTTP/2");
        let activity = Arc::new(Activity::default());
        activity.mark_upgraded();
        assert!(!told_idle(http1_with(activity), &[get]), "upgraded");
        // A response in progress, or held unwritten.
        let activity = Arc::new(Activity::default());
        activity.set_write_blocked(true);
        assert!(!told_idle(http1_with(activity), &[get]), "not quiet");
    }

    /// Once the server closed the idle connection, a read takes nothing of
    /// what the client sent since, and reports the end of the stream.
    #[test]
    fn a_read_of_a_connection_closed_as_idle_takes_nothing() {
        let (mut io, idle) = read_to_idle(http1(), &[b"GET / HTTP/1.1\r\n\r\n"]);
        assert!(idle.close());
        let mut cx = Context::from_waker(Waker::noop());
        let mut buf = [0u8; 64];
        let mut buf = ReadBuf::new(&mut buf);
        io.get_ref()
            .wire()
            .to_read
            .extend(b"GET /next HTTP/1.1\r\n\r\n");
        assert!(matches!(
            pin!(&mut io).poll_read(&mut cx, buf.unfilled()),
            std::task::Poll::Ready(Ok(()))
        ));
        assert!(buf.filled().is_empty(), "a request was read");
        assert_eq!(io.get_ref().wire().to_read.len(), 22);
    }

    /// A close at once of an adapter's socket leaves the FIN to its drop: no
    /// write-side shutdown. One that lingers shuts the write side first,
    /// as does every close of I/O that may be a layer of its own (TLS).
    #[test]
    fn only_a_lingering_close_or_a_layered_io_shuts_the_write_side() {
        let get = b"GET / HTTP/1.1\r\n\r\n".as_slice();
        let head = b"POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\n".as_slice();
        for (drop_closes, sent, at_once, shutdowns) in [
            (true, get, true, 0),
            (true, head, false, 1),
            (false, get, true, 1),
            (false, head, false, 1),
        ] {
            let mut io = http1().drop_closes(drop_closes);
            assert_eq!(closes_at_once(&mut io, &[sent]), at_once);
            let done = io.get_ref().wire().shutdowns;
            assert_eq!(
                done, shutdowns,
                "drop_closes {drop_closes}, lingering {}",
                !at_once
            );
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut zero =
            Io::with_activity(Stream::default(), NoTimers, Duration::ZERO, Arc::default())
                .drop_closes(true);
        read_all(&mut zero, &[head]);
        assert!(
            pin!(&mut zero).poll_shutdown(&mut cx).is_ready(),
            "no linger"
        );
        assert_eq!(zero.get_ref().wire().shutdowns, 0);
    }

    /// After a `101` a shutdown is the upgrade handler's: it shuts the write
    /// side at once, with bytes pending and the socket dropped later, and
    /// leaves what the client sent for the handler to read (a half-close).
    #[test]
    fn an_upgraded_connections_shutdown_shuts_the_write_side_and_keeps_what_the_client_sent() {
        let mut cx = Context::from_waker(Waker::noop());
        let activity = Arc::new(Activity::default());
        let mut io = http1_with(activity.clone()).drop_closes(true);
        read_all(&mut io, &[b"GET / HTTP/1.1\r\nupgrade: echo\r\n\r\n"]);
        activity.mark_upgraded();
        io.get_ref().wire().to_read.extend(b"still sending");
        assert!(pin!(&mut io).poll_shutdown(&mut cx).is_ready());
        assert_eq!(io.get_ref().wire().shutdowns, 1);
        let mut buf = [0u8; 64];
        let mut buf = ReadBuf::new(&mut buf);
        assert!(pin!(&mut io).poll_read(&mut cx, buf.unfilled()).is_ready());
        assert_eq!(buf.filled(), b"still sending");
    }

    /// I/O that may be a layer of its own (TLS) is shut before the close
    /// looks for bytes pending: what the client sent meanwhile makes it
    /// linger.
    #[test]
    fn a_layered_io_looks_for_bytes_pending_after_its_shutdown() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut io = http1();
        read_all(&mut io, &[b"GET / HTTP/1.1\r\n\r\n"]);
        io.get_ref().wire().sent_during_shutdown = b"GET /late HTTP/1.1\r\n".to_vec();
        assert!(
            pin!(&mut io).poll_shutdown(&mut cx).is_pending(),
            "it lingers"
        );
        assert_eq!(io.get_ref().wire().shutdowns, 1);
    }
}
