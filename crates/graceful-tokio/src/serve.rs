use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use graceful_core::server::{self, Accept, HandlerOutput};
use graceful_core::{Conn, Outcome, ServeConfig, Shutdown};
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

/// Serves TCP connections on `listener` until `shutdown` is triggered, then
/// drains them: see [`graceful_core::server::serve`] for the whole policy
/// (pre-drain, backlog, deadline, forced close, panics, back-off).
///
/// `handler` gets each connection's [`Stream`] and [`Conn`]. When the listener closes,
/// a read that would wait returns end-of-stream (unless
/// [`ServeConfig::close_idle`] is off), so a handler that reads until the
/// end finishes its current request and returns.
///
/// Must be polled inside a tokio runtime; uses it for tasks and timers.
pub async fn serve<H, Fut>(
    listener: std::net::TcpListener,
    shutdown: &Shutdown,
    config: ServeConfig,
    handler: H,
) -> io::Result<Outcome>
where
    H: FnMut(Stream, Conn) -> Fut + Send,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerOutput,
{
    serve_on(&Runtime::current(), listener, shutdown, config, handler).await
}

/// [`serve`] with tasks and timers from `rt` (tests pass a runtime with a
/// manual clock). The listener's I/O is still tokio's: poll this inside a
/// tokio runtime.
pub async fn serve_on<R, H, Fut>(
    rt: &R,
    listener: std::net::TcpListener,
    shutdown: &Shutdown,
    config: ServeConfig,
    mut handler: H,
) -> io::Result<Outcome>
where
    R: graceful_core::Runtime,
    H: FnMut(Stream, Conn) -> Fut + Send,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerOutput,
{
    let listener = Listener::from_std(listener)?;
    server::serve(
        rt,
        listener,
        shutdown,
        config,
        move |stream, track, conn| handler(Stream::new(stream, track), conn),
    )
    .await
}
