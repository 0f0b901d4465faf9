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
//! - [`serve`] / [`serve_blocking`]: a TCP server, each connection on a
//!   thread while it is busy (an async handler waiting for input gives its
//!   thread back, as an idle HTTP connection does; a blocking one keeps
//!   it), woken by the shutdown itself (no polling timeouts);
//! - `http::serve` (feature `http`): any hyper service over HTTP/1.1 and
//!   HTTP/2, each connection on a thread while it is busy (an idle one
//!   waits in one shared `epoll` set, with no thread, on Linux), with the
//!   same stop as the async adapters' (`Connection: close`, GOAWAY,
//!   first-request grace, readiness);
//! - [`WorkerPool`]: threads that take jobs until the trigger and finish
//!   the one they run.
//!
//! Every wait has a blocking twin on [`Shutdown`] (`wait_drained`,
//! `wait_drained_until`, ...). The same names as `graceful-tokio` and
//! `graceful-smol`; this crate depends on no async runtime: not smol,
//! and tokio only with the `http` feature, as the I/O traits hyper's
//! HTTP/2 (h2) is written against (CI checks its dependency tree).

//!
//! # When not to use it
//!
//! A blocking TCP handler (`serve_blocking`, or reads through `std::io`)
//! holds its thread while its connection is open, so a thread's stack per
//! client: for thousands of mostly idle TCP connections, write the handler
//! against the `futures` I/O traits (its idle connections then give their
//! threads back on Linux, as idle HTTP connections do), or use an async
//! adapter. Unix only: it relies on POSIX signals and `shutdown(2)` on
//! sockets.
//!
//! # Example
//!
//! A blocking line echo server: each connection on a thread of its own,
//! its blocking read ending at the stop; exits with the outcome's code.
//!
//! ```no_run
//! use std::io::{BufRead, BufReader, Write};
//! use graceful_std as rt;
//! use rt::{ServeConfig, Shutdown, SignalConfig};
//!
//! fn main() -> std::io::Result<()> {
//!     let shutdown = Shutdown::new();
//!     rt::signals(&shutdown, SignalConfig::default())?;
//!     let listener = std::net::TcpListener::bind("127.0.0.1:7000")?;
//!     let outcome = rt::serve_blocking(
//!         listener,
//!         &shutdown,
//!         ServeConfig::default(),
//!         |stream, _conn| -> std::io::Result<()> {
//!             let mut writer = stream.get_ref();
//!             for line in BufReader::new(stream.get_ref()).lines() {
//!                 writeln!(writer, "{}", line?)?;
//!             }
//!             Ok(())
//!         },
//!     )?;
//!     std::process::exit(outcome.exit_code());
//! }
//! ```

#![forbid(unsafe_code)]

#[cfg(feature = "http")]
pub mod http;
mod listener;
mod park;
mod pool;
// Without `http` nothing waits for a socket or a timer in it.
#[cfg_attr(not(feature = "http"), allow(dead_code))]
mod reactor;
mod runtime;
mod serve;
mod stream;
mod threads;

/// Zero-downtime restart: hand the listening sockets to a successor
/// process, then stop (the same for every adapter).
#[cfg(unix)]
pub use graceful_core::restart;
pub use graceful_core::{Conn, ForceCause, Outcome, Reason, ServeConfig, Shutdown, SignalConfig};
pub use pool::WorkerPool;
pub use runtime::Runtime;
pub use serve::{serve, serve_blocking, serve_on};
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
