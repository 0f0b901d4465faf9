//! HTTP/1.1 and HTTP/2 (h2c) on hyper 1.x: see [`serve`].

use hyper_util::rt::{TokioIo, TokioTimer};

pub use graceful_http::{HttpBody, HttpService, Readiness};

/// gRPC health that follows the shutdown (feature `grpc`): see
/// [`graceful_http::grpc`].
#[cfg(feature = "grpc")]
pub use graceful_http::grpc;

use crate::serve::Listener;
use crate::{Runtime, Stream};

graceful_http::http_serve_functions! {
    listener: Listener::from_std,
    runtime: Runtime::current(),
    timer: TokioTimer::new(),
    io: |socket, track| TokioIo::new(Stream::new(socket, track)),
    ///
    /// Must be polled inside a tokio runtime.
    serve;
    serve_on;
}
