//! What the crate's unit tests share.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};

/// A runtime whose timers never fire and that runs nothing: for driving a
/// connection by hand, where no grace or linger is meant to end.
#[derive(Clone)]
pub(crate) struct NoTimers;

impl graceful_core::Runtime for NoTimers {
    type Sleep = std::future::Pending<()>;
    fn sleep(&self, _: Duration) -> Self::Sleep {
        std::future::pending()
    }
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, _: F) {
        unreachable!("an HTTP/1 connection spawns nothing")
    }
    fn block_on<F: Future>(&self, _: F) -> F::Output {
        unreachable!("not used")
    }
}

/// A runtime whose timers all come due once it is [`set`](Self::set)
/// (from the start, made with [`now`](Self::now)), and that runs nothing.
#[derive(Clone, Default)]
pub(crate) struct DueTimers(Arc<std::sync::atomic::AtomicBool>);

impl DueTimers {
    /// Timers due from the start.
    pub(crate) fn now() -> DueTimers {
        let due = DueTimers::default();
        due.set();
        due
    }

    /// Makes every timer, armed or to come, due.
    pub(crate) fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl graceful_core::Runtime for DueTimers {
    type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;
    fn sleep(&self, _: Duration) -> Self::Sleep {
        let due = self.0.clone();
        Box::pin(std::future::poll_fn(move |_| {
            match due.load(std::sync::atomic::Ordering::SeqCst) {
                true => Poll::Ready(()),
                false => Poll::Pending,
            }
        }))
    }
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, _: F) {
        unreachable!("an HTTP/1 connection spawns nothing")
    }
    fn block_on<F: Future>(&self, _: F) -> F::Output {
        unreachable!("not used")
    }
}

/// A client's side of a connection, driven by hand: what it sent (read
/// until empty, then `Pending`), what the server wrote, and whether a
/// write or a flush blocks (a TLS stream takes the bytes at once and
/// blocks in its flush).
#[derive(Default)]
pub(crate) struct Wire {
    pub(crate) to_read: VecDeque<u8>,
    pub(crate) written: Vec<u8>,
    pub(crate) write_blocks: bool,
    pub(crate) flush_blocks: bool,
    /// How often the server shut its write side.
    pub(crate) shutdowns: usize,
    /// Bytes the client sends while the server shuts its write side.
    pub(crate) sent_during_shutdown: Vec<u8>,
    /// Bytes that arrived but that reads do not see yet (a reactor that
    /// has not reported them); the socket's peek does.
    pub(crate) unreported: Vec<u8>,
    /// The shutdowns of the socket from its server's registry.
    pub(crate) cut: Vec<std::net::Shutdown>,
}

/// A stream over a shared [`Wire`].
#[derive(Clone, Default)]
pub(crate) struct Stream(pub(crate) Arc<Mutex<Wire>>);

impl Stream {
    /// A stream on which the client has sent `bytes`.
    pub(crate) fn sent(bytes: &[u8]) -> Stream {
        let stream = Stream::default();
        stream.wire().to_read.extend(bytes);
        stream
    }

    pub(crate) fn wire(&self) -> std::sync::MutexGuard<'_, Wire> {
        self.0.lock().unwrap()
    }
}

/// The stream as its connection's socket: shutting it is recorded (and
/// changes nothing else); its peek sees the bytes not reported yet.
impl graceful_core::server::SharedSocket for Stream {
    fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        self.wire().cut.push(how);
        Ok(())
    }

    fn has_pending_input(&self) -> bool {
        !self.wire().unreported.is_empty()
    }
}

impl Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let mut wire = self.wire();
        let n = wire.to_read.len().min(buf.remaining());
        if n == 0 {
            return Poll::Pending;
        }
        let bytes: Vec<u8> = wire.to_read.drain(..n).collect();
        buf.put_slice(&bytes);
        Poll::Ready(Ok(()))
    }
}

impl Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut wire = self.wire();
        if wire.write_blocks {
            return Poll::Pending;
        }
        wire.written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.wire().flush_blocks {
            true => Poll::Pending,
            false => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut wire = self.wire();
        wire.shutdowns += 1;
        let sent = std::mem::take(&mut wire.sent_during_shutdown);
        wire.to_read.extend(sent);
        Poll::Ready(Ok(()))
    }
}

/// Answers each request with its path and a line feed.
pub(crate) fn path_service() -> impl crate::HttpService {
    hyper::service::service_fn(|r: http::Request<hyper::body::Incoming>| async move {
        let body = format!("{}\n", r.uri().path());
        let body = http_body_util::Full::new(hyper::body::Bytes::from(body));
        Ok::<_, std::convert::Infallible>(http::Response::new(body))
    })
}

/// Asserts that `wire`'s connection answered `/second` after `/first`,
/// whole and with `Connection: close`, and `ended` after it.
pub(crate) fn assert_second_served_with_close(wire: &Stream, ended: bool) {
    let out = String::from_utf8_lossy(&wire.wire().written).into_owned();
    let second = out.split("/first\n").nth(1).unwrap_or_default();
    assert!(second.starts_with("HTTP/1.1 200"), "{out}");
    let head = second.to_ascii_lowercase();
    assert!(head.contains("connection: close"), "{out}");
    assert!(second.ends_with("/second\n"), "{out}");
    assert!(ended, "open after its response");
}
