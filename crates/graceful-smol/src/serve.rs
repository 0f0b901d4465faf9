use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use async_io::Async;
use graceful_core::server::Accept;

use crate::stream::Socket;
use crate::{Runtime, Stream};

/// A listener on `async-io`'s reactor, driven by the core's accept loop.
pub(crate) struct Listener(pub(crate) Async<std::net::TcpListener>);

impl Listener {
    pub(crate) fn from_std(listener: std::net::TcpListener) -> io::Result<Listener> {
        Ok(Listener(Async::new(listener)?))
    }

    fn accept_now(&self) -> io::Result<(Arc<Socket>, SocketAddr)> {
        let (stream, peer) = self.0.get_ref().accept()?;
        Ok((Arc::new(Socket::new(stream)?), peer))
    }
}

impl std::os::fd::AsFd for Listener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.get_ref().as_fd()
    }
}

impl Accept for Listener {
    type Socket = Socket;

    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Arc<Self::Socket>, SocketAddr)>> {
        loop {
            match self.accept_now() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.0.poll_readable(cx))?;
                }
                result => return Poll::Ready(result),
            }
        }
    }

    fn accept_queued(&mut self) -> io::Result<Option<(Arc<Self::Socket>, SocketAddr)>> {
        match self.accept_now() {
            Ok(accepted) => Ok(Some(accepted)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }
}

graceful_core::tcp_serve_functions! {
    listener: Listener::from_std,
    stream: Stream,
    runtime: Runtime::new()?,
    serve;
    serve_on;
}
