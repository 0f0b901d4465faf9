use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::{Context, Poll};
use std::time::Duration;

use crate::deadline::deadline;
use crate::reason::{ForceCause, Reason};
use crate::report::Report;
use crate::runtime::Runtime;
use crate::shutdown::Shutdown;

/// How a drain ended. Returned by [`Shutdown::enforce_deadline`] and by the adapters'
/// servers; [`exit_code`](Self::exit_code) maps it to the process's exit
/// code.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Outcome {
    /// Every guard was released before the deadline.
    Drained {
        /// Why the shutdown started.
        reason: Reason,
        /// From the start of the drain to its end.
        took: Duration,
    },
    /// The deadline passed, or a second signal came, with work still held;
    /// or a stage below was forced during the stop (then `cause`, `report`
    /// are the stage's and `took` runs to the drain's end); or drained
    /// hooks still ran `settle` after the deadline (then nothing is held).
    Forced {
        /// Why the shutdown started.
        reason: Reason,
        /// Why it was forced.
        cause: ForceCause,
        /// From the start of the drain to the force.
        took: Duration,
        /// What was still held when it was forced.
        report: Report,
    },
}

impl Outcome {
    /// Whether everything drained in time.
    pub fn is_drained(&self) -> bool {
        matches!(self, Outcome::Drained { .. })
    }

    /// Why the shutdown started.
    pub fn reason(&self) -> &Reason {
        match self {
            Outcome::Drained { reason, .. } | Outcome::Forced { reason, .. } => reason,
        }
    }

    /// How long the drain took (up to the force, if forced).
    pub fn took(&self) -> Duration {
        match self {
            Outcome::Drained { took, .. } | Outcome::Forced { took, .. } => *took,
        }
    }

    /// What was left when the drain was forced.
    pub fn report(&self) -> Option<&Report> {
        match self {
            Outcome::Drained { .. } => None,
            Outcome::Forced { report, .. } => Some(report),
        }
    }

    /// How many guards were abandoned (0 when drained).
    pub fn forced_count(&self) -> usize {
        self.report().map_or(0, Report::total)
    }

    /// The exit code for the process: 0 when drained in time (or the code a
    /// [`Reason::Requested`] carried, or 1 after a [`Reason::Error`]); 1 when
    /// the deadline passed, this shutdown's or that of a stage below it
    /// which was forced during the stop; `128 + signo` when a second signal
    /// forced it.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Drained { reason, .. } => reason.exit_code(),
            Outcome::Forced { cause, .. } => cause.exit_code(),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Drained { reason, took } => {
                write!(f, "drained in {took:.3?} (stop reason: {reason})")
            }
            Outcome::Forced {
                reason,
                cause,
                took,
                report,
            } => write!(
                f,
                "forced after {took:.3?} ({cause}; stop reason: {reason}): {} guard(s) abandoned",
                report.total()
            ),
        }
    }
}

/// The future returned by [`Shutdown::enforce_deadline`]: waits for the trigger, then
/// for the drain or the deadline.
///
/// - While it waits it logs progress every [`progress_every`](Self::progress_every)
///   (default 1 s): guards left, the oldest named guard's age, time to the
///   deadline.
/// - At the deadline it forces the shutdown, logs the [`Report`] of what was
///   left, and waits up to [`settle`](Self::settle) (default 500 ms) for the
///   forced work to end; if it does not, it starts the stages that still
///   wait for it, so ordered cleanup still runs.
/// - If the drain already began when the deadline passes (its drained
///   hooks run), it forces nothing and waits for the hooks, up to
///   `settle`; hooks still running then are left, and the outcome is
///   forced with nothing held.
/// - At the end it logs a one-line summary.
#[must_use = "futures do nothing unless polled"]
pub struct EnforceDeadline<R: Runtime> {
    shutdown: Shutdown,
    rt: R,
    timeout: Duration,
    progress_every: Option<Duration>,
    settle: Duration,
    running: Option<Pin<Box<dyn Future<Output = Outcome> + Send>>>,
}

impl<R: Runtime> EnforceDeadline<R> {
    pub(crate) fn new(shutdown: Shutdown, rt: R, timeout: Duration) -> Self {
        EnforceDeadline {
            shutdown,
            rt,
            timeout,
            progress_every: Some(Duration::from_secs(1)),
            settle: Duration::from_millis(500),
            running: None,
        }
    }

    /// How often to log progress while waiting; `None` for never. Intervals
    /// shorter than 10 ms are taken as 10 ms (a zero interval would log in
    /// a loop and never let the drain end).
    pub fn progress_every(mut self, every: Option<Duration>) -> Self {
        self.progress_every = every.map(|d| d.max(MIN_PROGRESS_EVERY));
        self
    }

    /// How long to wait, after forcing, for the forced work to end, and past
    /// the deadline for drained hooks that run.
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// The blocking twin: runs the drain on this thread with the runtime's
    /// `block_on`.
    pub fn wait(self) -> Outcome {
        let rt = self.rt.clone();
        rt.block_on(self)
    }
}

/// The shortest progress interval.
const MIN_PROGRESS_EVERY: Duration = Duration::from_millis(10);

// The runtime handle is never pinned; only the boxed future is.
impl<R: Runtime> Unpin for EnforceDeadline<R> {}

impl<R: Runtime> Future for EnforceDeadline<R> {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let this = self.get_mut();
        let running = this.running.get_or_insert_with(|| {
            Box::pin(run(
                this.shutdown.clone(),
                this.rt.clone(),
                this.timeout,
                this.progress_every,
                this.settle,
            ))
        });
        running.as_mut().poll(cx)
    }
}

impl<R: Runtime> fmt::Debug for EnforceDeadline<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnforceDeadline")
            .field("shutdown", &self.shutdown)
            .field("timeout", &self.timeout)
            .field("started", &self.running.is_some())
            .finish()
    }
}

fn label(shutdown: &Shutdown) -> &str {
    shutdown.name().unwrap_or("shutdown")
}

async fn run<R: Runtime>(
    shutdown: Shutdown,
    rt: R,
    timeout: Duration,
    progress_every: Option<Duration>,
    settle: Duration,
) -> Outcome {
    shutdown.triggered().await;
    let start = rt.now();
    if let Some(at) = start.checked_add(timeout) {
        shutdown.set_deadline(at);
    }
    let reason = shutdown.reason().unwrap_or(Reason::Forced);
    let at_start = shutdown.report().total();
    tracing::info!(
        target: "graceful",
        "{}: stopping ({}); draining {at_start} guard(s), deadline {timeout:?}",
        label(&shutdown),
        reason.root(),
    );

    let end = {
        let mut drained = pin!(shutdown.drained());
        let mut forced = pin!(shutdown.forced());
        let mut timer = pin!(rt.sleep(timeout));
        let mut tick = progress_every.map(|every| Box::pin(rt.sleep(every)));
        // Armed when the deadline passed after the drain had begun: its
        // drained hooks still run, and the outcome waits for them (DESIGN
        // §3), at most `settle` more.
        let mut hooks_overrun: Option<Pin<Box<R::Sleep>>> = None;
        poll_fn(|cx| {
            // Forced work ends quickly and drains: `drained` alone does not
            // mean "in time"; the clean bit says whether the force came first.
            if drained.as_mut().poll(cx).is_ready() {
                if shutdown.is_drained_in_time() {
                    return Poll::Ready(End::Drained);
                }
                return Poll::Ready(match (shutdown.force_cause(), shutdown.forced_below()) {
                    (Some(cause), _) => End::Forced(cause),
                    // Drained, but a stage below was forced during the stop.
                    (None, Some((cause, report))) => End::ForcedBelow(cause, report),
                    // A deadline claimed the force and has not set it yet.
                    (None, None) => End::Forced(ForceCause::Deadline),
                });
            }
            // A force from elsewhere (a second signal, a parent) ends the
            // wait, even for drained hooks: hooks never delay escalation.
            if forced.as_mut().poll(cx).is_ready() {
                return Poll::Ready(End::Forced(
                    shutdown.force_cause().unwrap_or(ForceCause::Requested),
                ));
            }
            if let Some(overrun) = hooks_overrun.as_mut() {
                if overrun.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(End::HooksOverran);
                }
            } else if timer.as_mut().poll(cx).is_ready() {
                // Forced only if the drain has not begun; one that begins
                // after the claim is not clean.
                if shutdown.claim_deadline_force() {
                    shutdown.force(ForceCause::Deadline);
                    return Poll::Ready(End::Forced(
                        shutdown.force_cause().unwrap_or(ForceCause::Deadline),
                    ));
                }
                tracing::info!(
                    target: "graceful",
                    "{}: deadline passed while the drained hooks run; waiting up to {settle:?} for them",
                    label(&shutdown),
                );
                let mut overrun = Box::pin(rt.sleep(settle));
                if overrun.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(End::HooksOverran);
                }
                hooks_overrun = Some(overrun);
            }
            if let (Some(every), Some(t), true) =
                (progress_every, tick.as_mut(), hooks_overrun.is_none())
            {
                if t.as_mut().poll(cx).is_ready() {
                    let left = timeout.saturating_sub(rt.now().saturating_duration_since(start));
                    log_progress(&shutdown, left);
                    *t = Box::pin(rt.sleep(every));
                    // The next tick registers on the next poll.
                    cx.waker().wake_by_ref();
                }
            }
            Poll::Pending
        })
        .await
    };
    let took = rt.now().saturating_duration_since(start);

    // The cause and report of a forced outcome.
    let forced = match end {
        End::Drained => None,
        End::ForcedBelow(cause, report) => {
            tracing::warn!(
                target: "graceful",
                "{}: drained after {took:.3?}, but work below was forced ({cause}); what was cut:\n{report}",
                label(&shutdown),
            );
            Some((cause, report))
        }
        End::HooksOverran => {
            // Nothing is held: the drained hooks are what overran. Forced
            // all the same, so that the shutdown reads as the outcome says.
            shutdown.force(ForceCause::Deadline);
            tracing::warn!(
                target: "graceful",
                "{}: drained hooks still running {settle:?} after the deadline; not waiting for them",
                label(&shutdown),
            );
            Some((ForceCause::Deadline, shutdown.report()))
        }
        End::Forced(cause) => {
            let report = shutdown
                .forced_report()
                .unwrap_or_else(|| shutdown.report());
            tracing::warn!(
                target: "graceful",
                "{}: forced ({cause}) after {took:.3?}; what was left:\n{report}",
                label(&shutdown),
            );
            // Forced work ends quickly: wait for it, but not for drained
            // hooks that run already (nothing is held; hooks never delay
            // escalation).
            if !shutdown.is_draining()
                && deadline(shutdown.drained(), rt.sleep(settle))
                    .await
                    .is_err()
            {
                let started = shutdown.start_waiting_stages();
                tracing::warn!(
                    target: "graceful",
                    "{}: forced work still held after {settle:?}; abandoned it and started {started} waiting stage(s)",
                    label(&shutdown),
                );
            }
            Some((cause, report))
        }
    };
    let outcome = match forced {
        None => Outcome::Drained { reason, took },
        Some((cause, report)) => Outcome::Forced {
            reason,
            cause,
            took,
            report,
        },
    };
    tracing::info!(
        target: "graceful",
        "{}: {outcome} ({at_start} guard(s) held when the drain started)",
        label(&shutdown)
    );
    outcome
}

/// How the wait of [`run`] ended.
enum End {
    Drained,
    /// Forced here (or before the drain ended), with this cause.
    Forced(ForceCause),
    /// Drained, after a stage below was forced during the stop.
    ForcedBelow(ForceCause, Report),
    /// The deadline passed during the drained hooks, and they still ran
    /// `settle` later.
    HooksOverran,
}

fn log_progress(shutdown: &Shutdown, left: Duration) {
    let report = shutdown.report();
    match report.oldest() {
        Some(age) => tracing::info!(
            target: "graceful",
            "{}: draining: {} guard(s) left, oldest held {age:.1?}, {left:.1?} to the deadline",
            label(shutdown),
            report.total(),
        ),
        None => tracing::info!(
            target: "graceful",
            "{}: draining: {} guard(s) left, {left:.1?} to the deadline",
            label(shutdown),
            report.total(),
        ),
    }
}
