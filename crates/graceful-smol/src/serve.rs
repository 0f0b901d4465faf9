use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use async_io::Async;
use graceful_core::server::{self, Accept, HandlerOutput};
use graceful_core::{Conn, Outcome, ServeConfig, Shutdown};

use crate::{Runtime, Stream};

/// A listener on `async-io`'s reactor, driven by the core's accept loop.
pub(crate) struct Listener(pub(crate) Async<std::net::TcpListener>);

impl Listener {
    pub(crate) fn from_std(listener: std::net::TcpListener) -> io::Result<Listener> {
        Ok(Listener(Async::new(listener)?))
    }

    fn accept_now(&self) -> io::Result<(Arc<Async<std::net::TcpStream>>, SocketAddr)> {
        let (stream, peer) = self.0.get_ref().accept()?;
        Ok((Arc::new(Async::new(stream)?), peer))
    }
}

impl std::os::fd::AsFd for Listener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.0.get_ref().as_fd()
    }
}

impl Accept for Listener {
    type Socket = Async<std::net::TcpStream>;

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

/// Serves TCP connections on `listener` until `shutdown` is triggered, then
/// drains them: see [`graceful_core::server::serve`] for the whole policy
/// (pre-drain, backlog, deadline, forced close, panics, back-off).
///
/// `handler` gets each connection's [`Stream`] and [`Conn`]. When the listener closes,
/// a read that would wait returns end-of-stream (unless
/// [`ServeConfig::close_idle`] is off), so a handler that reads until the
/// end finishes its current request and returns.
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
    serve_on(&Runtime::new()?, listener, shutdown, config, handler).await
}

/// [`serve`] with tasks and timers from `rt` (tests pass a runtime with a
/// manual clock).
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
