//! HTTP/1.1 and HTTP/2 (h2c) on hyper 1.x: see [`serve`].

use std::error::Error as StdError;
use std::io;

use graceful_core::server;
use graceful_core::{Outcome, ServeConfig, Shutdown};
use graceful_http::{serve_connection, HttpOptions};
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::Service;
use smol_hyper::rt::{FuturesIo, SmolTimer};

pub use graceful_http::Readiness;

use crate::serve::Listener;
use crate::{Runtime, Stream};

type BoxError = Box<dyn StdError + Send + Sync>;

/// Serves `service` over HTTP/1.1 and HTTP/2 (prior knowledge) on
/// `listener` until `shutdown` is triggered, then drains:
///
/// - responses produced after the trigger carry `Connection: close` and
///   their connection closes after them; idle keep-alive connections close
///   at once; HTTP/2 connections get GOAWAY and their open streams finish;
/// - a connection that has sent nothing yet gets
///   [`ServeConfig::first_request_grace`] to send its first request;
/// - during [`ServeConfig::pre_drain`] the listener keeps accepting and
///   serving (mount [`Readiness`] so load balancers see 503);
/// - upgraded connections are left to their handlers (each request carries
///   the connection's [`Conn`](graceful_core::Conn) in its extensions, with
///   the server's shutdown to watch) and cut at the deadline;
/// - at the deadline every remaining connection is cut and the report of
///   what was left is logged and returned in the [`Outcome`].
///
/// Any hyper service works; a tower service (an axum `Router`) through
/// `hyper_util::service::TowerToHyperService`.
pub async fn serve<S, B>(
    listener: std::net::TcpListener,
    shutdown: &Shutdown,
    config: ServeConfig,
    service: S,
) -> io::Result<Outcome>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    serve_on(&Runtime::new()?, listener, shutdown, config, service).await
}

/// [`serve`] with tasks and timers from `rt`.
pub async fn serve_on<R, S, B>(
    rt: &R,
    listener: std::net::TcpListener,
    shutdown: &Shutdown,
    config: ServeConfig,
    service: S,
) -> io::Result<Outcome>
where
    R: graceful_core::Runtime,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let options = HttpOptions::new(&config).timer(SmolTimer::new());
    let listener = Listener::from_std(listener)?;
    let conn_rt = rt.clone();
    // hyper closes idle connections itself; reads must not be cut under it.
    let config = config.close_idle(false);
    server::serve(
        rt,
        listener,
        shutdown,
        config,
        move |stream, track, conn| {
            let io = FuturesIo::new(Stream::new(stream, track));
            serve_connection(conn_rt.clone(), io, conn, service.clone(), options.clone())
        },
    )
    .await
}
