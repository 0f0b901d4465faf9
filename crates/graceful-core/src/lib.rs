//! Runtime-free graceful shutdown: one model of "stop without losing work"
//! that every runtime adapter shares.
//!
//! A service that is stopped must notice the request, stop taking new work,
//! let in-flight work finish within a deadline, force and name what is left,
//! clean up in order, and exit with a meaningful code. This crate holds that
//! model; `graceful-tokio`, `graceful-smol` and `graceful-std` bind it to a
//! runtime, OS signals and servers.
//!
//! Unix only (Linux, macOS, the BSDs): the model relies on POSIX signals and
//! `shutdown(2)` on sockets; a build for another target stops with that
//! message.
//!
//! # Concepts
//!
//! - [`Shutdown`]: a cheap, cloneable handle with three sticky phases —
//!   *triggered*, *forced*, *drained* — each a future, a check and a
//!   blocking wait.
//! - [`Reason`]: why it started (a [`Signal`], a request, a parent, an
//!   error); the first one wins.
//! - [`Guard`]: one unit of in-flight work, a `Weak::upgrade` with no
//!   allocation; [`NamedGuard`]s are listed in the [`Report`].
//! - [`deadline`] / [`block_on_until`]: any future against any timer, and the
//!   blocking twin.
//! - [`Shutdown::on_triggered`]: hooks for what is not a guard.
//! - [`Shutdown::child`], [`Shutdown::stage_after`]: order — "the pool closes
//!   after every request drained" in one line.
//! - [`Shutdown::enforce_deadline`]: wait with a deadline on any [`Runtime`], log
//!   progress, force and report, and return an [`Outcome`] with an exit
//!   code.
//! - [`SignalConfig`], [`Escalation`]: what stop signals do (first triggers,
//!   second forces, third exits).
//! - [`server`]: the accept loop and connection registry the adapters share.
//! - [`check_kill_budget`]: warns when a stop would outlast the
//!   supervisor's kill budget (Kubernetes, systemd, supervisord);
//!   `systemd`: `READY=1`, `STOPPING=1`, `EXTEND_TIMEOUT_USEC` and socket
//!   activation.
//!
//! # When not to use it
//!
//! If one task owns all the work and can be cancelled at any point, a
//! cancellation token is enough. If you only need tokio, `tokio-util`'s
//! `CancellationToken` + `TaskTracker` cover the basics; this crate adds the
//! deadline, the report, ordering, signals escalation and servers, on any
//! runtime.
//!
//! # Example
//!
//! ```
//! use graceful_core::{Reason, Shutdown};
//!
//! futures::executor::block_on(async {
//!     let shutdown = Shutdown::new();
//!     shutdown.on_triggered(|reason| println!("stopping: {reason}"));
//!
//!     let job = shutdown.guard_named("nightly export");
//!     let worker = {
//!         let shutdown = shutdown.clone();
//!         std::thread::spawn(move || {
//!             shutdown.wait_triggered();
//!             // ... finish the current step, then:
//!             drop(job);
//!         })
//!     };
//!
//!     assert!(shutdown.trigger(Reason::requested()));
//!     shutdown.drained().await;
//!     worker.join().unwrap();
//!     assert!(shutdown.report().is_empty());
//! });
//! ```

#![forbid(unsafe_code)]

#[cfg(not(unix))]
compile_error!("graceful supports Unix only (Linux, macOS, the BSDs): it relies on POSIX signals and shutdown(2) on sockets");

mod block_on;
mod deadline;
mod drain;
mod guard;
mod kill_budget;
mod phase;
mod reason;
mod report;
#[cfg(all(unix, feature = "restart"))]
pub mod restart;
mod runtime;
pub mod server;
mod shutdown;
mod signal;
mod slab;
mod state;
mod sync;
#[cfg(all(unix, feature = "systemd"))]
pub mod systemd;
mod waker_set;

pub use block_on::block_on;
#[cfg(not(loom))]
pub use deadline::block_on_until;
pub use deadline::{deadline, Elapsed};
pub use drain::Outcome;
#[doc(hidden)]
pub use futures_util::io as __futures_io;
pub use guard::{Guard, NamedGuard};
pub use kill_budget::{check_kill_budget, KillBudget};
pub use reason::{ForceCause, Reason, Signal};
pub use report::{GuardInfo, Report};
pub use runtime::Runtime;
pub use server::{Conn, ServeConfig};
pub use shutdown::Shutdown;
#[cfg(all(unix, feature = "signals"))]
pub use signal::listen_signals;
pub use signal::{Escalation, SignalAction, SignalConfig};

/// The named futures returned by this crate's methods.
pub mod futures {
    pub use crate::deadline::Deadline;
    pub use crate::drain::EnforceDeadline;
    pub use crate::phase::{Drained, Forced, Triggered};
}
