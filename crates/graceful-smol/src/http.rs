//! HTTP/1.1 and HTTP/2 (h2c) on hyper 1.x: see [`serve`].

use std::io;

use graceful_core::{Outcome, ServeConfig, Shutdown};
use smol_hyper::rt::SmolTimer;

pub use graceful_http::{HttpBody, HttpService, Readiness};

use crate::serve::Listener;
use crate::{Runtime, Stream};

/// Serves any hyper service over HTTP/1.1 and HTTP/2 on `listener` until
/// `shutdown` is triggered, then drains it: `Connection: close`, GOAWAY,
/// pre-drain, first-request grace, upgrades left to their handlers, forced
/// close and report at the deadline. See [`graceful_http::serve`] for the
/// details.
///
/// A tower service (an axum `Router`) works through
/// `hyper_util::service::TowerToHyperService`.
pub async fn serve<S: HttpService>(
    listener: std::net::TcpListener,
    shutdown: &Shutdown,
    config: ServeConfig,
    service: S,
) -> io::Result<Outcome> {
    serve_on(&Runtime::new()?, listener, shutdown, config, service).await
}

/// [`serve`] with tasks and timers from `rt`.
pub async fn serve_on<R: graceful_core::Runtime, S: HttpService>(
    rt: &R,
    listener: std::net::TcpListener,
    shutdown: &Shutdown,
    config: ServeConfig,
    service: S,
) -> io::Result<Outcome> {
    let listener = Listener::from_std(listener)?;
    graceful_http::serve(
        rt,
        listener,
        shutdown,
        config,
        service,
        SmolTimer::new(),
        Stream::new,
    )
    .await
}
