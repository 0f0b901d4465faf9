use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use graceful_core::server::SharedSocket;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A tokio socket shared by its connection and the server's registry. The
/// lock is held only inside one non-blocking poll or one `shutdown(2)`, so
/// I/O keeps tokio's own read path (no zeroing of the caller's buffer).
pub(crate) struct Shared(Mutex<TcpStream>);

impl Shared {
    pub(crate) fn new(stream: TcpStream) -> Arc<Shared> {
        Arc::new(Shared(Mutex::new(stream)))
    }

    fn lock(&self) -> MutexGuard<'_, TcpStream> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SharedSocket for Shared {
    fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        socket2::SockRef::from(&*self.lock()).shutdown(how)
    }

    fn has_pending_input(&self) -> bool {
        use std::os::fd::AsFd;
        graceful_core::server::has_pending_input(self.lock().as_fd())
    }
}

graceful_core::stream_type! {
    /// An accepted connection. It carries the connection's guard: the server's
    /// drain waits for it to be dropped, wherever it was moved.
    ///
    /// Implements tokio's and the `futures` crate's `AsyncRead` and
    /// `AsyncWrite`, so handlers can be written once for every adapter.
    ///
    /// The socket is shared with the server's registry of connections (which
    /// shuts it down when the listener closes or the drain is forced), not
    /// duplicated: a connection costs one descriptor.
    socket: Shared,
    local_addr: |s| s.lock().local_addr(),
}

impl Stream {
    /// Sets `TCP_NODELAY` on the socket.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.lock().set_nodelay(nodelay)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Once the server closed the idle connection, nothing is read.
        this.track
            .idle()
            .read(|| {
                let before = buf.filled().len();
                let read = Pin::new(&mut *this.inner.lock()).poll_read(cx, buf);
                read.map_ok(|()| buf.filled().len() - before)
            })
            .map_ok(|_| ())
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner.lock()).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.inner.lock()).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner.lock()).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.inner.lock()).poll_shutdown(cx)
    }
}

graceful_core::futures_io_impls! {
    Stream,
    |this, cx| {
        read(buf) => {
            let mut buf = ReadBuf::new(buf);
            ready!(AsyncRead::poll_read(this, cx, &mut buf))?;
            Poll::Ready(Ok(buf.filled().len()))
        },
        write(buf) => AsyncWrite::poll_write(this, cx, buf),
        write_vectored(bufs) => AsyncWrite::poll_write_vectored(this, cx, bufs),
        flush => AsyncWrite::poll_flush(this, cx),
        close => AsyncWrite::poll_shutdown(this, cx),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::{Duration, Instant};

    use graceful_core::server::SharedSocket;

    use super::Shared;

    /// The shared socket sees bytes its reads have not taken, through the
    /// lock (the core's blanket implementation needs a descriptor, which
    /// `Shared` does not lend).
    #[test]
    fn the_shared_socket_peeks_at_unread_input() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, _) = listener.accept().unwrap();
            server.set_nonblocking(true).unwrap();
            let shared = Shared::new(tokio::net::TcpStream::from_std(server).unwrap());
            assert!(!shared.has_pending_input(), "nothing was sent");
            client.write_all(b"GET").unwrap();
            let start = Instant::now();
            while !shared.has_pending_input() {
                assert!(start.elapsed() < Duration::from_secs(10), "never seen");
                std::thread::sleep(Duration::from_millis(1));
            }
        });
    }
}
