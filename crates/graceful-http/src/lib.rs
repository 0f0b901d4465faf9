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
//! - [`Readiness`]: the 200-then-503 endpoint for load balancers.
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
mod connection;
mod exec;
mod io;
mod readiness;
mod serve;
mod service;

pub use bounds::{BoxError, HttpBody, HttpService};
pub use connection::{serve_connection, HttpOptions};
pub use io::Io;
pub use readiness::Readiness;
pub use serve::serve;
