//! For adapter authors: the one accept loop every adapter's server runs.
//!
//! Applications do not need this module: they use [`ServeConfig`] and
//! [`Conn`] (re-exported at the crate root) through an adapter's `serve`.
//!
//! An adapter for another runtime implements [`Accept`] for its listener
//! (with a socket type that implements [`SharedSocket`], so the server can
//! end reads and cut connections from outside their handlers) and calls
//! [`serve`], which owns the whole stop policy: pre-drain, the backlog at
//! close, the first-request grace, the deadline, the forced cut, panics,
//! back-off on accept errors and the connection limit. The handler it is
//! given receives each connection's [`ConnTrack`], which the adapter keeps
//! inside the connection's stream so the connection is tracked exactly as
//! long as its socket lives; its output implements [`HandlerOutput`].
//! Everything else the loop uses is private to this crate.

mod backoff;
mod config;
mod conn;
mod connections;
#[cfg(unix)]
pub(crate) mod handshakes;
mod idle;
mod scope;
#[cfg(unix)]
mod serve;

pub(crate) use backoff::{is_fatal_accept_error, is_out_of_descriptors, Backoff};
pub use config::ServeConfig;
pub use conn::{Conn, HandlerOutput};
#[cfg(unix)]
#[doc(hidden)]
pub use connections::has_pending_input;
pub(crate) use connections::Connections;
pub use connections::{ConnTrack, SharedSocket};
#[cfg(unix)]
pub(crate) use handshakes::{
    handed_alone, held_by_parent, mark_held_by_child, mark_shared, mark_shared_while_parent,
    take_handed_alone, unmark_shared, Marked, HANDED_ALONE_ENV,
};
pub use idle::Idle;
pub(crate) use scope::ServerScope;
#[cfg(unix)]
pub use serve::{serve, Accept};

/// Writes an adapter's `serve` and `serve_on`, the same for every adapter:
/// `listener` turns a `std::net::TcpListener` into the adapter's
/// [`Accept`] listener, `stream` names the adapter's stream type (built
/// with `Stream::new(socket, track)`), `runtime` is the default runtime
/// expression (it may use `?`). Extra doc lines go before `serve;` and
/// `serve_on;`. For adapter authors.
#[doc(hidden)]
#[macro_export]
macro_rules! tcp_serve_functions {
    (
        listener: $listener:expr,
        stream: $stream:ident,
        runtime: $rt:expr,
        $(#[$serve_doc:meta])*
        serve;
        $(#[$serve_on_doc:meta])*
        serve_on;
    ) => {
        /// Serves TCP connections on `listener` until `shutdown` is
        /// triggered, then drains them: see
        /// [`graceful_core::server::serve`] for the whole policy
        /// (pre-drain, backlog, deadline, forced close, panics, back-off).
        ///
        #[doc = concat!("`handler` gets each connection's [`", stringify!($stream), "`] and")]
        /// [`Conn`](graceful_core::Conn). When the listener closes, a read
        /// that would wait returns end-of-stream (unless
        /// [`ServeConfig::close_idle`](graceful_core::ServeConfig::close_idle)
        /// is off), so a handler that reads until the end finishes its
        /// current request and returns; a connection whose handler told it
        /// idle (the stream's `idle`) is shut down first, both ways.
        $(#[$serve_doc])*
        pub async fn serve<H, Fut>(
            listener: ::std::net::TcpListener,
            shutdown: &$crate::Shutdown,
            config: $crate::ServeConfig,
            handler: H,
        ) -> ::std::io::Result<$crate::Outcome>
        where
            H: FnMut($stream, $crate::Conn) -> Fut + Send,
            Fut: ::std::future::Future + Send + 'static,
            Fut::Output: $crate::server::HandlerOutput,
        {
            serve_on(&$rt, listener, shutdown, config, handler).await
        }

        /// [`serve`] with tasks and timers from `rt` (tests pass a runtime
        /// with a manual clock).
        $(#[$serve_on_doc])*
        pub async fn serve_on<R, H, Fut>(
            rt: &R,
            listener: ::std::net::TcpListener,
            shutdown: &$crate::Shutdown,
            config: $crate::ServeConfig,
            mut handler: H,
        ) -> ::std::io::Result<$crate::Outcome>
        where
            R: $crate::Runtime,
            H: FnMut($stream, $crate::Conn) -> Fut + Send,
            Fut: ::std::future::Future + Send + 'static,
            Fut::Output: $crate::server::HandlerOutput,
        {
            let listener = ($listener)(listener)?;
            $crate::server::serve(rt, listener, shutdown, config, move |socket, track, conn| {
                handler($stream::new(socket, track), conn)
            })
            .await
        }
    };
}

/// Writes an adapter's connection type, `Stream`: the socket it shares
/// with the server's registry (an `Arc<socket>`, so a connection costs one
/// descriptor) and the connection's guard, with `new(socket, track)`,
/// `peer_addr`, `local_addr` (`local_addr` reads it from the socket) and
/// `Debug`. Doc lines go first. The adapter adds its I/O traits. For
/// adapter authors.
#[doc(hidden)]
#[macro_export]
macro_rules! stream_type {
    (
        $(#[$doc:meta])*
        socket: $socket:ty,
        local_addr: |$s:ident| $local:expr $(,)?
    ) => {
        $(#[$doc])*
        pub struct Stream {
            inner: ::std::sync::Arc<$socket>,
            track: $crate::server::ConnTrack,
        }

        impl Stream {
            pub(crate) fn new(
                inner: ::std::sync::Arc<$socket>,
                track: $crate::server::ConnTrack,
            ) -> Stream {
                Stream { inner, track }
            }

            /// The client's address.
            pub fn peer_addr(&self) -> ::std::net::SocketAddr {
                self.track.peer_addr()
            }

            /// The server's address.
            pub fn local_addr(&self) -> ::std::io::Result<::std::net::SocketAddr> {
                let $s: &$socket = &self.inner;
                $local
            }

            /// The connection's [`Idle`]($crate::server::Idle) state, to
            /// tell the server (`set_idle`) when the handler waits for its
            /// client's next message with nothing read left to answer (what
            /// it buffered included): until a read of this stream takes
            /// bytes, the server may then shut the connection down both
            /// ways when its listener closes, before the handler runs again,
            /// whatever [`ServeConfig::close_idle`]($crate::ServeConfig::close_idle)
            /// says (so the handler cannot write anything more after it),
            /// unless bytes already wait in its socket or it was accepted
            /// after the trigger (its first-request grace is its own). Once
            /// it did, reads take nothing and report the end of the stream.
            /// Told from the task that reads, between its reads; reads of
            /// the socket inside (`get_ref`) go around this: a handler that
            /// tells idle reads through the stream.
            pub fn idle(&self) -> &::std::sync::Arc<$crate::server::Idle> {
                self.track.idle()
            }
        }

        impl ::std::fmt::Debug for Stream {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct("Stream")
                    .field("peer", &self.track.peer_addr())
                    .finish()
            }
        }
    };
}

/// Writes the `futures` crate's `AsyncRead` and `AsyncWrite` for an
/// adapter's stream type, each method an expression over `this` (the
/// pinned stream), `cx` and the method's buffer; `read_vectored` and
/// `write_vectored` are optional (the traits' defaults otherwise). For
/// adapter authors.
#[doc(hidden)]
#[macro_export]
macro_rules! futures_io_impls {
    (
        $ty:ty,
        |$this:ident, $cx:ident| {
            read($rbuf:ident) => $read:expr,
            $(read_vectored($rbufs:ident) => $read_v:expr,)?
            write($wbuf:ident) => $write:expr,
            $(write_vectored($wbufs:ident) => $write_v:expr,)?
            flush => $flush:expr,
            close => $close:expr $(,)?
        }
    ) => {
        impl $crate::__futures_io::AsyncRead for $ty {
            fn poll_read(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &mut [u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                let ($this, $cx, $rbuf) = (self, cx, buf);
                let _ = &$cx;
                $read
            }
            $(
                fn poll_read_vectored(
                    self: ::std::pin::Pin<&mut Self>,
                    cx: &mut ::std::task::Context<'_>,
                    bufs: &mut [::std::io::IoSliceMut<'_>],
                ) -> ::std::task::Poll<::std::io::Result<usize>> {
                    let ($this, $cx, $rbufs) = (self, cx, bufs);
                    $read_v
                }
            )?
        }

        impl $crate::__futures_io::AsyncWrite for $ty {
            fn poll_write(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                let ($this, $cx, $wbuf) = (self, cx, buf);
                let _ = &$cx;
                $write
            }
            $(
                fn poll_write_vectored(
                    self: ::std::pin::Pin<&mut Self>,
                    cx: &mut ::std::task::Context<'_>,
                    bufs: &[::std::io::IoSlice<'_>],
                ) -> ::std::task::Poll<::std::io::Result<usize>> {
                    let ($this, $cx, $wbufs) = (self, cx, bufs);
                    $write_v
                }
            )?
            fn poll_flush(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                let ($this, $cx) = (self, cx);
                let _ = &$cx;
                $flush
            }
            fn poll_close(
                self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                let ($this, $cx) = (self, cx);
                let _ = &$cx;
                $close
            }
        }
    };
}
