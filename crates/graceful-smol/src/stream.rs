use std::io;
use std::net::TcpStream;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_io::Async;
use futures_io::{AsyncRead, AsyncWrite};

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
    socket: Async<TcpStream>,
    local_addr: |s| s.get_ref().local_addr(),
}

impl Stream {
    /// The socket inside, on `async-io`'s reactor.
    pub fn get_ref(&self) -> &Async<TcpStream> {
        &self.inner
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.inner).poll_read(cx, buf)
    }
    fn poll_read_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [io::IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.inner).poll_read_vectored(cx, bufs)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut &*self.inner).poll_write_vectored(cx, bufs)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut &*self.inner).poll_flush(cx)
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.inner.get_ref().shutdown(std::net::Shutdown::Write))
    }
}
