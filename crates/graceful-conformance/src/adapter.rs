use std::future::Future;
use std::io;
use std::net::TcpListener;

use futures::future::BoxFuture;
use futures::{AsyncRead, AsyncWrite};
use graceful_core::{Conn, Outcome, Runtime, ServeConfig, Shutdown};

/// The adapter contract as the suite sees it. Implemented by
/// [`suite!`](crate::suite) from an adapter crate's exported names
/// (`Runtime::new`, `serve_on`, `Stream`), exactly as user code would call
/// them.
pub trait Adapter: Send + Sync + 'static {
    /// The adapter's runtime.
    type Runtime: Runtime;
    /// The adapter's connection stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The stream's [`Idle`](graceful_core::server::Idle) state (its
    /// `idle`).
    fn idle(stream: &Self::Stream) -> std::sync::Arc<graceful_core::server::Idle>;

    /// A fresh runtime for one scenario.
    fn runtime() -> Self::Runtime;

    /// The adapter's `serve_on`.
    fn serve<R, H, Fut>(
        rt: &R,
        listener: TcpListener,
        shutdown: &Shutdown,
        config: ServeConfig,
        handler: H,
    ) -> BoxFuture<'static, io::Result<Outcome>>
    where
        R: Runtime,
        H: FnMut(Self::Stream, Conn) -> Fut + Send + 'static,
        Fut: Future<Output = io::Result<()>> + Send + 'static;
}
