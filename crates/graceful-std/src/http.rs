//! HTTP/1.1 and HTTP/2 (h2c) on hyper 1.x, each connection on a thread
//! while it is busy: see [`serve`].
//!
//! hyper's connection state machine runs on the connection's thread, with
//! the socket non-blocking: when it would block, the thread waits in
//! `poll(2)` for that socket or a wake-up (a timer, the stop), so the
//! connection winds down at the stop exactly as on the async adapters. A
//! connection idle for 10 ms gives its thread back and waits in the
//! runtime's parking thread instead (on Linux; see [`Runtime`]).
//! HTTP/2 works the same way; each of its streams is a spawned task of its
//! own, which runs on a thread while it is busy. A connection costs one
//! descriptor, its socket: on Linux a waiting thread is woken by a signal
//! sent to it alone (SIGURG, which the thread keeps blocked outside its
//! wait; threads it starts inherit that mask), elsewhere by a socket pair
//! of the thread's own.

use std::fmt;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use graceful_core::server::ConnTrack;
use nix::poll::PollFlags;

pub use graceful_http::{HttpBody, HttpService, Readiness};

use crate::listener::Listener;
use crate::reactor;
use crate::Runtime;

graceful_http::http_serve_functions! {
    listener: Listener::new,
    runtime: Runtime::new()?,
    timer: Timer,
    io: HttpIo::new,
    serve;
    /// `rt` must run its tasks with [`Runtime`]'s `spawn` and `block_on`
    /// (a wrapper that delegates to them, as the conformance suite's
    /// manual clock does): a connection waits for its socket and hyper's
    /// timers in that `block_on`, and nothing else wakes it.
    serve_on;
}

/// One HTTP connection's socket as hyper drives it: non-blocking, waited
/// for by the thread that polls it. Carries the connection's guard.
struct HttpIo {
    socket: Arc<TcpStream>,
    _track: ConnTrack,
}

impl HttpIo {
    fn new(socket: Arc<TcpStream>, track: ConnTrack) -> HttpIo {
        if let Err(e) = socket.set_nonblocking(true) {
            // Blocking reads still serve the connection; they just cannot
            // be interrupted by anything but the registry's shutdown.
            tracing::warn!("connection {}: {e}", track.peer_addr());
        }
        HttpIo {
            socket,
            _track: track,
        }
    }

    fn poll_io<T>(
        &self,
        cx: &Context<'_>,
        flags: PollFlags,
        op: impl FnMut(&TcpStream) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        reactor::poll_io(&self.socket, cx, flags, op)
    }
}

impl hyper::rt::Read for HttpIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        graceful_http::poll_read_staged(buf, |chunk| {
            self.poll_io(cx, PollFlags::POLLIN, |mut s| s.read(chunk))
        })
    }
}

impl hyper::rt::Write for HttpIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_io(cx, PollFlags::POLLOUT, |mut s| s.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_io(cx, PollFlags::POLLOUT, |mut s| s.write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.socket.shutdown(std::net::Shutdown::Write))
    }
}

impl fmt::Debug for HttpIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpIo")
            .field("peer", &self.socket.peer_addr().ok())
            .finish()
    }
}

/// hyper's timers (header read timeout, keep-alive), kept by the thread
/// that polls them: its own wait ends at the earliest (no timer thread).
#[derive(Clone, Copy, Debug)]
struct Timer;

impl hyper::rt::Timer for Timer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Sleep {
            id: reactor::timer_id(),
            deadline,
        })
    }
}

struct Sleep {
    id: u64,
    deadline: Instant,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        reactor::wait_until(self.id, self.deadline, cx);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        reactor::cancel_timer(self.id);
    }
}

impl hyper::rt::Sleep for Sleep {}
