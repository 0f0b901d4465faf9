use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use graceful_core::server::Accept;
use tokio::net::{TcpListener, TcpStream};

use crate::stream::Shared;
use crate::{Runtime, Stream};

/// A tokio listener, driven by the core's accept loop.
pub(crate) struct Listener(pub(crate) TcpListener);

impl Accept for Listener {
    type Socket = Shared;

    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(Arc<Shared>, SocketAddr)>> {
        self.0
            .poll_accept(cx)
            .map_ok(|(stream, peer)| (Shared::new(stream), peer))
    }

    fn accept_queued(&mut self) -> io::Result<Option<(Arc<Shared>, SocketAddr)>> {
        // A non-blocking `accept(2)` on the listener's own descriptor: no
        // duplicate (which fails when the process is out of descriptors),
        // and no `poll_accept`, which answers "empty" while tokio has not
        // seen the socket readable yet, or once the task's budget is spent.
        let (socket, peer) = match socket2::SockRef::from(&self.0).accept() {
            Ok(accepted) => accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        };
        let peer = peer
            .as_socket()
            .ok_or_else(|| io::Error::other("accepted a connection with no IP address"))?;
        socket.set_nonblocking(true)?;
        Ok(Some((
            Shared::new(TcpStream::from_std(socket.into())?),
            peer,
        )))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl std::os::fd::AsFd for Listener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Listener {
    pub(crate) fn from_std(listener: std::net::TcpListener) -> io::Result<Listener> {
        listener.set_nonblocking(true)?;
        Ok(Listener(TcpListener::from_std(listener)?))
    }
}

graceful_core::tcp_serve_functions! {
    listener: Listener::from_std,
    stream: Stream,
    runtime: Runtime::current(),
    ///
    /// Must be polled inside a tokio runtime; uses it for tasks and timers.
    serve;
    /// The listener's I/O is still tokio's: poll this inside a tokio
    /// runtime.
    serve_on;
}
