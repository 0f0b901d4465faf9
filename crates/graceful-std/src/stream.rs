use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::task::{Context, Poll};

use nix::poll::PollFlags;
use nix::sys::socket::{recv, send, MsgFlags};

use crate::reactor;

graceful_core::stream_type! {
    /// An accepted connection, served on a thread while it is busy. It
    /// carries the connection's guard: the server's drain waits for it to
    /// be dropped.
    ///
    /// Implements `std::io::Read` and `Write`, which block the thread, and
    /// the `futures` crate's `AsyncRead` and `AsyncWrite`, which do not: a
    /// read or write that would wait has the thread wait in `poll(2)` for
    /// the socket, as the HTTP server's connections do, so an async handler
    /// idle for 10 ms gives its thread back and waits with no thread of its
    /// own (on Linux; see [`Runtime`](crate::Runtime)). Handlers written
    /// once for every adapter run here too. The async traits wait through
    /// the runtime that runs the handler ([`serve`](crate::serve)'s, or any
    /// that runs its tasks with [`Runtime`](crate::Runtime)). On a thread
    /// that runs none, and in a [`serve_blocking`](crate::serve_blocking)
    /// handler, they block as the std traits do. An async handler must not
    /// poll them with an executor of its own (its `block_on`, say): nothing
    /// would wake it, not even the stop. A stream moved to another task
    /// after a read of it was pending keeps its socket open, once dropped,
    /// until the first task's wait for it ends.
    ///
    /// When its listener closes the server ends a read that waits for
    /// input, and at the force it shuts the socket down, so a call never
    /// outlives the drain.
    ///
    /// The socket is shared with the server's registry of connections, not
    /// duplicated: a connection costs one descriptor.
    socket: TcpStream,
    local_addr: |s| s.local_addr(),
}

impl Stream {
    /// The socket inside.
    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }

    /// A read for the async traits: one that does not wait
    /// (`MSG_DONTWAIT`), the thread's runtime waiting for the socket when
    /// it would (see [`reactor::poll_io`]); blocking where no runtime of
    /// this crate runs.
    fn read_or_wait(&mut self, cx: &Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if !reactor::in_block_on() {
            return Poll::Ready(Read::read(self, buf));
        }
        self.track.idle().read(|| {
            reactor::poll_io(&self.inner, cx, PollFlags::POLLIN, |s| {
                Ok(recv(s.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT)?)
            })
        })
    }

    /// A write for the async traits, as [`Stream::read_or_wait`] reads.
    fn write_or_wait(&self, cx: &Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if !reactor::in_block_on() {
            return Poll::Ready((&*self.inner).write(buf));
        }
        let flags = MsgFlags::MSG_DONTWAIT | no_sigpipe();
        reactor::poll_io(&self.inner, cx, PollFlags::POLLOUT, |s| {
            Ok(send(s.as_raw_fd(), buf, flags)?)
        })
    }
}

/// What keeps a write to a connection its client closed from raising
/// `SIGPIPE`, as std's own writes do: `MSG_NOSIGNAL` where it exists
/// (elsewhere a Rust program ignores `SIGPIPE` by default).
fn no_sigpipe() -> MsgFlags {
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "freebsd",
        target_os = "dragonfly",
        target_os = "netbsd",
        target_os = "openbsd",
        target_os = "illumos",
        target_os = "solaris",
        target_os = "fuchsia",
        target_os = "haiku",
    ))]
    return MsgFlags::MSG_NOSIGNAL;
    #[allow(unreachable_code)]
    MsgFlags::empty()
}

impl Drop for Stream {
    /// Drops this thread's waits for the socket, so that the descriptor
    /// closes now (its client sees the end), not when the task that
    /// dropped the stream ends.
    fn drop(&mut self) {
        reactor::forget(&self.inner);
    }
}

impl Read for Stream {
    /// On a connection told idle, waits for input with a peek (which
    /// takes nothing) before the read claims it: a read that blocks would
    /// hold the claim for all the wait, and the server could not close the
    /// connection.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let idle = self.track.idle();
        if idle.is_told_idle() {
            self.inner.peek(&mut [0u8])?;
        }
        match idle.read(|| Poll::Ready((&*self.inner).read(buf))) {
            Poll::Ready(read) => read,
            Poll::Pending => unreachable!("a blocking read is never pending"),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.inner).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        (&*self.inner).flush()
    }
}

graceful_core::futures_io_impls! {
    Stream,
    |this, cx| {
        read(buf) => this.get_mut().read_or_wait(cx, buf),
        write(buf) => this.write_or_wait(cx, buf),
        flush => Poll::Ready(Ok(())),
        close => Poll::Ready(this.inner.shutdown(std::net::Shutdown::Write)),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use futures::{AsyncReadExt, AsyncWriteExt};
    use graceful_core::{Conn, Outcome, Reason, ServeConfig, Shutdown};

    use super::Stream;

    const BOUND: Duration = Duration::from_secs(10);

    /// Runs `serve` on a thread with a listener of its own and `shutdown`;
    /// returns the address and the thread (which returns the exit code).
    fn serving(
        shutdown: &Shutdown,
        serve: impl FnOnce(TcpListener, Shutdown) -> std::io::Result<Outcome> + Send + 'static,
    ) -> (SocketAddr, JoinHandle<i32>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = shutdown.clone();
        let server = std::thread::spawn(move || serve(listener, shutdown).unwrap().exit_code());
        (addr, server)
    }

    /// Serves the async `handler` on a thread until `shutdown` stops it.
    fn serving_async<F>(
        shutdown: &Shutdown,
        handler: impl Fn(Stream, Conn) -> F + Send + Sync + 'static,
    ) -> (SocketAddr, JoinHandle<i32>)
    where
        F: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
    {
        serving(shutdown, move |listener, shutdown| {
            let serve = crate::serve(listener, &shutdown, ServeConfig::default(), handler);
            crate::reactor::block_on(serve)
        })
    }

    /// The conformance suite's line service (each line echoed), reading
    /// and writing through the `futures` traits until the end.
    fn echo(stream: Stream, conn: Conn) -> impl std::future::Future<Output = std::io::Result<()>> {
        graceful_conformance::fixture::line_service(stream, conn, crate::Runtime::default())
    }

    fn client(addr: SocketAddr) -> TcpStream {
        let client = TcpStream::connect(addr).unwrap();
        client.set_read_timeout(Some(BOUND)).unwrap();
        client
    }

    fn round_trip(client: &mut TcpStream, line: &[u8]) {
        client.write_all(line).unwrap();
        let mut got = vec![0u8; line.len()];
        client.read_exact(&mut got).expect("no echo");
        assert_eq!(got, line);
    }

    /// Reads until the end of the stream, which brings nothing more.
    fn until_the_end(client: &mut TcpStream) {
        let mut rest = Vec::new();
        client
            .read_to_end(&mut rest)
            .expect("the connection never ended");
        assert!(rest.is_empty(), "{rest:?}");
    }

    /// An async handler waiting for its client's next bytes gives its
    /// thread back (its task waits in the parker, for its socket), is run
    /// again when they come, and its parked wait ends when the listener
    /// closes.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn an_async_handler_waiting_for_input_waits_with_no_thread() {
        use std::os::fd::AsRawFd;
        let shutdown = Shutdown::new();
        let (tell_fd, fd) = std::sync::mpsc::channel();
        let (addr, server) = serving_async(&shutdown, move |stream, conn| {
            tell_fd.send(stream.get_ref().as_raw_fd()).unwrap();
            echo(stream, conn)
        });
        let mut client = client(addr);
        let fd = fd.recv_timeout(BOUND).unwrap();
        let until_parked = || {
            let until = Instant::now() + BOUND;
            while !crate::park::is_parked_on(fd) {
                assert!(Instant::now() < until, "the waiting handler never parked");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        round_trip(&mut client, b"one\n");
        until_parked();
        round_trip(&mut client, b"two\n");
        until_parked();
        shutdown.trigger(Reason::Requested { code: None });
        until_the_end(&mut client);
        assert_eq!(server.join().unwrap(), 0);
    }

    /// An async write that fills the socket's buffer waits for the client
    /// to read, and goes on then.
    #[test]
    fn an_async_write_that_would_wait_goes_on_when_the_client_reads() {
        const LEN: usize = 8 << 20;
        let shutdown = Shutdown::new();
        let (addr, server) = serving_async(&shutdown, |mut stream, _| async move {
            AsyncWriteExt::write_all(&mut stream, &vec![7u8; LEN]).await?;
            AsyncWriteExt::close(&mut stream).await
        });
        let mut client = client(addr);
        std::thread::sleep(Duration::from_millis(100));
        let mut got = Vec::new();
        client
            .read_to_end(&mut got)
            .expect("the write never went on");
        assert_eq!(got.len(), LEN);
        assert!(got.iter().all(|&b| b == 7));
        shutdown.trigger(Reason::Requested { code: None });
        assert_eq!(server.join().unwrap(), 0);
    }

    /// The async traits driven by another executor, where nothing of this
    /// crate would wake it, block as the std traits do: in a blocking
    /// handler on its connection's thread, and on a thread of its own.
    #[test]
    fn async_io_driven_by_another_executor_blocks_as_std_io() {
        let in_a_blocking_handler = |shutdown: &Shutdown| {
            serving(shutdown, |listener, shutdown| {
                crate::serve_blocking(listener, &shutdown, ServeConfig::default(), |s, conn| {
                    futures::executor::block_on(echo(s, conn))
                })
            })
        };
        let on_a_thread_of_its_own = |shutdown: &Shutdown| {
            serving_async(shutdown, |stream, conn| async move {
                let other = std::thread::spawn(|| futures::executor::block_on(echo(stream, conn)));
                other.join().unwrap()
            })
        };
        for serve in [in_a_blocking_handler, on_a_thread_of_its_own] {
            let shutdown = Shutdown::new();
            let (addr, server) = serve(&shutdown);
            let mut client = client(addr);
            round_trip(&mut client, b"one\n");
            round_trip(&mut client, b"two\n");
            drop(client);
            shutdown.trigger(Reason::Requested { code: None });
            assert_eq!(server.join().unwrap(), 0);
        }
    }

    /// A handler that drops its stream while a read of it waited, and goes
    /// on, closes the connection then: its client sees the end while the
    /// handler still runs, not when it ends.
    #[test]
    fn a_stream_dropped_while_a_read_waited_closes_at_once() {
        use futures::channel::oneshot;
        use std::sync::Mutex;
        let shutdown = Shutdown::new();
        let (tell_pending, pending) = std::sync::mpsc::channel();
        let (end, ended) = oneshot::channel::<()>();
        let ended = Mutex::new(Some(ended));
        let (addr, server) = serving_async(&shutdown, move |mut stream, _| {
            let (tell_pending, ended) = (tell_pending.clone(), ended.lock().unwrap().take());
            async move {
                let mut buf = [0u8; 8];
                let read = futures::poll!(AsyncReadExt::read(&mut stream, &mut buf));
                tell_pending.send(read.is_pending()).unwrap();
                drop(stream);
                // Runs on until the client has seen the end.
                let _ = ended.expect("one connection").await;
                Ok(())
            }
        });
        let mut client = client(addr);
        assert!(
            pending.recv_timeout(BOUND).unwrap(),
            "the client sent nothing"
        );
        until_the_end(&mut client);
        end.send(()).unwrap();
        shutdown.trigger(Reason::Requested { code: None });
        assert_eq!(server.join().unwrap(), 0);
    }
}
