use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::task::Poll;

graceful_core::stream_type! {
    /// An accepted connection, served on a thread of its own. It carries the
    /// connection's guard: the server's drain waits for it to be dropped.
    ///
    /// Implements `std::io::Read` and `Write`, and also the `futures` crate's
    /// `AsyncRead` and `AsyncWrite` by blocking the thread, so that handlers
    /// written once for every adapter run here too (each on its own thread, as
    /// [`serve`](crate::serve) runs them). When its listener closes the server
    /// ends a read that waits for input, and at the force it shuts the socket
    /// down, so a blocked call never outlives the drain.
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
        read(buf) => Poll::Ready(Read::read(this.get_mut(), buf)),
        write(buf) => Poll::Ready((&*this.inner).write(buf)),
        flush => Poll::Ready((&*this.inner).flush()),
        close => Poll::Ready(this.inner.shutdown(std::net::Shutdown::Write)),
    }
}
