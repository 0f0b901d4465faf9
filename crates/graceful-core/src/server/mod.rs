//! Server policy shared by every adapter: the accept loop, the registry of
//! live connections, back-off, and the configuration.
//!
//! Applications use [`ServeConfig`] and [`Conn`] (re-exported at the crate
//! root) through an adapter's `serve`; the rest is for adapter authors.

mod backoff;
mod config;
mod conn;
mod connections;
#[cfg(unix)]
mod handshakes;
mod scope;
#[cfg(unix)]
mod serve;

pub use backoff::{is_fatal_accept_error, is_out_of_descriptors, Backoff};
pub use config::ServeConfig;
pub use conn::{Conn, HandlerOutput};
pub use connections::{Closer, ConnTrack, Connections, SharedSocket};
#[cfg(unix)]
pub use handshakes::mark_shared;
pub use scope::ServerScope;
#[cfg(unix)]
pub use serve::{close_signal, run_conn, serve, take_backlog, Accept, RESTART_PRE_DRAIN};
