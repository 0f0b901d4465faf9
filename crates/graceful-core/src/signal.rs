use std::fmt;
use std::sync::{Arc, Mutex};

use futures_core::Stream;
use futures_util::StreamExt;

use crate::reason::{ForceCause, Reason, Signal};
use crate::shutdown::Shutdown;

type ExitFn = Arc<dyn Fn(i32) + Send + Sync + 'static>;

/// Which signals stop the process, and how repeated signals escalate. The adapters' `signals(...)` take one.
///
/// By default SIGINT and SIGTERM stop the process; the first triggers the
/// shutdown, the second forces it, the third exits the process at once with
/// `128 + signo`.
#[derive(Clone)]
pub struct SignalConfig {
    signals: Vec<Signal>,
    exit_after: Option<usize>,
    exit: ExitFn,
}

impl Default for SignalConfig {
    fn default() -> Self {
        SignalConfig {
            signals: vec![Signal::Interrupt, Signal::Terminate],
            exit_after: Some(3),
            exit: Arc::new(|code| std::process::exit(code)),
        }
    }
}

impl SignalConfig {
    /// SIGINT and SIGTERM; see the type's docs.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also stop on `signal` (SIGHUP and SIGQUIT are opt-in).
    pub fn with(mut self, signal: Signal) -> Self {
        if !self.signals.contains(&signal) {
            self.signals.push(signal);
        }
        self
    }

    /// Stop only on these signals.
    pub fn only(mut self, signals: impl IntoIterator<Item = Signal>) -> Self {
        self.signals.clear();
        for signal in signals {
            if !self.signals.contains(&signal) {
                self.signals.push(signal);
            }
        }
        self
    }

    /// The signals that stop the process.
    pub fn signals(&self) -> &[Signal] {
        &self.signals
    }

    /// Exit the process at once on the `n`th stop signal (default 3), or
    /// never (`None`).
    pub fn exit_after(mut self, n: Option<usize>) -> Self {
        self.exit_after = n;
        self
    }

    /// What "exit at once" does; `std::process::exit` by default. Tests
    /// replace it to observe the exit instead.
    pub fn on_exit<F: Fn(i32) + Send + Sync + 'static>(mut self, exit: F) -> Self {
        self.exit = Arc::new(exit);
        self
    }
}

impl fmt::Debug for SignalConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalConfig")
            .field("signals", &self.signals)
            .field("exit_after", &self.exit_after)
            .finish_non_exhaustive()
    }
}

/// What a stop signal did; returned by [`Escalation::on_signal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignalAction {
    /// The first stop signal: the shutdown was triggered (or already was).
    Triggered,
    /// A further stop signal: the shutdown was forced.
    Forced,
    /// The signal that ends the process at once, with this exit code.
    Exit(i32),
    /// A signal that is not in the configured set.
    Ignored,
}

/// Logs the first stop signal, once its trigger started (or found the
/// shutdown already stopping).
fn log_started(signal: Signal, started: bool) {
    if started {
        tracing::info!(target: "graceful", "{signal} received: stopping gracefully");
    } else {
        tracing::info!(target: "graceful", "{signal} received: already stopping");
    }
}

/// Counts stop signals and applies the escalation to a [`Shutdown`]. Each signal
/// counts once: a burst of signals is as many steps, and never triggers
/// twice.
///
/// Cheap to clone; clones share the count.
#[derive(Clone)]
pub struct Escalation {
    shutdown: Shutdown,
    config: SignalConfig,
    /// Stop signals counted so far, and the first of them.
    count: Arc<Mutex<(usize, Option<Signal>)>>,
}

impl Escalation {
    /// Escalation for `shutdown` under `config`.
    pub fn new(shutdown: Shutdown, config: SignalConfig) -> Self {
        Escalation {
            shutdown,
            config,
            count: Arc::new(Mutex::new((0, None))),
        }
    }

    /// How many stop signals were counted.
    pub fn count(&self) -> usize {
        self.counted().0
    }

    fn counted(&self) -> std::sync::MutexGuard<'_, (usize, Option<Signal>)> {
        self.count.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies one received signal on this thread: triggers or forces the
    /// shutdown (running its hooks here). Does not exit the process itself;
    /// see [`handle`](Self::handle).
    pub fn on_signal(&self, signal: Signal) -> SignalAction {
        let (action, first) = self.count_signal(signal);
        match action {
            SignalAction::Triggered => {
                let reason = Reason::Signal(signal);
                let started = self.shutdown.start_trigger(&reason);
                log_started(signal, started);
                if started {
                    self.shutdown.finish_trigger(reason);
                }
            }
            SignalAction::Forced => self.force(signal, first),
            SignalAction::Exit(_) | SignalAction::Ignored => {}
        }
        action
    }

    /// Counts one signal and says what it calls for, with the first stop
    /// signal counted, without acting on it.
    fn count_signal(&self, signal: Signal) -> (SignalAction, Signal) {
        if !self.config.signals.contains(&signal) {
            return (SignalAction::Ignored, signal);
        }
        let (n, first) = {
            let mut counted = self.counted();
            counted.0 += 1;
            (counted.0, *counted.1.get_or_insert(signal))
        };
        if self.config.exit_after.is_some_and(|limit| n >= limit) {
            tracing::error!(target: "graceful", "{signal} received ({n}): exiting now");
            return (SignalAction::Exit(signal.exit_code()), first);
        }
        if n == 1 {
            // Logged once the trigger started (see `started`): whoever reads
            // the line may rely on the shutdown being triggered.
            (SignalAction::Triggered, first)
        } else {
            tracing::warn!(
                target: "graceful",
                "{signal} received again ({n}): forcing the shutdown{}",
                match self.config.exit_after {
                    Some(limit) => format!("; {} more to exit at once", limit - n),
                    None => String::new(),
                }
            );
            (SignalAction::Forced, first)
        }
    }

    /// Forces the shutdown for `signal`. If the first signal's trigger has
    /// not landed yet (it may be on another thread), starts it with that
    /// first signal as the reason: never `Forced`, never the later signal.
    fn force(&self, signal: Signal, first: Signal) {
        self.shutdown
            .force_with(Reason::Signal(first), ForceCause::Signal(signal));
    }

    /// Applies one received signal the way a signal listener must: the
    /// signal is counted, the shutdown's reason and triggered bit are set,
    /// and an exit happens here, at once (calling the configured exit, by
    /// default `std::process::exit`); what runs user hooks (the rest of the
    /// trigger, the force) runs on a thread of its own. So a hook that
    /// blocks never holds back the next signal: the second forces and the
    /// third exits while the hook still runs.
    pub fn handle(&self, signal: Signal) -> SignalAction {
        let (action, first) = self.count_signal(signal);
        let work: Box<dyn FnOnce() + Send> = match action {
            SignalAction::Exit(code) => {
                #[cfg(all(unix, feature = "restart"))]
                crate::restart::stop_starting_successors();
                (self.config.exit)(code);
                return action;
            }
            SignalAction::Ignored => return action,
            SignalAction::Triggered => {
                let reason = Reason::Signal(signal);
                let started = self.shutdown.start_trigger(&reason);
                log_started(signal, started);
                if !started {
                    return action;
                }
                let shutdown = self.shutdown.clone();
                Box::new(move || shutdown.finish_trigger(reason))
            }
            SignalAction::Forced => {
                let this = self.clone();
                Box::new(move || this.force(signal, first))
            }
        };
        let work = Arc::new(Mutex::new(Some(work)));
        let run = {
            let work = work.clone();
            move || {
                let job = work.lock().unwrap_or_else(|p| p.into_inner()).take();
                if let Some(job) = job {
                    job();
                }
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("graceful-stop".into())
            .spawn(run)
        {
            tracing::warn!("no thread for the stop ({e}); acting on the signal's own");
            let job = work.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(job) = job {
                job();
            }
        }
        action
    }

    /// Handles every signal `source` yields, until it ends. Each adapter runs
    /// this over its OS signal stream; tests run it over a scripted one.
    pub async fn run<S>(self, source: S)
    where
        S: Stream<Item = Signal>,
    {
        let mut source = std::pin::pin!(source);
        while let Some(signal) = source.next().await {
            self.handle(signal);
        }
    }
}

impl fmt::Debug for Escalation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Escalation")
            .field("config", &self.config)
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}

/// Listens for the configured OS signals and applies [`Escalation`] to
/// `shutdown`: the wiring every adapter's `signals(...)` uses.
///
/// Each signal is registered before this returns, so one that arrives from
/// then on is not lost, even if nothing awaits the shutdown yet. Each
/// delivery writes one byte into a pipe of its own (signal-hook's
/// self-pipe), read by a small thread per signal; nothing is coalesced
/// beyond what the OS itself merges. The threads need no async runtime, so
/// a second or third signal is acted on even if the runtime is wedged.
///
/// Installing handlers replaces the default action of these signals for
/// the rest of the process: call it once, explicitly.
#[cfg(all(unix, feature = "signals"))]
pub fn listen_signals(shutdown: &Shutdown, config: SignalConfig) -> std::io::Result<()> {
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    let escalation = Escalation::new(shutdown.clone(), config.clone());
    for &signal in config.signals() {
        let (mut read, write) = UnixStream::pair()?;
        signal_hook::low_level::pipe::register(signal.number(), write)?;
        let escalation = escalation.clone();
        std::thread::Builder::new()
            .name(format!("graceful-{}", signal.name().to_ascii_lowercase()))
            .spawn(move || {
                let mut buf = [0u8; 64];
                loop {
                    match read.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => {
                            for _ in 0..n {
                                escalation.handle(signal);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            tracing::error!("reading {signal} notifications failed: {e}");
                            return;
                        }
                    }
                }
            })?;
    }
    tracing::debug!("listening for {:?}", config.signals());
    Ok(())
}
