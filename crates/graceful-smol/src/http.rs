//! HTTP/1.1 and HTTP/2 (h2c) on hyper 1.x: see [`serve`].

use smol_hyper::rt::SmolTimer;

pub use graceful_http::{FuturesIo, HttpBody, HttpService, Readiness};

use crate::serve::Listener;
use crate::{Runtime, Stream};

graceful_http::http_serve_functions! {
    listener: Listener::from_std,
    runtime: Runtime::new()?,
    timer: SmolTimer::new(),
    io: |socket, track| FuturesIo::vectored(Stream::new(socket, track)),
    serve;
    serve_on;
}
