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
