use std::net::TcpStream;
use std::pin::Pin;
use std::task::Poll;

use async_io::Async;

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

graceful_core::futures_io_impls! {
    Stream,
    |this, cx| {
        read(buf) => Pin::new(&mut &*this.inner).poll_read(cx, buf),
        read_vectored(bufs) => Pin::new(&mut &*this.inner).poll_read_vectored(cx, bufs),
        write(buf) => Pin::new(&mut &*this.inner).poll_write(cx, buf),
        write_vectored(bufs) => Pin::new(&mut &*this.inner).poll_write_vectored(cx, bufs),
        flush => Pin::new(&mut &*this.inner).poll_flush(cx),
        close => Poll::Ready(this.inner.get_ref().shutdown(std::net::Shutdown::Write)),
    }
}
