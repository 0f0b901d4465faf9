use std::fmt;
use std::sync::Arc;

/// A portable stop signal.
///
/// The numbers are the POSIX ones, equal on every Unix; they give the
/// conventional exit code `128 + number` of a process stopped by the signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// `SIGINT`: Ctrl+C in a terminal.
    Interrupt,
    /// `SIGTERM`: what Kubernetes, systemd and `kill` send.
    Terminate,
    /// `SIGHUP`: the terminal went away (opt-in).
    Hangup,
    /// `SIGQUIT`: Ctrl+\ in a terminal (opt-in).
    Quit,
}

impl Signal {
    /// The POSIX signal number.
    pub const fn number(self) -> i32 {
        match self {
            Signal::Hangup => 1,
            Signal::Interrupt => 2,
            Signal::Quit => 3,
            Signal::Terminate => 15,
        }
    }

    /// The exit code of a process stopped by this signal: `128 + number`.
    pub const fn exit_code(self) -> i32 {
        128 + self.number()
    }

    /// The conventional name, such as `SIGTERM`.
    pub const fn name(self) -> &'static str {
        match self {
            Signal::Hangup => "SIGHUP",
            Signal::Interrupt => "SIGINT",
            Signal::Quit => "SIGQUIT",
            Signal::Terminate => "SIGTERM",
        }
    }

    /// The signal with this POSIX number, if it is one of the stop signals.
    pub const fn from_number(n: i32) -> Option<Signal> {
        match n {
            1 => Some(Signal::Hangup),
            2 => Some(Signal::Interrupt),
            3 => Some(Signal::Quit),
            15 => Some(Signal::Terminate),
            _ => None,
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a shutdown started. The first reason wins.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Reason {
    /// A stop signal was received.
    Signal(Signal),
    /// Code asked for the stop, optionally with the exit code the process
    /// should end with when the drain completes.
    Requested {
        /// Exit code to use when the drain completes in time.
        code: Option<i32>,
    },
    /// The parent shutdown was triggered; its reason is inside.
    Parent(Arc<Reason>),
    /// Every stage this one runs after was drained.
    After,
    /// The shutdown was forced before it was triggered.
    Forced,
    /// An error stopped the service.
    Error(Arc<dyn std::error::Error + Send + Sync + 'static>),
    /// The process handed its listeners over to a successor (a
    /// zero-downtime restart) and stops.
    Restarted {
        /// The successor's PID.
        successor: u32,
    },
}

impl Reason {
    /// A request from code with no particular exit code.
    pub const fn requested() -> Reason {
        Reason::Requested { code: None }
    }

    /// A reason wrapping an error.
    pub fn error<E: std::error::Error + Send + Sync + 'static>(e: E) -> Reason {
        Reason::Error(Arc::new(e))
    }

    /// The reason at the root of a chain of [`Reason::Parent`]s: why the
    /// whole tree started to stop.
    pub fn root(&self) -> &Reason {
        let mut r = self;
        while let Reason::Parent(p) = r {
            r = p;
        }
        r
    }

    /// Whether the stop is a restart: the process handed its listeners
    /// over to a successor ([`Reason::Restarted`], here or at the root).
    /// Its address goes on serving: readiness stays `200`, systemd is told
    /// nothing.
    pub fn is_restart(&self) -> bool {
        matches!(self.root(), Reason::Restarted { .. })
    }

    /// The exit code a process should end with when a shutdown started for
    /// this reason drained in time: the requested code if one was given, 1
    /// after an error, 0 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self.root() {
            Reason::Requested { code: Some(c) } => *c,
            Reason::Error(_) => 1,
            _ => 0,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Signal(s) => write!(f, "signal {s}"),
            Reason::Requested { code: None } => f.write_str("requested"),
            Reason::Requested { code: Some(c) } => write!(f, "requested (exit code {c})"),
            Reason::Parent(r) => r.fmt(f),
            Reason::After => f.write_str("preceding stages drained"),
            Reason::Forced => f.write_str("forced"),
            Reason::Error(e) => write!(f, "error: {e}"),
            Reason::Restarted { successor } => write!(f, "restarted as process {successor}"),
        }
    }
}

/// Why a shutdown was forced, abandoning what was left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForceCause {
    /// The drain deadline passed.
    Deadline,
    /// A further stop signal arrived during the drain.
    Signal(Signal),
    /// Code forced it (or a parent shutdown was forced).
    Requested,
}

impl ForceCause {
    /// The exit code for a process that ends because of this: 1 for a
    /// deadline or a request, `128 + signo` for a signal.
    pub const fn exit_code(self) -> i32 {
        match self {
            ForceCause::Signal(s) => s.exit_code(),
            ForceCause::Deadline | ForceCause::Requested => 1,
        }
    }
}

impl fmt::Display for ForceCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForceCause::Deadline => f.write_str("deadline passed"),
            ForceCause::Signal(s) => write!(f, "second stop signal {s}"),
            ForceCause::Requested => f.write_str("forced by request"),
        }
    }
}
