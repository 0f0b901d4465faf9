use std::io;

use graceful_core::server::{self, Accept, ConnTrack};
use graceful_core::{Outcome, Runtime, ServeConfig, Shutdown};
use hyper::rt::{Read, Write};

use crate::connection::serve_with;
use crate::{HttpOptions, HttpService};

/// Serves `service` over HTTP/1.1 and HTTP/2 (prior knowledge) on
/// `listener` until `shutdown` is triggered, then drains. Each adapter's
/// `http::serve` is this with its runtime's listener, I/O wrapper (`io`
/// turns an accepted stream and its tracking into hyper I/O) and hyper
/// `timer`:
///
/// - responses produced after the trigger carry `Connection: close` and
///   their connection closes after them; idle keep-alive connections close
///   when the listener closes (one whose next request has begun to arrive,
///   its head split across packets or its bytes not read yet, gets the
///   first-request grace for the rest, and is served); HTTP/2 connections
///   get GOAWAY and their open streams finish;
/// - a connection that has sent nothing yet gets
///   [`ServeConfig::first_request_grace`] to send its first request;
/// - during [`ServeConfig::pre_drain`] the listener keeps accepting and
///   serving (mount [`Readiness`](crate::Readiness) so load balancers see
///   503);
/// - upgraded connections are left to their handlers (each request carries
///   the connection's [`Conn`](graceful_core::Conn) in its extensions, with
///   the server's shutdown to watch) and cut at the deadline;
/// - at the deadline every remaining connection is cut and the report of
///   what was left is logged and returned in the [`Outcome`].
///
/// `io` gives hyper the accepted socket itself, with no layer of its own
/// between: a close that does not linger then drops the socket, whose
/// close sends the FIN, without shutting its write side first. A layer
/// whose shutdown sends something (TLS's `close_notify`) goes through
/// [`serve_connection`](crate::serve_connection), which always shuts it.
#[allow(clippy::too_many_arguments)]
pub async fn serve<R, A, S, I, F, T>(
    rt: &R,
    listener: A,
    shutdown: &Shutdown,
    config: ServeConfig,
    service: S,
    timer: T,
    mut io: F,
) -> io::Result<Outcome>
where
    R: Runtime,
    A: Accept,
    F: FnMut(std::sync::Arc<A::Socket>, ConnTrack) -> I + Send,
    I: Read + Write + Unpin + Send + 'static,
    T: hyper::rt::Timer + Send + Sync + 'static,
    S: HttpService,
{
    let options = HttpOptions::new(&config).timer(timer).drop_closes();
    let conn_rt = rt.clone();
    let builder = std::sync::Arc::new(options.builder(rt.clone()));
    // hyper closes idle connections itself; reads must not be cut under it.
    let config = config.close_idle(false);
    server::serve(
        rt,
        listener,
        shutdown,
        config,
        move |stream, track, conn| {
            let socket: std::sync::Arc<dyn graceful_core::server::SharedSocket> = stream.clone();
            serve_with(
                conn_rt.clone(),
                builder.clone(),
                io(stream, track),
                Some(socket),
                conn,
                service.clone(),
                options.clone(),
            )
        },
    )
    .await
}
