use std::io::{self, IoSliceMut, Read};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use async_io::Async;

/// An accepted socket on `async-io`'s reactor, shared between its
/// [`Stream`] and the server's registry of connections.
///
/// Reads ask the kernel only when the socket may have something to read:
/// not after a read that would block, until the reactor reports the socket
/// readable. `async-io`'s own reads try the kernel on every poll, so a
/// task polled again for another reason (a stop, a timer, its writes) paid
/// a failed `recv` each time.
pub(crate) struct Socket {
    io: Async<TcpStream>,
    readable: Arc<Readable>,
}

/// The waker the reactor holds for a socket's reads: it records that the
/// reactor saw the socket readable, then wakes the reading task. (The
/// reactor's own "ready since registered" answer can miss an event that
/// came in the reactor tick of the registration, and ask for a second
/// one: being woken is the surer sign.)
///
/// Invariant: `may_read` is cleared before a read is tried and set before
/// the task is woken, and a task that found it clear registers its waker
/// and then reads it again before it returns `Pending`: a readiness
/// reported at any point is either read by the task or wakes it.
struct Readable {
    may_read: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Readable {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.may_read.store(true, SeqCst);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            task.wake();
        }
    }
}

impl Socket {
    pub(crate) fn new(stream: TcpStream) -> io::Result<Socket> {
        Ok(Socket {
            io: Async::new(stream)?,
            readable: Arc::new(Readable {
                may_read: AtomicBool::new(true),
                task: Mutex::new(None),
            }),
        })
    }

    /// Reads with `read` if the socket may be readable; otherwise, or when
    /// it would block, has the reactor wake `cx`'s task once it is.
    fn poll_read_with<T>(
        &self,
        cx: &mut Context<'_>,
        mut read: impl FnMut(&TcpStream) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        let readable = &self.readable;
        loop {
            if readable.may_read.swap(false, SeqCst) {
                match read(self.io.get_ref()) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    result => {
                        // More may be there: the next read tries.
                        readable.may_read.store(true, SeqCst);
                        return Poll::Ready(result);
                    }
                }
            }
            {
                let mut task = readable.task.lock().unwrap_or_else(|p| p.into_inner());
                match &mut *task {
                    Some(task) => task.clone_from(cx.waker()),
                    None => *task = Some(cx.waker().clone()),
                }
            }
            // The same waker every time, so polling again only checks it.
            let waker = Waker::from(readable.clone());
            match self.io.poll_readable(&mut Context::from_waker(&waker)) {
                Poll::Ready(Ok(())) => readable.may_read.store(true, SeqCst),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if readable.may_read.load(SeqCst) => {}
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.get_ref().as_fd()
    }
}

graceful_core::stream_type! {
    /// An accepted connection. It carries the connection's guard: the server's
    /// drain waits for it to be dropped, wherever it was moved.
    ///
    /// Implements the `futures` crate's `AsyncRead` and `AsyncWrite`; for
    /// hyper's I/O traits, wrap it in `http::FuturesIo::vectored` (feature
    /// `http`).
    ///
    /// The socket is shared with the server's registry of connections (which
    /// shuts it down when the listener closes or the drain is forced), not
    /// duplicated: a connection costs one descriptor.
    socket: Socket,
    local_addr: |s| s.io.get_ref().local_addr(),
}

impl Stream {
    /// The socket inside, on `async-io`'s reactor.
    pub fn get_ref(&self) -> &Async<TcpStream> {
        &self.inner.io
    }
}

graceful_core::futures_io_impls! {
    Stream,
    |this, cx| {
        read(buf) => this
            .track
            .idle()
            .read(|| this.inner.poll_read_with(cx, |mut s| s.read(buf))),
        read_vectored(bufs) => this
            .track
            .idle()
            .read(|| read_vectored(&this.inner, cx, bufs)),
        write(buf) => Pin::new(&mut &this.inner.io).poll_write(cx, buf),
        write_vectored(bufs) => Pin::new(&mut &this.inner.io).poll_write_vectored(cx, bufs),
        flush => Pin::new(&mut &this.inner.io).poll_flush(cx),
        close => Poll::Ready(this.inner.io.get_ref().shutdown(std::net::Shutdown::Write)),
    }
}

fn read_vectored(
    socket: &Socket,
    cx: &mut Context<'_>,
    bufs: &mut [IoSliceMut<'_>],
) -> Poll<io::Result<usize>> {
    socket.poll_read_with(cx, |mut s| s.read_vectored(bufs))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};
    use std::time::{Duration, Instant};

    use super::Socket;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    /// A socket that would block is read again only once the reactor
    /// reported it readable: polls in between make no `recv`. The data that
    /// comes later wakes the task and is read.
    #[test]
    fn a_socket_that_would_block_is_read_again_only_once_readable() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let socket = Socket::new(accepted).unwrap();
        let woken = Arc::new(Count::default());
        let waker = Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        let reads = AtomicUsize::new(0);
        let mut buf = [0u8; 16];
        let mut poll = |cx: &mut Context<'_>| {
            socket.poll_read_with(cx, |mut s| {
                reads.fetch_add(1, SeqCst);
                s.read(&mut buf)
            })
        };

        assert!(poll(&mut cx).is_pending());
        assert_eq!(reads.load(SeqCst), 1, "the first poll reads");
        for _ in 0..10 {
            assert!(poll(&mut cx).is_pending());
        }
        assert_eq!(
            reads.load(SeqCst),
            1,
            "polls while nothing came made no read"
        );

        client.write_all(b"hi").unwrap();
        let t0 = Instant::now();
        while woken.0.load(SeqCst) == 0 {
            assert!(t0.elapsed() < Duration::from_secs(5), "never woken");
            std::thread::sleep(Duration::from_millis(1));
        }
        match poll(&mut cx) {
            Poll::Ready(Ok(2)) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(reads.load(SeqCst), 2);
        // Read until it would block again (async-io may still count the
        // event already read as a readiness: one more read then), then
        // quiet again.
        assert!(poll(&mut cx).is_pending());
        let blocked = reads.load(SeqCst);
        assert!((3..=4).contains(&blocked), "{blocked}");
        for _ in 0..10 {
            assert!(poll(&mut cx).is_pending());
        }
        assert_eq!(reads.load(SeqCst), blocked);
    }
}
