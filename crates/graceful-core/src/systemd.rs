//! systemd integration: the notify protocol (`READY=1`, `STOPPING=1`,
//! `EXTEND_TIMEOUT_USEC`) through `sd-notify`, and socket activation
//! (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`) through `listenfd`.
//!
//! Everything here does nothing when the process was not started by
//! systemd (`NOTIFY_SOCKET` or `LISTEN_FDS` unset).

use std::future::{poll_fn, Future};
use std::io;
use std::net::TcpListener;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::runtime::Runtime;
use crate::shutdown::Shutdown;

/// Whether a service manager listens for notifications (`NOTIFY_SOCKET`).
pub fn is_notify_enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// Tells systemd the service is ready (`READY=1`); call it once the
/// listeners are bound and serving. Does nothing without `NOTIFY_SOCKET`.
pub fn notify_ready() -> io::Result<()> {
    sd_notify::notify(&[NotifyState::Ready, NotifyState::Status("serving")])
}

/// How often [`watch_stop`] checks the drain's progress.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Added to every extension, for the settle time and the exit itself.
const MARGIN: Duration = Duration::from_secs(5);

/// Keeps systemd informed while `shutdown` stops, on `rt`'s timer:
///
/// - at the trigger, `STOPPING=1` and `EXTEND_TIMEOUT_USEC` for the whole
///   stop `budget` (pre-drain + drain deadline) plus a margin, so a unit's
///   `TimeoutStopSec` shorter than the configured drain does not kill it;
/// - while the drain makes progress (fewer guards held than at the last
///   check, once a second), `EXTEND_TIMEOUT_USEC` again for the time left
///   to the budget plus the margin, with a `STATUS=` line;
/// - nothing when `NOTIFY_SOCKET` is unset (no task is spawned).
///
/// A drain that makes no progress is not extended beyond its own budget:
/// the process's own deadline ends it first.
///
/// A process that handed its listeners to a successor
/// ([`Reason::Restarted`](crate::Reason::Restarted)) says nothing: the
/// service is not stopping, and the manager already follows the successor
/// (`MAINPID=`).
pub fn watch_stop<R: Runtime>(rt: &R, shutdown: &Shutdown, budget: Duration) {
    if !is_notify_enabled() {
        return;
    }
    // Sent by the drain itself, before anything waiting for it wakes (and
    // may exit the process).
    let s = shutdown.clone();
    shutdown.on_drained(move || {
        if !s.is_restarted() {
            send(&[NotifyState::Status("drained, exiting")])
        }
    });
    // Sent by a hook, which runs before the trigger lets the shutdown
    // drain: a stop with nothing to drain exits at once, maybe before a
    // task would have run.
    shutdown.on_triggered(move |reason| {
        if !reason.is_restart() {
            send(&[
                NotifyState::Stopping,
                NotifyState::ExtendTimeoutUsec(usec(budget + MARGIN)),
                NotifyState::Status("stopping"),
            ]);
        }
    });
    let rt2 = rt.clone();
    let shutdown = shutdown.clone();
    rt.spawn(async move {
        shutdown.triggered().await;
        if shutdown.is_restarted() {
            return;
        }
        let started = rt2.now();
        let end = started + budget;
        let mut held = shutdown.report().total();
        let mut drained = pin!(shutdown.drained());
        loop {
            let mut tick = pin!(rt2.sleep(CHECK_EVERY));
            let done = poll_fn(|cx| {
                if drained.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(true);
                }
                tick.as_mut().poll(cx).map(|_| false)
            })
            .await;
            if done {
                return;
            }
            let now_held = shutdown.report().total();
            if now_held < held {
                held = now_held;
                let left = end.saturating_duration_since(rt2.now());
                send(&[
                    NotifyState::ExtendTimeoutUsec(usec(left + MARGIN)),
                    NotifyState::Status(&format!("stopping: {held} guard(s) left")),
                ]);
            }
        }
    });
}

fn usec(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// A listening socket passed by socket activation.
#[derive(Debug)]
pub struct ActivatedListener {
    /// Its name from `LISTEN_FDNAMES` (the unit's `FileDescriptorName=`),
    /// if systemd gave one.
    pub name: Option<String>,
    /// The socket.
    pub listener: TcpListener,
}

/// The TCP listeners this process was started with by socket activation:
/// `LISTEN_FDS` descriptors from fd 3, only if `LISTEN_PID` is this
/// process (or unset), named by `LISTEN_FDNAMES`. Empty when not
/// activated. Descriptors that are not TCP listening sockets are an error.
///
/// The process that passed them may still hold them (systemd keeps its
/// sockets and queues connections for the next start): a server closing one
/// leaves the socket as it found it. A listener that a restart handed here
/// (see [`restart`](crate::restart)), which the restarting process served
/// with [`ServeConfig::exclusive_listener`](crate::ServeConfig::exclusive_listener)
/// and held alone, is this process's alone once that process has closed
/// it (its pre-drain over, a second or more after its handover) or
/// exited: a server with `exclusive_listener` then closes it as one it
/// bound.
///
/// Reads and clears the activation variables, `LISTEN_PID`, `LISTEN_FDS`,
/// `LISTEN_FDS_FIRST_FD`, `LISTEN_FDNAMES` and the restart's
/// `GRACEFUL_RESTART_ALONE` (so children do not inherit them): call it
/// once, early in `main`, before starting threads or other processes.
pub fn activated_listeners() -> io::Result<Vec<ActivatedListener>> {
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|v| v.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    // listenfd clears LISTEN_PID and LISTEN_FDS; the names go with them.
    std::env::remove_var("LISTEN_FDNAMES");
    let mut fds = listenfd::ListenFd::from_env();
    std::env::remove_var("LISTEN_FDS_FIRST_FD");
    let handed = crate::server::take_handed_alone(fds.len());
    let mut out = Vec::with_capacity(fds.len());
    for i in 0..fds.len() {
        if let Some(listener) = fds.take_tcp_listener(i)? {
            match &handed {
                Some((parent, alone)) if alone.get(i) == Some(&true) => {
                    crate::server::mark_shared_while_parent(&listener, *parent)
                }
                _ => {
                    crate::server::mark_shared(&listener);
                }
            }
            out.push(ActivatedListener {
                name: names.get(i).filter(|n| !n.is_empty()).cloned(),
                listener,
            });
        }
    }
    Ok(out)
}

/// The activated listener named `name`, or else the first one; `None` when
/// the process was not socket-activated. See [`activated_listeners`].
pub fn activated_listener(name: &str) -> io::Result<Option<TcpListener>> {
    let mut all = activated_listeners()?;
    let pick = all
        .iter()
        .position(|l| l.name.as_deref() == Some(name))
        .unwrap_or(0);
    Ok((!all.is_empty()).then(|| all.swap_remove(pick).listener))
}
