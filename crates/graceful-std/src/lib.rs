//! Graceful shutdown on plain threads: the `graceful` adapter contract with
//! no async runtime.
//!
//! For blocking servers, worker pools, and command-line tools that must
//! clean up on Ctrl+C.
//!
//! - [`Runtime`]: threads as the core's runtime (spawn a thread, park,
//!   `futures-timer`);
//! - [`signals`]: SIGINT/SIGTERM (SIGHUP/SIGQUIT opt-in) tied to a
//!   [`Shutdown`]; the second forces, the third exits;
//! - [`serve`] / [`serve_blocking`]: a TCP server with a thread per
//!   connection, woken by the shutdown itself (no polling timeouts);
//! - [`WorkerPool`]: threads that take jobs until the trigger and finish
//!   the one they run.
//!
//! Every wait has a blocking twin on [`Shutdown`] (`wait_drained`,
//! `wait_drained_until`, ...). The same names as `graceful-tokio` and
//! `graceful-smol`; this crate depends on neither tokio nor smol.

#![forbid(unsafe_code)]

mod pool;
mod runtime;
mod serve;
mod stream;
mod threads;

/// Zero-downtime restart: hand the listening sockets to a successor
/// process, then stop (the same for every adapter).
#[cfg(unix)]
pub use graceful_core::restart;
pub use graceful_core::{Conn, Outcome, ServeConfig, Shutdown, SignalConfig};
pub use pool::WorkerPool;
pub use runtime::Runtime;
pub use serve::{serve, serve_blocking, serve_on};
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
