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
use crate::reactor::{self, Socket};
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
    waiter: Socket,
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
            waiter: socket.clone(),
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
        poll_io(&self.socket, &self.waiter, cx, flags, op)
    }
}

/// Runs `op` on `socket`; when it would block, has this thread wait for
/// `flags` (through `waiter`, the same socket) and returns `Pending`. While
/// this thread still waits for that, `op` is not tried: a connection woken
/// for something else (a timer, the stop) makes no failed system call.
fn poll_io<T>(
    socket: &TcpStream,
    waiter: &Socket,
    cx: &Context<'_>,
    flags: PollFlags,
    mut op: impl FnMut(&TcpStream) -> io::Result<T>,
) -> Poll<io::Result<T>> {
    if reactor::still_waiting(waiter, flags) {
        reactor::wait(waiter, flags, cx);
        return Poll::Pending;
    }
    loop {
        match op(socket) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                reactor::wait(waiter, flags, cx);
                return Poll::Pending;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            done => return Poll::Ready(done),
        }
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

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    use std::task::Poll;
    use std::time::Duration;

    use nix::poll::PollFlags;

    use super::poll_io;
    use crate::reactor::{self, Socket};

    /// A connected client, and the server's side, non-blocking, with its
    /// reactor handle.
    fn pair() -> (TcpStream, Arc<TcpStream>, Socket) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let server = Arc::new(server);
        let waiter: Socket = server.clone();
        (client, server, waiter)
    }

    /// A read that would block is not tried again while the thread still
    /// waits for the socket, however often the future is polled; once the
    /// wait sees it readable, it is read.
    #[test]
    fn a_read_that_would_block_is_tried_again_only_once_the_socket_is_ready() {
        let (mut client, server, waiter) = pair();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let reads = AtomicUsize::new(0);
            let mut polls = 0;
            let got = reactor::block_on(std::future::poll_fn(|cx| {
                polls += 1;
                let mut buf = [0u8; 8];
                let read = poll_io(&server, &waiter, cx, PollFlags::POLLIN, |mut s| {
                    reads.fetch_add(1, SeqCst);
                    s.read(&mut buf)
                });
                match read {
                    Poll::Ready(n) => Poll::Ready(n.unwrap()),
                    // Woken for something else, five times over; then
                    // the data comes.
                    Poll::Pending if polls <= 5 => {
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    Poll::Pending => {
                        if polls == 6 {
                            client.write_all(b"hi").unwrap();
                        }
                        Poll::Pending
                    }
                }
            }));
            tx.send((got, reads.load(SeqCst), polls)).unwrap();
        });
        let (got, reads, polls) = rx.recv_timeout(Duration::from_secs(10)).expect("hung");
        assert_eq!(got, 2);
        assert_eq!(polls, 7);
        assert_eq!(
            reads, 2,
            "the read that would block, then the one that read"
        );
    }

    /// A thread woken over and over (a task that yields at every poll)
    /// still reads what comes: each wake-up is followed by a look at the
    /// sockets, which sees the data.
    #[test]
    fn a_thread_woken_at_every_poll_still_reads_what_comes() {
        let (mut client, server, waiter) = pair();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut polls = 0;
            let got = reactor::block_on(std::future::poll_fn(|cx| {
                polls += 1;
                if polls == 3 {
                    client.write_all(b"hi").unwrap();
                }
                let mut buf = [0u8; 8];
                match poll_io(&server, &waiter, cx, PollFlags::POLLIN, |mut s| {
                    s.read(&mut buf)
                }) {
                    Poll::Ready(n) => Poll::Ready(n.unwrap()),
                    Poll::Pending => {
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                }
            }));
            tx.send(got).unwrap();
        });
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the data was never read");
        assert_eq!(got, 2);
    }
}
