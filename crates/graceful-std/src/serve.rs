use std::io;
use std::net::TcpListener;
use std::sync::Arc;

use graceful_core::server::HandlerOutput;
use graceful_core::{Conn, Outcome, ServeConfig, Shutdown};

use crate::listener::Listener;
use crate::{Runtime, Stream};

graceful_core::tcp_serve_functions! {
    listener: Listener::new,
    stream: Stream,
    runtime: Runtime::new()?,
    ///
    /// Each connection is served on a thread while it is busy (reused once
    /// the connection ends): a handler that waits for input through the
    /// `futures` traits of its [`Stream`] gives its thread back after 10 ms
    /// (on Linux; at once while 64 other connections wait on theirs), one
    /// that blocks keeps it. The accept loop runs on the
    /// calling thread; a thread of the listener's own waits in `poll(2)`
    /// for connections (no timeouts). A read waiting for input, blocking or
    /// not, is ended when the listener closes, and every socket is shut
    /// down at the force. For a plain blocking closure see
    /// [`serve_blocking`].
    serve;
    serve_on;
}

/// [`serve`] with a blocking handler, run to completion on this thread.
///
/// The handler holds its connection's thread while it runs, and its
/// stream's async traits block as `std::io` does, so a handler may drive
/// them with an executor of its own (`futures::executor::block_on`, say).
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
    crate::reactor::block_on(serve(listener, shutdown, config, move |stream, conn| {
        let handler = handler.clone();
        // Blocking: the stream's async I/O blocks in it too, should the
        // handler poll it with an executor of its own.
        async move { crate::reactor::outside(|| handler(stream, conn)) }
    }))
}
