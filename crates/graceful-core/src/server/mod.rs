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
mod handshakes;
mod scope;
#[cfg(unix)]
mod serve;

pub(crate) use backoff::{is_fatal_accept_error, is_out_of_descriptors, Backoff};
pub use config::ServeConfig;
pub use conn::{Conn, HandlerOutput};
pub(crate) use connections::Connections;
pub use connections::{ConnTrack, SharedSocket};
#[cfg(unix)]
pub(crate) use handshakes::mark_shared;
pub(crate) use scope::ServerScope;
#[cfg(unix)]
pub use serve::{serve, Accept};
