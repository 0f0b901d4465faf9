//! Graceful shutdown on smol: the `graceful` adapter contract for smol and
//! `async-io`.
//!
//! - [`Runtime`]: smol as the core's runtime (timer, spawn, block_on);
//! - [`signals`]: SIGINT/SIGTERM (SIGHUP/SIGQUIT opt-in) tied to a
//!   [`Shutdown`]; the second forces, the third exits;
//! - [`serve`]: a TCP server that stops accepting at the trigger, drains
//!   its connections with a deadline and reports what it had to cut;
//! - `http::serve` (feature `http`): any hyper service over HTTP/1.1 and
//!   HTTP/2, with `Connection: close`, GOAWAY, pre-drain and readiness;
//! - [`Stream`]: an accepted connection, with `futures`' I/O traits.
//!
//! The same names, with the same meaning, exist in `graceful-tokio` and
//! `graceful-std`: code written against them compiles unchanged when the
//! adapter is swapped with a Cargo rename. Without the `http` feature this
//! crate's dependency tree has no tokio; with it, tokio appears only as the
//! I/O traits hyper's HTTP/2 (h2) is written against, never as a runtime.

//!
//! # When not to use it
//!
//! With tokio in the program already, use `graceful-tokio` (one runtime is
//! enough); with no async code at all, `graceful-std`. Unix only: it relies
//! on POSIX signals and `shutdown(2)` on sockets.
//!
//! # Example
//!
//! The line echo server of `graceful-tokio`'s docs, on smol: only the `use`
//! line differs.
//!
//! ```no_run
//! use futures::io::BufReader;
//! use futures::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, StreamExt};
//! use graceful_smol as rt;
//! use rt::{ServeConfig, Shutdown, SignalConfig};
//!
//! fn main() -> std::io::Result<()> {
//!     let runtime = rt::Runtime::new()?;
//!     let shutdown = Shutdown::new();
//!     rt::signals(&shutdown, SignalConfig::default())?;
//!     let listener = std::net::TcpListener::bind("127.0.0.1:7000")?;
//!     let outcome = runtime.block_on(rt::serve(
//!         listener,
//!         &shutdown,
//!         ServeConfig::default(),
//!         |stream, _conn| async move {
//!             let (r, mut w) = stream.split();
//!             let mut lines = BufReader::new(r).lines();
//!             while let Some(line) = lines.next().await {
//!                 w.write_all(format!("{}\n", line?).as_bytes()).await?;
//!             }
//!             Ok::<_, std::io::Error>(())
//!         },
//!     ))?;
//!     std::process::exit(outcome.exit_code());
//! }
//! ```

#![forbid(unsafe_code)]

#[cfg(feature = "http")]
pub mod http;
mod runtime;
mod serve;
mod stream;

/// Zero-downtime restart: hand the listening sockets to a successor
/// process, then stop (the same for every adapter).
#[cfg(unix)]
pub use graceful_core::restart;
pub use graceful_core::{Conn, ForceCause, Outcome, Reason, ServeConfig, Shutdown, SignalConfig};
pub use runtime::{Runtime, Sleep};
pub use serve::{serve, serve_on};
pub use stream::Stream;

/// Stops `shutdown` on the configured OS signals: the first triggers it,
/// the second forces it, the third exits the process at once. See
/// [`graceful_core::listen_signals`].
///
/// Installing the handlers is explicit: nothing happens until this is
/// called.
pub fn signals(shutdown: &Shutdown, config: SignalConfig) -> std::io::Result<()> {
    graceful_core::listen_signals(shutdown, config)
}
