use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use graceful_core::server::ConnTrack;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// An accepted connection. It carries the connection's guard: the server's
/// drain waits for it to be dropped, wherever it was moved.
///
/// Implements tokio's and the `futures` crate's `AsyncRead` and
/// `AsyncWrite`, so handlers can be written once for every adapter.
///
/// The socket is shared with the server's registry of connections (which
/// shuts it down when the listener closes or the drain is forced), not
/// duplicated: a connection costs one descriptor. I/O goes through tokio's
/// readiness (`poll_read_ready` then `try_read`, and the same for writes).
pub struct Stream {
    inner: Arc<TcpStream>,
    track: ConnTrack,
}

impl Stream {
    pub(crate) fn new(inner: Arc<TcpStream>, track: ConnTrack) -> Stream {
        Stream { inner, track }
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.track.peer_addr()
    }

    /// The server's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// The tokio stream inside.
    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("peer", &self.track.peer_addr())
            .finish()
    }
}

/// Runs `io` once the socket is ready for it, until it does not block.
fn poll_io<T>(
    cx: &mut Context<'_>,
    mut ready: impl FnMut(&mut Context<'_>) -> Poll<io::Result<()>>,
    mut io: impl FnMut() -> io::Result<T>,
) -> Poll<io::Result<T>> {
    loop {
        ready!(ready(cx))?;
        match io() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return Poll::Ready(result),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let tcp = &self.inner;
        let n = ready!(poll_io(
            cx,
            |cx| tcp.poll_read_ready(cx),
            || tcp.try_read(buf.initialize_unfilled())
        ))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let tcp = &self.inner;
        poll_io(cx, |cx| tcp.poll_write_ready(cx), || tcp.try_write(buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let tcp = &self.inner;
        poll_io(
            cx,
            |cx| tcp.poll_write_ready(cx),
            || tcp.try_write_vectored(bufs),
        )
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&*self.inner).shutdown(std::net::Shutdown::Write))
    }
}

impl futures_io::AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut buf = ReadBuf::new(buf);
        ready!(AsyncRead::poll_read(self, cx, &mut buf))?;
        Poll::Ready(Ok(buf.filled().len()))
    }
}

impl futures_io::AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(self, cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write_vectored(self, cx, bufs)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(self, cx)
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_shutdown(self, cx)
    }
}
