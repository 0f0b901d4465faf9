//! Zero-downtime restart: hand the listening sockets to a successor
//! process, then stop.
//!
//! On the restart signal (SIGHUP by default, or SIGUSR2) or a call to
//! [`Restarter::restart`], the process starts its successor: the same
//! executable path (read again from disk, so a replaced binary takes over),
//! the same arguments, working directory and environment, with every
//! listening socket inherited from fd 3 on and named in `LISTEN_FDS`,
//! `LISTEN_PID` and `LISTEN_FDNAMES`, exactly as socket activation passes
//! them: the successor takes them through
//! [`systemd::activated_listeners`](crate::systemd::activated_listeners).
//! (`/bin/sh` gives the successor its PID in `LISTEN_PID`; on a system
//! without it, a distroless image, the successor is started directly and
//! `LISTEN_PID` left unset, which `activated_listeners` accepts: it must
//! then take them before it starts any other process, which would inherit
//! them otherwise.)
//! The sockets are never closed nor bound again, so no connect is refused:
//! both processes accept from the same queue until the old one closes its
//! listener. `GRACEFUL_RESTART_ALONE` tells the successor which of them
//! this process held alone (a server served it with
//! [`ServeConfig::exclusive_listener`](crate::ServeConfig::exclusive_listener),
//! and no other process holds it): once this process has closed them (its
//! pre-drain over, a second or more after its handover) or exited, the
//! successor closes those as its own, handshakes stopped first.
//!
//! The successor says it is ready with [`notify_ready`] (a datagram on a
//! socket the parent made for this restart, named in
//! `GRACEFUL_RESTART_READY`, with the parent's PID in
//! `GRACEFUL_RESTART_READY_PID` so that a process the successor starts,
//! which inherits both, cannot say it), once it serves. The parent waits
//! for that up to [`RestartConfig::ready_timeout`]; if the successor exits
//! first or times out, the parent kills it, logs why and keeps serving as
//! if nothing happened. Once it is ready, the parent triggers its shutdown with
//! [`Reason::Restarted`] and stops like on SIGTERM: its listeners close, the
//! work in flight finishes, and the process exits 0.
//!
//! One restart at a time: a request while one runs is refused and logged,
//! and so is one after the handover. One in a successor whose predecessor
//! still holds a listener it handed alone (it serves a second after its
//! handover, or its pre-drain delay if longer) waits until the predecessor
//! lets go, up to the ready timeout: were this process to hand over and
//! exit first, its successor could be left the only holder while the
//! predecessor's close took itself for the last. A stop of the parent
//! while its successor is not ready yet stops the successor too (SIGTERM): the
//! successor is held like work in flight on the shutdown given to the
//! [`Restarter`] (its drain waits for it, its report names it, its force
//! kills it), and [`Restarter::finish_within`] bounds the exit's wait for
//! it by the stop's budget where the deadline is a stage's. An exit at
//! once on a third stop signal, which waits for nothing, still sends it
//! SIGTERM. A listener handed to a successor that failed is this
//! process's alone again once the successor is gone. Under systemd
//! (`NOTIFY_SOCKET`), the parent tells the manager the successor's PID
//! (`MAINPID=`) once it is ready, so a `Type=notify` unit with
//! `NotifyAccess=all` follows the new process. A PID file, when
//! configured, is replaced atomically by whichever process is current.

use std::ffi::OsString;
use std::io;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};

use crate::reason::Reason;
use crate::shutdown::Shutdown;

/// The variable naming the socket a restarting parent waits on.
pub const READY_ENV: &str = "GRACEFUL_RESTART_READY";

/// The variable naming the restarting parent's PID, beside [`READY_ENV`].
pub const READY_PID_ENV: &str = "GRACEFUL_RESTART_READY_PID";

/// The successors started and not handed over yet (not ready), by PID,
/// with the directory of the socket their parent waits on.
static STARTING: Mutex<Vec<(u32, PathBuf)>> = Mutex::new(Vec::new());

/// Sends SIGTERM to every successor that is starting: the process is about
/// to exit at once (a third stop signal) and will not stop them itself, so
/// none is left behind to become ready and serve after this process was
/// told to stop. Removes the directories of their ready sockets, which the
/// exit would leave behind. Called by the signal handling just before that
/// exit.
pub(crate) fn stop_starting_successors() {
    for (pid, dir) in STARTING.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        let pid = nix::unistd::Pid::from_raw(*pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Lists a starting successor in [`STARTING`] while it lives.
struct Starting(u32);

impl Starting {
    fn new(pid: u32, ready: &ReadySocket) -> Starting {
        STARTING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((pid, ready.dir.clone()));
        Starting(pid)
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        STARTING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(pid, _)| *pid != self.0);
    }
}

/// The signal that asks for a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RestartSignal {
    /// `SIGHUP`, the conventional "reload" signal.
    Hangup,
    /// `SIGUSR2`, as tableflip and nginx's binary upgrade use.
    User2,
}

impl RestartSignal {
    /// The signal's number on this platform.
    pub fn number(self) -> i32 {
        match self {
            RestartSignal::Hangup => signal_hook::consts::SIGHUP,
            RestartSignal::User2 => signal_hook::consts::SIGUSR2,
        }
    }

    /// The conventional name, such as `SIGHUP`.
    pub const fn name(self) -> &'static str {
        match self {
            RestartSignal::Hangup => "SIGHUP",
            RestartSignal::User2 => "SIGUSR2",
        }
    }

    /// The signal named `name` (`SIGHUP`, `HUP`, `SIGUSR2`, `USR2`).
    pub fn from_name(name: &str) -> Option<RestartSignal> {
        match name.trim_start_matches("SIG") {
            "HUP" => Some(RestartSignal::Hangup),
            "USR2" => Some(RestartSignal::User2),
            _ => None,
        }
    }
}

/// How a process restarts.
#[derive(Debug, Clone)]
pub struct RestartConfig {
    signal: Option<RestartSignal>,
    ready_timeout: Duration,
    pid_file: Option<PathBuf>,
}

impl Default for RestartConfig {
    fn default() -> Self {
        RestartConfig {
            signal: Some(RestartSignal::Hangup),
            ready_timeout: Duration::from_secs(60),
            pid_file: None,
        }
    }
}

impl RestartConfig {
    /// SIGHUP restarts, the successor has 60 s to be ready, no PID file.
    pub fn new() -> Self {
        Self::default()
    }

    /// The signal that restarts; `None` for restarts from code only.
    pub fn signal(mut self, signal: Option<RestartSignal>) -> Self {
        self.signal = signal;
        self
    }

    /// How long the successor has to say it is ready.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// A file holding the PID of the current process, written atomically
    /// (a new file renamed over it) at [`Restarter::new`] and by each
    /// successor.
    pub fn pid_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.pid_file = Some(path.into());
        self
    }
}

/// What went wrong with one restart. The process keeps serving.
#[derive(Debug)]
#[non_exhaustive]
pub enum RestartError {
    /// A restart is running, or the process already handed over.
    Busy,
    /// The shutdown was triggered: the process is stopping.
    Stopping,
    /// The successor could not be started.
    Spawn(io::Error),
    /// The successor exited before it was ready.
    Exited(std::process::ExitStatus),
    /// The successor was not ready in time.
    TimedOut(Duration),
    /// The process that handed the listeners here (this one's parent)
    /// still held them when the ready timeout ran out: a restart waits
    /// for it to let go (it serves a second, or its pre-drain delay, after
    /// its handover), since a successor started before could be left the
    /// only one holding them should this process exit, with the
    /// predecessor's close taken for the last.
    PredecessorServes,
}

impl std::fmt::Display for RestartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestartError::Busy => f.write_str("a restart is in progress or done"),
            RestartError::Stopping => f.write_str("the process is stopping"),
            RestartError::Spawn(e) => write!(f, "cannot start the successor: {e}"),
            RestartError::Exited(s) => write!(f, "the successor exited before it was ready ({s})"),
            RestartError::TimedOut(t) => write!(f, "the successor was not ready within {t:?}"),
            RestartError::PredecessorServes => {
                f.write_str("the process this one replaced still holds the listeners")
            }
        }
    }
}

impl std::error::Error for RestartError {}

/// Restarts this process with its listening sockets: see the [module
/// docs](self).
#[derive(Clone)]
pub struct Restarter {
    inner: Arc<Inner>,
}

struct Inner {
    shutdown: Shutdown,
    config: RestartConfig,
    exe: PathBuf,
    args: Vec<OsString>,
    /// Our own references to the listening sockets, dropped when the
    /// shutdown triggers: a stopping process must not keep a listener
    /// open (its connects would queue with nobody to accept them).
    listeners: Mutex<Option<Vec<(String, TcpListener)>>>,
    busy: AtomicBool,
    /// Whether a successor is starting (not ready yet, not stopped yet).
    starting: Mutex<bool>,
    started: Condvar,
    /// Set when the process can wait no longer: a successor being stopped
    /// is killed at once.
    give_up: AtomicBool,
}

impl std::fmt::Debug for Restarter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restarter")
            .field("exe", &self.inner.exe)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Restarter {
    /// A restarter for `shutdown` handing over `listeners` (each with the
    /// name the successor finds it by, as in `LISTEN_FDNAMES`). Takes a
    /// duplicate of each listener: the caller keeps and serves its own.
    /// Writes the PID file, if configured (unless this process is a
    /// successor still starting: the process it replaces writes it once it
    /// is ready), and listens for the restart signal, if any.
    ///
    /// Call it early: the executable's path is taken now, before anything
    /// could replace the file.
    pub fn new(
        shutdown: &Shutdown,
        listeners: &[(&str, &TcpListener)],
        config: RestartConfig,
    ) -> io::Result<Restarter> {
        let args = std::env::args_os().skip(1).collect();
        Restarter::with_command(shutdown, listeners, config, current_exe()?, args)
    }

    /// [`new`](Self::new), its successor started as `exe` with `args`.
    fn with_command(
        shutdown: &Shutdown,
        listeners: &[(&str, &TcpListener)],
        config: RestartConfig,
        exe: PathBuf,
        args: Vec<OsString>,
    ) -> io::Result<Restarter> {
        let owned = listeners
            .iter()
            .map(|(name, l)| Ok((name.to_string(), l.try_clone()?)))
            .collect::<io::Result<Vec<_>>>()?;
        // A successor's PID goes in the file once it is ready, written by
        // the process it replaces: until then that one is current.
        if let (Some(path), None) = (&config.pid_file, ready_socket()) {
            write_pid_file(path, std::process::id())?;
        }
        let restarter = Restarter {
            inner: Arc::new(Inner {
                shutdown: shutdown.clone(),
                config,
                exe,
                args,
                listeners: Mutex::new(Some(owned)),
                busy: AtomicBool::new(false),
                starting: Mutex::new(false),
                started: Condvar::new(),
                give_up: AtomicBool::new(false),
            }),
        };
        let weak = Arc::downgrade(&restarter.inner);
        shutdown.on_triggered(move |_| {
            if let Some(inner) = weak.upgrade() {
                inner
                    .listeners
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
            }
        });
        if let Some(signal) = restarter.inner.config.signal {
            restarter.listen(signal)?;
        }
        Ok(restarter)
    }

    fn listen(&self, signal: RestartSignal) -> io::Result<()> {
        let mut signals = signal_hook::iterator::Signals::new([signal.number()])?;
        let me = self.clone();
        std::thread::Builder::new()
            .name("graceful-restart-signal".into())
            .spawn(move || {
                for _ in signals.forever() {
                    tracing::info!("{} received: restarting", signal.name());
                    let me = me.clone();
                    // The restart waits for the successor on a thread of its
                    // own: the next signal finds it busy, not queued.
                    let _ = std::thread::Builder::new()
                        .name("graceful-restart".into())
                        .spawn(move || match me.restart() {
                            Ok(_) => {}
                            Err(e @ (RestartError::Busy | RestartError::Stopping)) => {
                                tracing::warn!("{} ignored: {e}", signal.name())
                            }
                            Err(e) => tracing::warn!("restart failed: {e}; still serving"),
                        });
                }
            })?;
        Ok(())
    }

    /// Starts the successor, waits for it to be ready, and triggers this
    /// process's shutdown with [`Reason::Restarted`]; returns the
    /// successor's PID. Blocks up to the ready timeout. On an error the
    /// successor (if any) was stopped and this process goes on serving.
    pub fn restart(&self) -> Result<u32, RestartError> {
        let inner = &self.inner;
        if inner.busy.swap(true, Ordering::SeqCst) {
            return Err(RestartError::Busy);
        }
        inner.set_starting(true);
        let result = inner.hand_over();
        // Before `busy` is cleared: a next restart's `set_starting(true)`
        // must not be undone by this one's end.
        inner.set_starting(false);
        if result.is_err() {
            inner.busy.store(false, Ordering::SeqCst);
        }
        result
    }

    /// Waits until no successor is starting: a restart in progress ends
    /// (handed over, failed, or stopped because this process stops). Call
    /// it before the process exits, so that a stop during a restart never
    /// leaves a half-started successor behind. A handover is done once it
    /// is decided and the PID file and systemd name the successor: the
    /// trigger's hooks that follow do not hold this wait (they are the
    /// stop's, bounded by its deadline like any other).
    pub fn finish(&self) {
        let mut starting = self.inner.starting();
        while *starting {
            starting = self
                .inner
                .started
                .wait(starting)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// [`finish`](Self::finish), bounded by the stop's budget: waits at
    /// most until `budget` after this process's trigger (its pre-drain
    /// delay and deadline, say). A successor still being stopped then
    /// (one that ignores SIGTERM, or is slow to stop) is killed at once,
    /// and logged. Returns whether the restart ended within the budget;
    /// false means work was forced (exit 1, B17). Final: call it just
    /// before the process exits. Once it gave up, every later restart
    /// stops its successor at once.
    pub fn finish_within(&self, budget: Duration) -> bool {
        let start = self
            .inner
            .shutdown
            .triggered_at()
            .unwrap_or_else(Instant::now);
        let deadline = start + budget;
        let mut starting = self.inner.starting();
        while *starting {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(starting);
                tracing::warn!("a restart outlasted the stop's deadline: its successor is killed");
                self.inner.give_up.store(true, Ordering::SeqCst);
                self.finish();
                return false;
            }
            starting = self
                .inner
                .started
                .wait_timeout(starting, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }
}

impl Inner {
    /// Whether a successor is starting, locked.
    fn starting(&self) -> std::sync::MutexGuard<'_, bool> {
        self.starting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records whether a successor is starting, and wakes [`Restarter::finish`].
    fn set_starting(&self, starting: bool) {
        *self.starting() = starting;
        self.started.notify_all();
    }

    /// Whether the predecessor that handed a listener here still holds it.
    fn predecessor_serves(&self) -> bool {
        let listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        listeners
            .iter()
            .flatten()
            .any(|(_, l)| crate::server::held_by_parent(l))
    }

    /// Waits, up to the ready timeout, until the predecessor that handed a
    /// listener here has let go of it (its pre-drain over, or exited): a
    /// restart asked meanwhile is put off, not refused.
    fn until_predecessor_let_go(&self) -> Result<(), RestartError> {
        if !self.predecessor_serves() {
            return Ok(());
        }
        tracing::info!("the process this one replaced still holds the listeners: waiting for it");
        let until = Instant::now() + self.config.ready_timeout;
        while self.predecessor_serves() {
            if self.shutdown.is_triggered() {
                return Err(RestartError::Stopping);
            }
            if Instant::now() >= until {
                return Err(RestartError::PredecessorServes);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn hand_over(&self) -> Result<u32, RestartError> {
        // Held until the successor is handed over, or stopped and reaped:
        // a stop during the restart drains only once the successor it
        // stops is gone, its deadline (or a second signal) bounds the wait
        // for that, and its report names the successor if it passes.
        // Taken before the trigger is looked at, so it is never one taken
        // after the shutdown drained (which would count nothing).
        let hold = self.shutdown.guard_named("restart");
        if self.shutdown.is_triggered() {
            return Err(RestartError::Stopping);
        }
        self.until_predecessor_let_go()?;
        let ready = ReadySocket::new().map_err(RestartError::Spawn)?;
        let (mut child, marked) = self.spawn(ready.path()).map_err(RestartError::Spawn)?;
        let pid = child.id();
        let hold = {
            let named = self
                .shutdown
                .guard_named(format!("successor {pid} starting"));
            drop(hold);
            named
        };
        // Listed until it is handed over, or stopped and reaped.
        let starting = Starting::new(pid, &ready);
        tracing::info!(
            "started successor {pid}; waiting up to {:?} for it to be ready",
            self.config.ready_timeout
        );
        let reason = Reason::Restarted { successor: pid };
        if let Err(e) = self.until_triggered(&mut child, ready, &reason) {
            // The successor is gone: the listeners are this process's alone
            // again.
            marked.into_iter().for_each(crate::server::unmark_shared);
            return Err(e);
        }
        // Handed over: an exit at once from now on leaves the successor
        // serving, and the stop no longer waits for it. The listeners are
        // shared while it holds them: should it exit before this process
        // closes them, that close is their last (and takes their queue).
        drop((starting, hold));
        for marked in marked {
            crate::server::mark_held_by_child(marked, pid);
        }
        tracing::info!("successor {pid} is ready; handing over");
        if let Some(path) = &self.config.pid_file {
            if let Err(e) = write_pid_file(path, pid) {
                tracing::warn!("cannot write the PID file {}: {e}", path.display());
            }
        }
        #[cfg(feature = "systemd")]
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::MainPid(pid)]) {
            tracing::warn!("cannot tell systemd the successor's PID: {e}");
        }
        // Nothing is left half started: `finish` returns while the
        // trigger's hooks run, which the stop's deadline bounds (a hook
        // that blocks must not hold the exit past it, nor past a second
        // signal).
        self.set_starting(false);
        self.shutdown.finish_trigger(reason);
        // The successor lives on after this process exits; nothing waits
        // for it here.
        drop(child);
        Ok(pid)
    }

    /// Waits for the successor to be ready, then starts this process's
    /// trigger with `reason`. On an error the successor was stopped (or
    /// exited) and was reaped.
    fn until_triggered(
        &self,
        child: &mut Child,
        ready: ReadySocket,
        reason: &Reason,
    ) -> Result<(), RestartError> {
        let until = Instant::now() + self.config.ready_timeout;
        loop {
            match ready.wait(Duration::from_millis(50)) {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => {
                    self.stop_child(child);
                    return Err(RestartError::Spawn(e));
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(RestartError::Exited(status));
            }
            // Stopping, or the process can wait no longer (it exits on a
            // stage's outcome without a trigger of this shutdown).
            if self.shutdown.is_triggered() || self.give_up.load(Ordering::SeqCst) {
                return Err(self.stopping(child));
            }
            if Instant::now() >= until {
                self.stop_child(child);
                return Err(RestartError::TimedOut(self.config.ready_timeout));
            }
        }
        // Not needed once the successor is ready: removed before the
        // trigger's hooks, during which this process may exit at once.
        drop(ready);
        // The handover is the trigger: a stop that came first wins, and the
        // successor stops with this process.
        if !self.shutdown.start_trigger(reason) {
            return Err(self.stopping(child));
        }
        Ok(())
    }

    /// This process stops while its successor is starting: stops it too.
    fn stopping(&self, child: &mut Child) -> RestartError {
        tracing::warn!(
            "stopping during a restart: stopping successor {} too",
            child.id()
        );
        self.stop_child(child);
        RestartError::Stopping
    }

    /// Sends SIGTERM to a successor that is not taking over and waits for
    /// it; kills it after 30 s, or at once when this process's stop is
    /// forced or can wait no longer ([`Restarter::finish_within`]).
    fn stop_child(&self, child: &mut Child) {
        let pid = child.id();
        let signal = |s| {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), s);
        };
        signal(nix::sys::signal::Signal::SIGTERM);
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    tracing::info!("successor {pid} stopped ({status})");
                    return;
                }
                Ok(None)
                    if Instant::now() < until
                        && !self.shutdown.is_forced()
                        && !self.give_up.load(Ordering::SeqCst) =>
                {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    signal(nix::sys::signal::Signal::SIGKILL);
                    let _ = child.wait();
                    tracing::info!("successor {pid} killed");
                    return;
                }
            }
        }
    }

    /// Starts the successor with the listeners; returns it, and the marks
    /// that the listeners are shared (taken back if it fails).
    fn spawn(&self, ready: &Path) -> io::Result<(Child, Vec<crate::server::Marked>)> {
        let listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        let Some(listeners) = listeners.as_ref() else {
            return Err(io::Error::other("the listeners are closed"));
        };
        // Which this process holds alone: the successor holds those alone
        // once this process has exited.
        let alone = crate::server::handed_alone(listeners.iter().map(|(_, l)| l));
        // From now on the successor may hold them too.
        let marked: Vec<_> = listeners
            .iter()
            .filter_map(|(_, l)| crate::server::mark_shared(l))
            .collect();
        let spawned = (|| {
            let mut mappings = Vec::with_capacity(listeners.len());
            for (i, (_, l)) in listeners.iter().enumerate() {
                mappings.push(FdMapping {
                    parent_fd: OwnedFd::from(l.try_clone()?),
                    child_fd: 3 + i as i32,
                });
            }
            let names: Vec<&str> = listeners.iter().map(|(n, _)| n.as_str()).collect();
            let mut cmd = match shell() {
                // `sh` sets LISTEN_PID to its own PID, which `exec` keeps:
                // the successor's, and writes it first in
                // GRACEFUL_RESTART_ALONE too, so that neither is taken by
                // another process. The descriptors are mapped before `sh`
                // runs.
                Some(sh) => {
                    let mut cmd = Command::new(sh);
                    cmd.arg("-c")
                        .arg(concat!(
                            "LISTEN_PID=$$; GRACEFUL_RESTART_ALONE=$$:$GRACEFUL_RESTART_ALONE; ",
                            "export LISTEN_PID GRACEFUL_RESTART_ALONE; exec \"$0\" \"$@\""
                        ))
                        .arg(&self.exe)
                        .env(crate::server::HANDED_ALONE_ENV, alone);
                    cmd
                }
                // No shell (a distroless image): the successor's PID is not
                // known before it runs, so LISTEN_PID is left unset, which
                // `activated_listeners` accepts, and GRACEFUL_RESTART_ALONE
                // names no process first (the successor's parent is still
                // checked).
                None => {
                    let mut cmd = Command::new(&self.exe);
                    cmd.env_remove("LISTEN_PID")
                        .env(crate::server::HANDED_ALONE_ENV, format!("-:{alone}"));
                    cmd
                }
            };
            // The descriptors are at 3.., whatever this process was told.
            cmd.env_remove("LISTEN_FDS_FIRST_FD")
                .args(&self.args)
                .env("LISTEN_FDS", listeners.len().to_string())
                .env("LISTEN_FDNAMES", names.join(":"))
                .env(READY_ENV, ready)
                .env(READY_PID_ENV, std::process::id().to_string());
            cmd.fd_mappings(mappings)
                .map_err(|e| io::Error::other(e.to_string()))?;
            cmd.spawn()
        })();
        match spawned {
            Ok(child) => Ok((child, marked)),
            Err(e) => {
                marked.into_iter().for_each(crate::server::unmark_shared);
                Err(e)
            }
        }
    }
}

/// The shell that starts a successor, to give it its PID in `LISTEN_PID`:
/// `/bin/sh`, where the system has one.
fn shell() -> Option<&'static Path> {
    #[cfg(test)]
    if tests::NO_SHELL.load(Ordering::SeqCst) {
        return None;
    }
    let sh = Path::new("/bin/sh");
    sh.exists().then_some(sh)
}

/// The socket a restarting parent waits on, in a directory of its own.
struct ReadySocket {
    dir: PathBuf,
    path: PathBuf,
    socket: UnixDatagram,
}

/// The number in the next ready socket's directory name.
static NEXT_READY_DIR: AtomicUsize = AtomicUsize::new(0);

impl ReadySocket {
    /// A socket in a new directory named after this process. A directory
    /// of that name left by an earlier process with the same PID (one that
    /// was killed, or exited at once, mid-restart) is passed over: PIDs
    /// are reused, and such a directory would otherwise fail every restart
    /// of this process.
    fn new() -> io::Result<ReadySocket> {
        let mut tries = 0;
        let dir = loop {
            let dir = std::env::temp_dir().join(format!(
                "graceful-restart-{}-{}",
                std::process::id(),
                NEXT_READY_DIR.fetch_add(1, Ordering::SeqCst)
            ));
            match std::fs::create_dir(&dir) {
                Ok(()) => break dir,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 1000 => {
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let path = dir.join("ready");
        match UnixDatagram::bind(&path) {
            Ok(socket) => Ok(ReadySocket { dir, path, socket }),
            Err(e) => {
                // (Out of descriptors, say): no directory is left behind.
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }

    /// Waits up to `within` for the ready message.
    fn wait(&self, within: Duration) -> io::Result<bool> {
        self.socket.set_read_timeout(Some(within))?;
        let mut buf = [0u8; 64];
        match self.socket.recv(&mut buf) {
            Ok(n) => Ok(buf[..n].starts_with(b"READY=1")),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for ReadySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Tells the process that started this one in a restart that it is ready
/// (it serves on the sockets it inherited); does nothing otherwise, also
/// in a process that a successor started (which inherits the variable).
/// Call it once serving, like
/// [`systemd::notify_ready`](crate::systemd::notify_ready).
pub fn notify_ready() -> io::Result<()> {
    let Some(path) = ready_socket() else {
        return Ok(());
    };
    UnixDatagram::unbound()?.send_to(b"READY=1", path)?;
    Ok(())
}

/// The socket named in `GRACEFUL_RESTART_READY`, if this process is the
/// successor it was set for: `GRACEFUL_RESTART_READY_PID` names this
/// process's parent (or is unset, as a parent built before it was added
/// leaves it). A process the successor starts inherits both, and ignores
/// them.
fn ready_socket() -> Option<PathBuf> {
    let socket = std::env::var_os(READY_ENV)?;
    let named = std::env::var_os(READY_PID_ENV);
    ready_for(
        socket,
        named.as_deref(),
        std::os::unix::process::parent_id(),
    )
}

/// `socket` if `named` (the value of `GRACEFUL_RESTART_READY_PID`, if set)
/// is `parent`'s PID.
fn ready_for(socket: OsString, named: Option<&std::ffi::OsStr>, parent: u32) -> Option<PathBuf> {
    let for_parent = named.map_or(true, |pid| pid.to_str() == Some(&parent.to_string()));
    (for_parent && !socket.is_empty()).then(|| PathBuf::from(socket))
}

/// The path of the running executable, as it was started (not the
/// `(deleted)` name of a replaced file).
fn current_exe() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => PathBuf::from(path),
        None => exe,
    })
}

/// Writes `pid` to `path` atomically: a new file renamed over the old.
fn write_pid_file(path: &Path, pid: u32) -> io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{pid}"));
    std::fs::write(&tmp, format!("{pid}\n"))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exit at the third stop signal sends SIGTERM to a successor that
    /// is starting, and to none once it was handed over, and removes the
    /// starting one's ready socket.
    #[test]
    fn the_exit_at_the_third_signal_stops_a_starting_successor_and_removes_its_socket() {
        use crate::reason::Signal;
        use crate::signal::{Escalation, SignalConfig};
        use std::os::unix::process::ExitStatusExt;
        let spawn = || {
            Command::new("sleep")
                .arg("600")
                .spawn()
                .expect("spawn sleep")
        };
        let (mut starting_child, mut handed_over) = (spawn(), spawn());
        let ready = ReadySocket::new().unwrap();
        let ready_dir = ready.dir.clone();
        let listed = Starting::new(starting_child.id(), &ready);
        // The exit at once leaves the socket as it is, never dropped.
        std::mem::forget(ready);
        drop(Starting::new(
            handed_over.id(),
            &ReadySocket::new().unwrap(),
        ));
        let exits = Arc::new(Mutex::new(Vec::new()));
        let e = exits.clone();
        let shutdown = Shutdown::new();
        let _work = shutdown.guard();
        let esc = Escalation::new(
            shutdown,
            SignalConfig::default().on_exit(move |code| e.lock().unwrap().push(code)),
        );
        for _ in 0..3 {
            esc.handle(Signal::Terminate);
        }
        assert_eq!(*exits.lock().unwrap(), [143]);
        let until = Instant::now() + Duration::from_secs(5);
        let status = loop {
            match starting_child.try_wait().unwrap() {
                Some(status) => break status,
                None if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
                None => {
                    let _ = starting_child.kill();
                    let _ = starting_child.wait();
                    let _ = handed_over.kill();
                    let _ = handed_over.wait();
                    panic!("the starting successor was not stopped");
                }
            }
        };
        assert_eq!(
            status.signal(),
            Some(nix::sys::signal::Signal::SIGTERM as i32),
            "{status}"
        );
        assert!(
            !ready_dir.exists(),
            "the starting successor's ready socket was left behind"
        );
        drop(listed);
        assert!(
            handed_over.try_wait().unwrap().is_none(),
            "a successor no longer starting was signalled"
        );
        handed_over.kill().unwrap();
        handed_over.wait().unwrap();
    }

    /// Makes [`shell`] find none, as on a system without `/bin/sh`.
    pub(super) static NO_SHELL: AtomicBool = AtomicBool::new(false);

    /// Sets [`NO_SHELL`] until dropped.
    struct NoShell;

    impl NoShell {
        fn set(no_shell: bool) -> NoShell {
            NO_SHELL.store(no_shell, Ordering::SeqCst);
            NoShell
        }
    }

    impl Drop for NoShell {
        fn drop(&mut self) {
            NO_SHELL.store(false, Ordering::SeqCst);
        }
    }

    /// Run as a restart's successor: says it is ready only if it was
    /// started as `through_a_shell` says (`LISTEN_PID` its own PID, or
    /// unset), was told its parent held its one listener alone, and took
    /// that listener, named `web`; then waits to be killed (a minute at
    /// most).
    #[cfg(feature = "systemd")]
    fn take_the_listener_then_say_ready(through_a_shell: bool) {
        if std::env::var_os(READY_ENV).is_none() {
            return;
        }
        let listen_pid = std::env::var("LISTEN_PID").ok();
        let started_as_said = match through_a_shell {
            true => listen_pid == Some(std::process::id().to_string()),
            false => listen_pid.is_none(),
        };
        let parent = std::os::unix::process::parent_id();
        let told = crate::server::take_handed_alone(1) == Some((parent, vec![true]));
        let got = crate::systemd::activated_listeners().unwrap();
        let took = got.len() == 1 && got[0].name.as_deref() == Some("web");
        if started_as_said && told && took {
            notify_ready().unwrap();
        }
        std::thread::sleep(Duration::from_secs(60));
    }

    #[cfg(feature = "systemd")]
    #[test]
    #[ignore = "a successor the restart tests start"]
    fn successor_started_through_a_shell() {
        take_the_listener_then_say_ready(true);
    }

    #[cfg(feature = "systemd")]
    #[test]
    #[ignore = "a successor the restart tests start"]
    fn successor_started_directly() {
        take_the_listener_then_say_ready(false);
    }

    /// A successor takes the listeners handed to it, and learns which its
    /// predecessor held alone, started through the shell that gives it
    /// its `LISTEN_PID`, and on a system without one directly.
    #[cfg(feature = "systemd")]
    #[test]
    fn a_successor_takes_its_listeners_with_or_without_a_shell() {
        for (no_shell, successor) in [
            (false, "restart::tests::successor_started_through_a_shell"),
            (true, "restart::tests::successor_started_directly"),
        ] {
            let _shell = NoShell::set(no_shell);
            let shutdown = Shutdown::new();
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            crate::server::handshakes::declare_exclusive(&listener);
            let exe = std::env::current_exe().unwrap();
            let args = [successor, "--exact", "--ignored", "--quiet"].map(OsString::from);
            let config = RestartConfig::new()
                .signal(None)
                .ready_timeout(Duration::from_secs(10));
            let listeners = [("web", &listener)];
            let restarter =
                Restarter::with_command(&shutdown, &listeners, config, exe, args.to_vec()).unwrap();
            let pid = restarter
                .restart()
                .unwrap_or_else(|e| panic!("{successor}: {e}"));
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }

    /// Run by the tests below as a restart's successor: says it is ready,
    /// then waits to be killed (a minute at most).
    #[test]
    #[ignore = "a successor the restart tests start"]
    fn successor_that_says_ready() {
        if std::env::var_os(READY_ENV).is_some() {
            notify_ready().unwrap();
            std::thread::sleep(Duration::from_secs(60));
        }
    }

    /// The file a successor of the process `parent` marks before it says
    /// it is ready.
    fn ready_mark(parent: u32) -> PathBuf {
        std::env::temp_dir().join(format!("graceful-ready-mark-{parent}"))
    }

    /// Whether a restarter with the PID file `path` made here writes it
    /// (not in a restart's successor: its predecessor writes it once it
    /// is ready). Removes the file.
    fn writes_its_pid_file(path: &Path) -> bool {
        let _ = std::fs::remove_file(path);
        let config = RestartConfig::new().signal(None).pid_file(path);
        let restarter =
            Restarter::with_command(&Shutdown::new(), &[], config, "true".into(), vec![]);
        drop(restarter.unwrap());
        std::fs::remove_file(path).is_ok()
    }

    /// Run as a restart's successor: writes no PID file of its own, starts
    /// a process of its own, which inherits `GRACEFUL_RESTART_READY`, says
    /// it is ready and writes its PID file; once that one has exited
    /// successfully, waits a second, marks its file, then says it is ready
    /// itself and waits to be killed (a minute at most).
    #[test]
    #[ignore = "a successor the restart tests start"]
    fn successor_whose_child_says_ready_first() {
        if std::env::var_os(READY_ENV).is_none() {
            return;
        }
        let mark = ready_mark(std::os::unix::process::parent_id());
        assert!(!writes_its_pid_file(&mark.with_extension("successor.pid")));
        let exe = std::env::current_exe().unwrap();
        let child = Command::new(exe)
            .args(["restart::tests::successors_child_that_says_ready"])
            .args(["--exact", "--ignored", "--quiet"])
            .env("GRACEFUL_TEST_PID_FILE", mark.with_extension("child.pid"))
            .status()
            .unwrap();
        assert!(child.success());
        std::thread::sleep(Duration::from_secs(1));
        std::fs::write(mark, b"").unwrap();
        notify_ready().unwrap();
        std::thread::sleep(Duration::from_secs(60));
    }

    /// Run by the successor above: says it is ready, and fails unless a
    /// restarter it makes writes its PID file.
    #[test]
    #[ignore = "a process a restart's successor starts"]
    fn successors_child_that_says_ready() {
        if let Some(pid_file) = std::env::var_os("GRACEFUL_TEST_PID_FILE") {
            notify_ready().unwrap();
            assert!(writes_its_pid_file(Path::new(&pid_file)));
        }
    }

    /// A process that the successor starts before it is ready inherits
    /// `GRACEFUL_RESTART_READY`: its word is not taken for the
    /// successor's, which comes a second after it, and it writes its own
    /// PID file, where the successor leaves its predecessor's.
    #[test]
    fn a_process_the_successor_starts_cannot_say_it_is_ready() {
        let mark = ready_mark(std::process::id());
        let _ = std::fs::remove_file(&mark);
        let shutdown = Shutdown::new();
        let exe = std::env::current_exe().unwrap();
        let args = [
            "restart::tests::successor_whose_child_says_ready_first",
            "--exact",
            "--ignored",
            "--quiet",
        ]
        .map(OsString::from);
        let config = RestartConfig::new()
            .signal(None)
            .ready_timeout(Duration::from_secs(20));
        let restarter =
            Restarter::with_command(&shutdown, &[], config, exe, args.to_vec()).unwrap();
        let pid = restarter.restart().unwrap();
        let marked = mark.exists();
        let _ = std::fs::remove_file(&mark);
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        let _ = nix::sys::wait::waitpid(pid, None);
        assert!(marked, "the handover came before the successor was ready");
    }

    /// The ready socket is taken only by a child of the process named
    /// beside it, or with no process named (a parent from before the name
    /// was added).
    #[test]
    fn the_ready_socket_is_taken_only_by_a_child_of_the_process_named() {
        let socket = || OsString::from("/tmp/graceful-ready-1/ready");
        let path = Some(PathBuf::from("/tmp/graceful-ready-1/ready"));
        assert_eq!(ready_for(socket(), Some("41".as_ref()), 41), path);
        assert_eq!(ready_for(socket(), None, 41), path, "no process named");
        assert_eq!(ready_for(socket(), Some("42".as_ref()), 41), None);
        assert_eq!(ready_for(socket(), Some("".as_ref()), 41), None);
        assert_eq!(ready_for(socket(), Some("041".as_ref()), 41), None);
        assert_eq!(ready_for(OsString::new(), Some("41".as_ref()), 41), None);
    }

    /// Waits up to 10 s for the report of `shutdown` to name a guard
    /// `successor PID starting`; returns the PID.
    fn starting_successor(shutdown: &Shutdown) -> u32 {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let report = shutdown.report();
            let named = report.all_named().iter().find_map(|g| {
                let pid = g
                    .name
                    .strip_prefix("successor ")?
                    .strip_suffix(" starting")?;
                pid.parse().ok()
            });
            if let Some(pid) = named {
                return pid;
            }
            assert!(Instant::now() < until, "no successor starting: {report}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn is_running(pid: u32) -> bool {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
    }

    /// A stop while a successor is starting stops the successor too, and
    /// the stop drains only once it is gone: a successor slow to stop
    /// holds the drain (and is named), not a wait of its own past the
    /// stop's deadline; the force (the deadline's, or a second signal's)
    /// kills it. The listener is then this process's alone again: its
    /// handshakes can be stopped at its close.
    #[test]
    fn a_stop_during_a_restart_waits_for_the_successor_within_its_deadline() {
        let (shutdown, listener, restarter, restart, pid) = stubborn_restart(true);
        let held = Instant::now() + Duration::from_millis(300);
        while Instant::now() < held {
            assert!(!shutdown.is_drained(), "drained while the successor runs");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(is_running(pid), "the successor ignores SIGTERM");
        shutdown.force(crate::ForceCause::Deadline);
        let report = shutdown.forced_report().expect("a report at the force");
        let name = format!("successor {pid} starting");
        assert!(
            report.all_named().iter().any(|g| g.name == name),
            "{report}"
        );
        assert!(
            shutdown.wait_drained_until(Instant::now() + Duration::from_secs(10)),
            "not drained after the force"
        );
        assert!(matches!(
            restart.join().unwrap(),
            Err(RestartError::Stopping)
        ));
        assert!(!is_running(pid), "the successor was not killed");
        restarter.finish();
        assert!(
            crate::server::handshakes::stop_handshakes(&listener, true),
            "the listener is still marked shared after its successor is gone"
        );
    }

    /// A restart (on a thread of its own) whose successor ignores SIGTERM
    /// and never says it is ready, then, if `stop`, a stop of the shutdown
    /// once the successor started: the shutdown, the listener handed over,
    /// the restarter, the restart's thread and the successor's PID.
    #[allow(clippy::type_complexity)]
    fn stubborn_restart(
        stop: bool,
    ) -> (
        Shutdown,
        TcpListener,
        Restarter,
        std::thread::JoinHandle<Result<u32, RestartError>>,
        u32,
    ) {
        let shutdown = Shutdown::new();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // Ends by itself within 30 s if a failed test leaves it behind.
        let args = ["-c", "trap '' TERM; exec sleep 30"].map(OsString::from);
        let config = RestartConfig::new().signal(None);
        let listeners = [("web", &listener)];
        let exe = "/bin/sh".into();
        let restarter =
            Restarter::with_command(&shutdown, &listeners, config, exe, args.to_vec()).unwrap();
        let r = restarter.clone();
        let restart = std::thread::spawn(move || r.restart());
        let pid = starting_successor(&shutdown);
        // SIGTERM is ignored from its `trap` on: once `sleep` runs.
        let until = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .as_deref()
            != Some("sleep\n")
        {
            assert!(Instant::now() < until, "the successor never ran sleep");
            std::thread::sleep(Duration::from_millis(2));
        }
        if stop {
            shutdown.trigger(Reason::requested());
        }
        (shutdown, listener, restarter, restart, pid)
    }

    /// The exit's wait for a restart is bounded by the stop's budget: a
    /// successor still being stopped then (the stop interrupted the
    /// restart) is killed, and the wait says so (work was forced). It holds
    /// with no stop of the restarter's shutdown at all too (a process that
    /// exits on a stage's outcome): the restart, still waiting for its
    /// successor to be ready, stops and kills it.
    #[test]
    fn the_exit_waits_for_a_restart_within_the_stops_budget_alone() {
        for stop in [true, false] {
            let (shutdown, _listener, restarter, restart, pid) = stubborn_restart(stop);
            let start = Instant::now();
            assert!(!restarter.finish_within(Duration::from_millis(300)));
            let took = start.elapsed();
            assert!(
                took >= Duration::from_millis(250) && took < Duration::from_secs(2),
                "waited {took:?} for a 300 ms budget (stop: {stop})"
            );
            assert!(
                !is_running(pid),
                "the successor was not killed (stop: {stop})"
            );
            assert!(matches!(
                restart.join().unwrap(),
                Err(RestartError::Stopping)
            ));
            assert_eq!(shutdown.is_triggered(), stop);
            // Nothing left to wait for.
            assert!(restarter.finish_within(Duration::ZERO));
        }
    }

    /// A restart whose successor exits before it is ready fails, and the
    /// listener it was handed is this process's alone again: its
    /// handshakes can be stopped at its close.
    #[test]
    fn a_successor_that_exits_early_gives_the_listener_back() {
        let shutdown = Shutdown::new();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let args = ["-c", "exit 3"].map(OsString::from);
        let config = RestartConfig::new().signal(None);
        let listeners = [("web", &listener)];
        let restarter = Restarter::with_command(
            &shutdown,
            &listeners,
            config,
            "/bin/sh".into(),
            args.to_vec(),
        )
        .unwrap();
        assert!(matches!(restarter.restart(), Err(RestartError::Exited(_))));
        assert!(
            crate::server::handshakes::stop_handshakes(&listener, true),
            "the listener is still marked shared after its successor exited"
        );
    }

    /// Once the handover is decided, the PID file names the successor and
    /// `finish` returns, while a trigger hook blocks: the hook is the
    /// stop's, bounded by its deadline, and must not hold the exit.
    #[test]
    fn a_blocking_trigger_hook_does_not_hold_a_handover_done() {
        let dir = std::env::temp_dir().join(format!("graceful-handover-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("app.pid");
        let shutdown = Shutdown::new();
        let (entered, in_hook) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        shutdown.on_triggered(move |_| {
            entered.send(()).unwrap();
            let _ = released.recv_timeout(Duration::from_secs(20));
        });
        let exe = std::env::current_exe().unwrap();
        let args = [
            "restart::tests::successor_that_says_ready",
            "--exact",
            "--ignored",
            "--quiet",
        ]
        .map(OsString::from);
        let config = RestartConfig::new().signal(None).pid_file(&pid_file);
        let restarter =
            Restarter::with_command(&shutdown, &[], config, exe, args.to_vec()).unwrap();
        let r = restarter.clone();
        let restart = std::thread::spawn(move || r.restart());
        in_hook
            .recv_timeout(Duration::from_secs(20))
            .expect("the handover's trigger ran no hook");
        let successor = std::fs::read_to_string(&pid_file).unwrap();
        let (finished, done) = std::sync::mpsc::channel();
        let r = restarter.clone();
        std::thread::spawn(move || {
            r.finish();
            let _ = finished.send(());
        });
        let prompt = done.recv_timeout(Duration::from_secs(2));
        release.send(()).unwrap();
        let pid = restart.join().unwrap().expect("handed over");
        let kill = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
        let _ = std::fs::remove_dir_all(&dir);
        kill.unwrap();
        assert!(prompt.is_ok(), "finish waited for the trigger's hook");
        assert_eq!(
            successor.trim(),
            pid.to_string(),
            "the PID file, during the hook"
        );
    }

    #[test]
    fn signal_names() {
        for name in ["SIGHUP", "HUP"] {
            assert_eq!(RestartSignal::from_name(name), Some(RestartSignal::Hangup));
        }
        for name in ["SIGUSR2", "USR2"] {
            assert_eq!(RestartSignal::from_name(name), Some(RestartSignal::User2));
        }
        assert_eq!(RestartSignal::from_name("SIGTERM"), None);
        assert_eq!(RestartSignal::Hangup.number(), 1);
    }

    #[test]
    fn the_pid_file_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("graceful-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("app.pid");
        write_pid_file(&path, 41).unwrap();
        write_pid_file(&path, 42).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "42\n");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_ready_message_reaches_the_waiting_parent() {
        let socket = ReadySocket::new().unwrap();
        assert!(!socket.wait(Duration::from_millis(10)).unwrap());
        UnixDatagram::unbound()
            .unwrap()
            .send_to(b"READY=1", socket.path())
            .unwrap();
        assert!(socket.wait(Duration::from_secs(5)).unwrap());
        let dir = socket.dir.clone();
        drop(socket);
        assert!(!dir.exists(), "the socket's directory is removed");
    }

    /// Directories left by an earlier process with this PID do not stop
    /// a restart: the next free name is taken.
    #[test]
    fn a_ready_directory_left_by_an_earlier_process_is_passed_over() {
        let next = NEXT_READY_DIR.load(Ordering::SeqCst);
        let stale: Vec<PathBuf> = (next..next + 3)
            .map(|n| {
                std::env::temp_dir().join(format!("graceful-restart-{}-{n}", std::process::id()))
            })
            .collect();
        for dir in &stale {
            let _ = std::fs::create_dir(dir);
        }
        let socket = ReadySocket::new();
        for dir in &stale {
            let _ = std::fs::remove_dir(dir);
        }
        let socket = socket.expect("a stale directory stopped the restart");
        assert!(!stale.contains(&socket.dir));
    }
}
