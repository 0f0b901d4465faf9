//! Graceful shutdown on tokio: the `graceful` adapter contract for tokio.
//!
//! - [`Runtime`]: tokio as the core's runtime (timer, spawn, block_on);
//! - [`signals`]: SIGINT/SIGTERM (SIGHUP/SIGQUIT opt-in) tied to a
//!   [`Shutdown`]; the second forces, the third exits;
//! - [`serve`]: a TCP server that stops accepting at the trigger, drains
//!   its connections with a deadline and reports what it had to cut;
//! - [`http::serve`]: any hyper service over HTTP/1.1 and HTTP/2, with
//!   `Connection: close`, GOAWAY, pre-drain and readiness
//!   ([`http::Readiness`]);
//! - [`Stream`]: an accepted connection, with tokio's and `futures`' I/O
//!   traits.
//!
//! The same names, with the same meaning, exist in `graceful-smol` and
//! `graceful-std`: code written against them compiles unchanged when the
//! adapter is swapped with a Cargo rename (`rt = { package = "graceful-smol" }`).
//!
//! # Example
//!
//! ```no_run
//! use futures::{AsyncBufReadExt, AsyncWriteExt, io::BufReader, AsyncReadExt};
//! use graceful_core::{ServeConfig, Shutdown, SignalConfig};
//! use graceful_tokio as rt;
//!
//! fn main() -> std::io::Result<()> {
//!     let runtime = rt::Runtime::new()?;
//!     let shutdown = Shutdown::new();
//!     rt::signals(&shutdown, SignalConfig::default())?;
//!     let listener = std::net::TcpListener::bind("127.0.0.1:7000")?;
//!     let outcome = graceful_core::Runtime::block_on(&runtime, rt::serve(
//!         listener,
//!         &shutdown,
//!         ServeConfig::default(),
//!         |stream, _conn| async move {
//!             let (r, mut w) = stream.split();
//!             let mut lines = BufReader::new(r).lines();
//!             while let Some(line) = futures::StreamExt::next(&mut lines).await {
//!                 w.write_all(format!("{}\n", line?).as_bytes()).await?;
//!             }
//!             Ok::<_, std::io::Error>(())
//!         },
//!     ))?;
//!     std::process::exit(outcome.exit_code());
//! }
//! ```

#![forbid(unsafe_code)]

pub mod http;
mod runtime;
mod serve;
mod stream;

/// Zero-downtime restart: hand the listening sockets to a successor
/// process, then stop (the same for every adapter).
#[cfg(unix)]
pub use graceful_core::restart;
pub use graceful_core::{Conn, Outcome, ServeConfig, Shutdown, SignalConfig};
pub use runtime::Runtime;
pub use serve::{serve, serve_on};
pub use stream::Stream;

/// Stops `shutdown` on the configured OS signals: the first triggers it,
/// the second forces it, the third exits the process at once (B1–B3). See
/// [`graceful_core::listen_signals`].
///
/// Installing the handlers is explicit: nothing happens until this is
/// called.
pub fn signals(shutdown: &Shutdown, config: SignalConfig) -> std::io::Result<()> {
    graceful_core::listen_signals(shutdown, config)
}
