use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::sync::Arc;

use graceful_core::server::HandlerOutput;
use graceful_core::{block_on, Conn, Outcome, ServeConfig, Shutdown};

use crate::listener::Listener;
use crate::{Runtime, Stream};

/// Serves TCP connections on `listener`, a thread per connection, until
/// `shutdown` is triggered, then drains them with the core's policy
/// (pre-drain, backlog, deadline, forced close, panics, back-off).
///
/// The accept loop is the core's, the same as every adapter's, run on the
/// calling thread; a thread of the listener's own waits in `poll(2)` for
/// connections (no timeouts). A blocking read waiting for input is ended
/// when the listener closes and every socket is shut down at the force,
/// through the registry of live connections.
///
/// `handler` builds each connection's work; it runs on the connection's
/// own thread. For a plain blocking closure see [`serve_blocking`].
pub async fn serve<H, Fut>(
    listener: TcpListener,
    shutdown: &Shutdown,
    config: ServeConfig,
    handler: H,
) -> io::Result<Outcome>
where
    H: FnMut(Stream, Conn) -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerOutput,
{
    serve_on(&Runtime::new()?, listener, shutdown, config, handler).await
}

/// [`serve`] with timers from `rt` (tests pass a runtime with a manual
/// clock).
pub async fn serve_on<R, H, Fut>(
    rt: &R,
    listener: TcpListener,
    shutdown: &Shutdown,
    config: ServeConfig,
    mut handler: H,
) -> io::Result<Outcome>
where
    R: graceful_core::Runtime,
    H: FnMut(Stream, Conn) -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerOutput,
{
    let listener = Listener::new(listener)?;
    graceful_core::server::serve(
        rt,
        listener,
        shutdown,
        config,
        move |socket, track, conn| handler(Stream::new(socket, track), conn),
    )
    .await
}

/// [`serve`] with a blocking handler, run to completion on this thread.
pub fn serve_blocking<H, O>(
    listener: TcpListener,
    shutdown: &Shutdown,
    config: ServeConfig,
    handler: H,
) -> io::Result<Outcome>
where
    H: Fn(Stream, Conn) -> O + Send + Sync + 'static,
    O: HandlerOutput + Send + 'static,
{
    let handler = Arc::new(handler);
    block_on(serve(listener, shutdown, config, move |stream, conn| {
        let handler = handler.clone();
        async move { handler(stream, conn) }
    }))
}
