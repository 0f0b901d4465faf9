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
//! # When not to use it
//!
//! A service already shaped by a framework's own shutdown (tonic's
//! `serve_with_shutdown`, axum's `with_graceful_shutdown`) and content with
//! it needs only [`signals`] and a [`Shutdown`] to await. A program with no
//! async code is better served by `graceful-std`. Unix only: it relies on
//! POSIX signals and `shutdown(2)` on sockets.
//!
//! # Example
//!
//! A line echo server that drains on SIGTERM or Ctrl+C and exits with the
//! outcome's code (0 drained, 1 forced at the deadline, 128+signo on a
//! second signal). Swapping `graceful_tokio` for `graceful_smol` or
//! `graceful_std` in the `use` line is the only change another runtime
//! needs.
//!
//! ```no_run
//! use futures::io::BufReader;
//! use futures::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, StreamExt};
//! use graceful_tokio as rt;
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

pub mod http;
mod runtime;
mod serve;
mod stream;

/// Zero-downtime restart: hand the listening sockets to a successor
/// process, then stop (the same for every adapter).
#[cfg(unix)]
pub use graceful_core::restart;
pub use graceful_core::{Conn, ForceCause, Outcome, Reason, ServeConfig, Shutdown, SignalConfig};
pub use runtime::Runtime;
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

/// The README's code blocks, compiled (and run unless marked `no_run`) as
/// doctests, so the snippets a user copies stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
