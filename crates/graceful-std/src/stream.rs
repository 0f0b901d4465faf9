use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::task::{Context, Poll};

use nix::poll::PollFlags;
use nix::sys::socket::{recv, send, MsgFlags};

use crate::reactor::{self, Socket};

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
    /// that runs its tasks with [`Runtime`](crate::Runtime)); polled on a
    /// thread that runs none, they block as the std traits do. When its
    /// listener closes the server ends a read that waits for input, and at
    /// the force it shuts the socket down, so a call never outlives the
    /// drain.
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

    /// Runs `op`, a call that does not wait (`MSG_DONTWAIT`), as the async
    /// traits do: if it would wait, this thread's runtime waits for the
    /// socket to be ready for `flags` and wakes `cx` (see
    /// [`reactor::poll_io`]).
    fn poll_io<T>(
        &self,
        cx: &Context<'_>,
        flags: PollFlags,
        op: impl FnMut(&TcpStream) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        let waiter: Socket = self.inner.clone();
        reactor::poll_io(&self.inner, &waiter, cx, flags, op)
    }

    fn read_or_wait(&mut self, cx: &Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if !reactor::in_block_on() {
            return Poll::Ready(Read::read(self, buf));
        }
        self.track.idle().read(|| {
            self.poll_io(cx, PollFlags::POLLIN, |s| {
                Ok(recv(s.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT)?)
            })
        })
    }

    fn write_or_wait(&self, cx: &Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if !reactor::in_block_on() {
            return Poll::Ready((&*self.inner).write(buf));
        }
        // As std's own writes, without SIGPIPE where the flag exists.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let flags = MsgFlags::MSG_DONTWAIT;
        self.poll_io(cx, PollFlags::POLLOUT, |s| {
            Ok(send(s.as_raw_fd(), buf, flags)?)
        })
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
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    use futures::{AsyncReadExt, AsyncWriteExt};
    use graceful_core::{Reason, ServeConfig, Shutdown};

    use super::Stream;

    const BOUND: Duration = Duration::from_secs(10);

    /// Serves `handler` on a thread until `shutdown` stops it; returns the
    /// address and the thread (which returns the exit code).
    fn serving<F>(
        shutdown: &Shutdown,
        handler: impl Fn(Stream) -> F + Send + Sync + 'static,
    ) -> (std::net::SocketAddr, std::thread::JoinHandle<i32>)
    where
        F: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = shutdown.clone();
        let server = std::thread::spawn(move || {
            let serve = crate::serve(listener, &shutdown, ServeConfig::default(), move |s, _| {
                handler(s)
            });
            crate::reactor::block_on(serve).unwrap().exit_code()
        });
        (addr, server)
    }

    /// Echoes what it reads through the `futures` traits until the end.
    async fn echo(mut stream: Stream) -> std::io::Result<()> {
        let mut buf = [0u8; 64];
        loop {
            let n = AsyncReadExt::read(&mut stream, &mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            AsyncWriteExt::write_all(&mut stream, &buf[..n]).await?;
        }
    }

    fn client(addr: std::net::SocketAddr) -> TcpStream {
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

    /// An async handler waiting for its client's next bytes gives its
    /// thread back (its task waits in the parker), is run again when they
    /// come, and its wait ends when the listener closes.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn an_async_handler_waiting_for_input_waits_with_no_thread() {
        let shutdown = Shutdown::new();
        let (addr, server) = serving(&shutdown, echo);
        let mut client = client(addr);
        round_trip(&mut client, b"one\n");
        let until = Instant::now() + BOUND;
        while crate::park::parked_tasks() == 0 {
            assert!(Instant::now() < until, "the waiting handler never parked");
            std::thread::sleep(Duration::from_millis(5));
        }
        round_trip(&mut client, b"two\n");
        shutdown.trigger(Reason::Requested { code: None });
        let mut rest = Vec::new();
        client
            .read_to_end(&mut rest)
            .expect("the connection never ended");
        assert!(rest.is_empty(), "{rest:?}");
        assert_eq!(server.join().unwrap(), 0);
    }

    /// An async write that fills the socket's buffer waits for the client
    /// to read (without its thread once it waited long), and goes on then.
    #[test]
    fn an_async_write_that_would_wait_goes_on_when_the_client_reads() {
        const LEN: usize = 8 << 20;
        let shutdown = Shutdown::new();
        let (addr, server) = serving(&shutdown, |mut stream| async move {
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

    /// The async traits polled where no runtime of this crate runs (here
    /// another executor, on a thread of the handler's) block as the std
    /// traits do, rather than wait for a wake-up no one would send.
    #[test]
    fn async_io_polled_outside_the_runtime_blocks_as_std_io() {
        let shutdown = Shutdown::new();
        let (addr, server) = serving(&shutdown, |stream| async move {
            let other = std::thread::spawn(move || futures::executor::block_on(echo(stream)));
            other.join().unwrap()
        });
        let mut client = client(addr);
        round_trip(&mut client, b"one\n");
        round_trip(&mut client, b"two\n");
        drop(client);
        shutdown.trigger(Reason::Requested { code: None });
        assert_eq!(server.join().unwrap(), 0);
    }
}
