//! HTTP/1.1 and HTTP/2 graceful shutdown on hyper 1.x, written once for
//! every async adapter: `graceful_tokio::http` and `graceful_smol::http`
//! are thin bindings of this crate to their runtime's I/O.
//!
//! - [`serve`]: the whole server, on the core's accept loop;
//! - [`serve_connection`]: one connection through hyper-util's automatic
//!   HTTP/1.1 / HTTP/2 builder, wound down at the trigger (`Connection:
//!   close`, GOAWAY, first-request grace, untouched upgrades);
//! - [`Io`]: a staged close, so clients read their last response instead
//!   of a reset;
//! - [`FuturesIo`]: hyper's I/O for a stream with the `futures` I/O
//!   traits, without making hyper's read buffer resident;
//! - [`Readiness`]: the 200-then-503 endpoint for load balancers;
//! - `grpc` (feature `grpc`): the gRPC health service that answers
//!   `NOT_SERVING` from the trigger on, for tonic servers.
//!
//! The accept loop, deadline, forced close and report are the core's
//! (`graceful_core::server::serve`). This crate names no runtime; hyper's
//! HTTP/2 implementation (h2) depends on tokio's I/O traits, not on its
//! runtime.

//!
//! # When not to use it
//!
//! Applications call `graceful_tokio::http::serve` or
//! `graceful_smol::http::serve`, which bind this crate to their runtime;
//! depend on this crate directly only to bind it to another runtime, or to
//! serve connections accepted elsewhere with [`serve_connection`]. Unix
//! only, as the core.
//!
//! # Example
//!
//! A readiness endpoint next to the application's routes, as an adapter's
//! `http::serve` takes it (`service_fn` from hyper):
//!
//! ```
//! use graceful_core::{Reason, Shutdown};
//! use graceful_http::Readiness;
//!
//! let shutdown = Shutdown::new();
//! let ready = Readiness::new(&shutdown);
//! assert!(ready.is_ready());
//! shutdown.trigger(Reason::requested());
//! assert!(!ready.is_ready()); // `/healthz` now answers 503
//! ```

#![forbid(unsafe_code)]

mod bounds;
mod compat;
mod connection;
mod exec;
mod framing;
#[cfg(feature = "grpc")]
pub mod grpc;
mod io;
mod readiness;
mod serve;
mod service;
#[cfg(test)]
mod test_support;

pub use bounds::{BoxError, HttpBody, HttpService};
pub use compat::FuturesIo;
pub use connection::{serve_connection, HttpOptions};
pub use io::Io;
pub use readiness::Readiness;
pub use serve::serve;

#[doc(hidden)]
pub use graceful_core as __core;

/// Fills hyper's read cursor through `read`, a read into an initialised
/// byte slice, staged in an 8 KiB stack buffer: hyper's own buffer is not
/// initialised, and zeroing it on every read would make every page of it
/// resident (an idle connection would cost 16 KiB more than it uses). For
/// adapter authors whose socket reads into `&mut [u8]`.
#[doc(hidden)]
pub fn poll_read_staged(
    mut buf: hyper::rt::ReadBufCursor<'_>,
    read: impl FnOnce(&mut [u8]) -> std::task::Poll<std::io::Result<usize>>,
) -> std::task::Poll<std::io::Result<()>> {
    let mut chunk = [0u8; 8192];
    let want = buf.remaining().min(chunk.len());
    let n = std::task::ready!(read(&mut chunk[..want]))?;
    buf.put_slice(&chunk[..n]);
    std::task::Poll::Ready(Ok(()))
}

/// Writes an adapter's `http::serve` and `http::serve_on`, the same for
/// every adapter: `listener` turns a `std::net::TcpListener` into the
/// adapter's `Accept` listener, `runtime` is the default runtime
/// expression (it may use `?`), `timer` hyper's timer, and `io` maps an
/// accepted socket and its `ConnTrack` to hyper's I/O. Extra doc lines go
/// before `serve;` and `serve_on;`. For adapter authors.
#[doc(hidden)]
#[macro_export]
macro_rules! http_serve_functions {
    (
        listener: $listener:expr,
        runtime: $rt:expr,
        timer: $timer:expr,
        io: $io:expr,
        $(#[$serve_doc:meta])*
        serve;
        $(#[$serve_on_doc:meta])*
        serve_on;
    ) => {
        /// Serves any hyper service over HTTP/1.1 and HTTP/2 on `listener`
        /// until `shutdown` is triggered, then drains it: `Connection:
        /// close`, GOAWAY, pre-drain, first-request grace, upgrades left to
        /// their handlers, forced close and report at the deadline. See
        /// [`graceful_http::serve`] for the details.
        ///
        /// A tower service (an axum `Router`) works through
        /// `hyper_util::service::TowerToHyperService`.
        $(#[$serve_doc])*
        pub async fn serve<S: $crate::HttpService>(
            listener: ::std::net::TcpListener,
            shutdown: &$crate::__core::Shutdown,
            config: $crate::__core::ServeConfig,
            service: S,
        ) -> ::std::io::Result<$crate::__core::Outcome> {
            serve_on(&$rt, listener, shutdown, config, service).await
        }

        /// [`serve`] with tasks and timers from `rt`.
        $(#[$serve_on_doc])*
        pub async fn serve_on<R: $crate::__core::Runtime, S: $crate::HttpService>(
            rt: &R,
            listener: ::std::net::TcpListener,
            shutdown: &$crate::__core::Shutdown,
            config: $crate::__core::ServeConfig,
            service: S,
        ) -> ::std::io::Result<$crate::__core::Outcome> {
            let listener = ($listener)(listener)?;
            $crate::serve(rt, listener, shutdown, config, service, $timer, $io).await
        }
    };
}
