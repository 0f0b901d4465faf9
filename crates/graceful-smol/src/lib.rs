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
pub use graceful_core::{Conn, Outcome, ServeConfig, Shutdown, SignalConfig};
pub use runtime::{Runtime, Sleep};
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
