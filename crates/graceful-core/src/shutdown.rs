use std::borrow::Cow;
use std::fmt;
use std::panic::Location;
use std::time::{Duration, Instant};

use crate::drain::EnforceDeadline;
use crate::guard::{Guard, NamedGuard};
#[cfg(not(loom))]
use crate::phase::PhaseWait;
use crate::phase::{Drained, Forced, Triggered};
use crate::reason::{ForceCause, Reason};
use crate::report::Report;
use crate::runtime::Runtime;
use crate::state::{Inner, NamedEntry, Start, CLEAN, DRAINED, FORCED, TRIGGERED};
use crate::sync::{child_ref, lock, upgrade_child, Arc, AtomicUsize, Ordering};

/// A handle to one shutdown: cheap to clone, shared by everything that must
/// stop together.
///
/// A shutdown goes through three sticky phases:
///
/// - **triggered**: stop was asked ([`trigger`](Self::trigger)); stop taking
///   new work and let in-flight work finish;
/// - **forced**: the deadline passed or a second signal came
///   ([`force`](Self::force)); abandon what is left;
/// - **drained**: triggered and no [`Guard`] is held any more.
///
/// Each phase can be awaited ([`triggered`](Self::triggered)), checked
/// ([`is_triggered`](Self::is_triggered)) or waited for by a thread
/// ([`wait_triggered`](Self::wait_triggered)). A waiter that comes after the
/// phase was reached sees it at once.
///
/// # Example
///
/// ```
/// use graceful_core::{Reason, Shutdown};
///
/// let shutdown = Shutdown::new();
/// let guard = shutdown.guard();
/// assert!(shutdown.trigger(Reason::requested()));
/// assert!(!shutdown.is_drained()); // `guard` is still held
/// drop(guard);
/// futures::executor::block_on(shutdown.drained());
/// ```
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A new, untriggered shutdown.
    pub fn new() -> Shutdown {
        Shutdown {
            inner: Inner::new(None, None, Start::WithParent),
        }
    }

    /// A new shutdown with a name, shown in its [`Report`].
    pub fn named(name: impl Into<Cow<'static, str>>) -> Shutdown {
        Shutdown {
            inner: Inner::new(Some(name.into()), None, Start::WithParent),
        }
    }

    /// The name given to [`named`](Self::named) or [`stage`](Self::stage).
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    // ----- triggering -------------------------------------------------------

    /// Starts the shutdown. Returns whether this call started it: the first
    /// reason wins and later calls change nothing.
    ///
    /// The whole tree is triggered at once (this shutdown and the children
    /// that follow it); then the hooks registered with
    /// [`on_triggered`](Self::on_triggered) run on this thread before it
    /// returns, this shutdown's before its children's.
    pub fn trigger(&self, reason: Reason) -> bool {
        self.inner.trigger(reason)
    }

    /// Forces the shutdown: what is still running should be abandoned.
    /// Triggers it first if needed, and forces every child. Returns whether
    /// this call forced it (false when it was already forced).
    pub fn force(&self, cause: ForceCause) -> bool {
        self.inner.force(cause)
    }

    /// The first half of [`trigger`](Self::trigger), which runs no user
    /// code; when it returns true the caller owes
    /// [`finish_trigger`](Self::finish_trigger).
    pub(crate) fn start_trigger(&self, reason: &Reason) -> bool {
        self.inner.start(reason)
    }

    /// The hooks, children and release of a trigger begun by
    /// [`start_trigger`](Self::start_trigger).
    pub(crate) fn finish_trigger(&self, reason: Reason) {
        self.inner.finish_trigger(reason)
    }

    /// [`force`](Self::force), starting the shutdown with `reason` if it was
    /// not started yet; the force completes before that start's hooks run.
    pub(crate) fn force_with(&self, reason: Reason, cause: ForceCause) -> bool {
        self.inner.force_with(reason, cause)
    }

    /// Why the shutdown started, once it has.
    pub fn reason(&self) -> Option<Reason> {
        self.inner.reason()
    }

    /// When the shutdown will be forced by a deadline: the earliest
    /// deadline of the drains begun on it or on a shutdown above it
    /// ([`enforce_deadline`](Self::enforce_deadline), the adapters'
    /// `serve`), on the clock of the runtime that enforces it
    /// ([`Runtime::now`](crate::Runtime::now)). `None` until such a drain
    /// begins; an adapter's server records its own from its trigger on,
    /// before its pre-drain delay (its delay plus its timeout later). For
    /// work that may end itself before then rather than be forced: the
    /// HTTP layer ends a lingering close in time, so a response already
    /// written does not count as forced work.
    pub fn deadline(&self) -> Option<std::time::Instant> {
        self.inner.phases.deadline()
    }

    /// Whether the shutdown was triggered by a restart: the process
    /// handed its listeners over to a successor (see
    /// [`Reason::is_restart`]).
    pub fn is_restarted(&self) -> bool {
        self.reason().as_ref().is_some_and(Reason::is_restart)
    }

    /// Why the shutdown was forced, if it was.
    pub fn force_cause(&self) -> Option<ForceCause> {
        self.inner.force_cause()
    }

    /// When the shutdown was triggered.
    pub fn triggered_at(&self) -> Option<Instant> {
        self.inner.triggered_at()
    }

    // ----- phases -----------------------------------------------------------

    /// Whether the shutdown was triggered.
    #[inline]
    pub fn is_triggered(&self) -> bool {
        self.inner.phases.is(TRIGGERED)
    }

    /// Whether the shutdown was forced.
    #[inline]
    pub fn is_forced(&self) -> bool {
        self.inner.phases.is(FORCED)
    }

    /// Whether the shutdown was triggered and every guard was released.
    #[inline]
    pub fn is_drained(&self) -> bool {
        self.inner.phases.is(DRAINED)
    }

    /// Whether the shutdown drained with nothing abandoned: it drained
    /// before any force (of it, or of a shutdown below it during its stop:
    /// a server cut at its own deadline), or the force found nothing held
    /// any more (the last release and the force raced). Like
    /// [`is_drained`](Self::is_drained), false while the drained hooks run.
    pub fn is_drained_in_time(&self) -> bool {
        self.is_drained()
            && (self.inner.phases.is(CLEAN)
                || (!self.inner.phases.is_unclean_without_force()
                    && self.inner.forced_report().is_some_and(|r| r.is_empty())))
    }

    /// The cause and report of the first force during this shutdown's stop
    /// of a shutdown below it that has drained since (a server cut at its
    /// own deadline).
    pub(crate) fn forced_below(&self) -> Option<(ForceCause, Report)> {
        self.inner.phases.forced_below()
    }

    /// Whether the drain began (the drained hooks run or ran).
    pub(crate) fn is_draining(&self) -> bool {
        self.inner.phases.is_draining()
    }

    /// Records that a drain forces this shutdown at `at`, unless earlier
    /// (see [`deadline`](Self::deadline)).
    pub(crate) fn set_deadline(&self, at: std::time::Instant) {
        self.inner.phases.set_deadline(at);
    }

    /// Claims the right to force at a deadline, unless the drain began:
    /// here, or in every stage that still holds this shutdown with nothing
    /// else held (their drained hooks run: no work would be abandoned).
    pub(crate) fn claim_deadline_force(&self) -> bool {
        !self.inner.only_draining_stages_hold() && self.inner.phases.claim_deadline_force()
    }

    /// What was held when the shutdown was forced (taken before anything
    /// was cut), if it was.
    pub fn forced_report(&self) -> Option<Report> {
        self.inner.forced_report()
    }

    /// Resolves once the shutdown is triggered.
    pub fn triggered(&self) -> Triggered {
        Triggered::new(self.inner.phases.clone())
    }

    /// Resolves once the shutdown is forced.
    pub fn forced(&self) -> Forced {
        Forced::new(self.inner.phases.clone())
    }

    /// Resolves once the shutdown is triggered and no guard is held.
    pub fn drained(&self) -> Drained {
        Drained::new(self.inner.phases.clone())
    }

    /// Blocks the thread until the shutdown is triggered.
    #[cfg(not(loom))]
    pub fn wait_triggered(&self) {
        PhaseWait::wait(&self.inner.phases, TRIGGERED, None);
    }

    /// Blocks the thread until the shutdown is triggered or `deadline`
    /// passes; returns whether it was triggered.
    #[cfg(not(loom))]
    pub fn wait_triggered_until(&self, deadline: Instant) -> bool {
        PhaseWait::wait(&self.inner.phases, TRIGGERED, Some(deadline))
    }

    /// Blocks the thread until the shutdown is forced.
    #[cfg(not(loom))]
    pub fn wait_forced(&self) {
        PhaseWait::wait(&self.inner.phases, FORCED, None);
    }

    /// Blocks the thread until the shutdown is forced or `deadline` passes;
    /// returns whether it was forced.
    #[cfg(not(loom))]
    pub fn wait_forced_until(&self, deadline: Instant) -> bool {
        PhaseWait::wait(&self.inner.phases, FORCED, Some(deadline))
    }

    /// Blocks the thread until the shutdown is drained.
    #[cfg(not(loom))]
    pub fn wait_drained(&self) {
        PhaseWait::wait(&self.inner.phases, DRAINED, None);
    }

    /// Blocks the thread until the shutdown is drained or `deadline` passes;
    /// returns whether it was drained.
    #[cfg(not(loom))]
    pub fn wait_drained_until(&self, deadline: Instant) -> bool {
        PhaseWait::wait(&self.inner.phases, DRAINED, Some(deadline))
    }

    // ----- guards -----------------------------------------------------------

    /// Takes a guard for one unit of in-flight work: a weak reference
    /// upgraded (an atomic compare-and-swap loop on the strong count), no
    /// allocation. The shutdown does not drain while it is held.
    ///
    /// After the shutdown has drained the guard is detached (it counts
    /// nothing); use [`try_guard`](Self::try_guard) to refuse new work once
    /// the shutdown is triggered.
    #[inline]
    pub fn guard(&self) -> Guard {
        Guard::new(self.inner.token.upgrade())
    }

    /// Takes a guard unless the shutdown was triggered: the way to refuse
    /// new work while letting the work already started finish.
    #[inline]
    pub fn try_guard(&self) -> Option<Guard> {
        if self.is_triggered() {
            return None;
        }
        let token = self.inner.token.upgrade()?;
        Some(Guard::new(Some(token)))
    }

    /// Takes a guard that the [`Report`] lists by `name`, with where it was
    /// taken and how long it has been held.
    #[track_caller]
    pub fn guard_named(&self, name: impl Into<Cow<'static, str>>) -> NamedGuard {
        self.named_guard(name.into(), Location::caller())
    }

    /// Takes a named guard named after the caller's source file; the
    /// report shows its location (file, line and column) beside it.
    #[track_caller]
    pub fn guard_here(&self) -> NamedGuard {
        let location = Location::caller();
        self.named_guard(Cow::Borrowed(location.file()), location)
    }

    fn named_guard(
        &self,
        name: Cow<'static, str>,
        location: &'static Location<'static>,
    ) -> NamedGuard {
        let guard = self.guard();
        let slot = lock(&self.inner.registry).insert(NamedEntry {
            name,
            location,
            since: Instant::now(),
        });
        NamedGuard::new(self.inner.clone(), slot, guard)
    }

    /// How many guards this shutdown holds itself, plus one for each child
    /// or stage that has not drained (cheap: no allocation). Not the
    /// guards inside those children: [`report`](Self::report)'s
    /// [`total`](Report::total) counts every guard of the tree (and lists
    /// the named ones).
    pub fn held(&self) -> usize {
        self.inner.held()
    }

    /// What is still held, here and in the children.
    pub fn report(&self) -> Report {
        self.inner.report()
    }

    // ----- hooks and order --------------------------------------------------

    /// Runs `hook` once, when the shutdown is triggered (at once if it
    /// already was). Hooks run in registration order on the triggering
    /// thread; a hook that panics is logged and the others still run.
    ///
    /// For work that is not a guard: telling WebSocket or SSE handlers to
    /// wind down, stopping a background loop.
    pub fn on_triggered<F>(&self, hook: F)
    where
        F: FnOnce(&Reason) + Send + 'static,
    {
        self.inner.on_triggered(Box::new(hook));
    }

    /// Runs `hook` once, when the shutdown is forced (at once if it already
    /// was), with the cause. For cutting what cannot be dropped from here:
    /// servers shut their sockets down through it. A force marks every
    /// shutdown below this one forced before any hook runs, and runs the
    /// hooks of children before their parent's. The servers' own cuts of
    /// their connections run before every hook of the tree, so a slow hook
    /// anywhere never delays them.
    pub fn on_forced<F>(&self, hook: F)
    where
        F: FnOnce(ForceCause) + Send + 'static,
    {
        self.inner.on_forced(Box::new(hook));
    }

    /// A forced hook of the crate's own that cuts what this shutdown's work
    /// holds (a server's connections), with no user code: it runs before
    /// every [`on_forced`](Self::on_forced) hook of the whole tree.
    pub(crate) fn on_cut<F>(&self, hook: F)
    where
        F: FnOnce(ForceCause) + Send + 'static,
    {
        self.inner.on_cut(Box::new(hook));
    }

    /// Runs `hook` once, when the shutdown is drained (at once if it already
    /// was), on the thread that released the last guard: before the stages
    /// that run after this one start, before a parent counts it as drained,
    /// and before any [`drained`](Self::drained) wait returns. For cleanup that must follow the drain
    /// exactly: closing a pool, flushing telemetry, logging the order. A
    /// hook (or a stage to run after this one) registered while this
    /// shutdown's drained hooks run waits its turn, as if registered
    /// before; one registered once they returned runs at once, on the
    /// registering thread (an ancestor's hooks may still be running).
    ///
    /// A drained hook must not wait for the drained phase of this shutdown
    /// or of its children: they read as drained only once the hooks of the
    /// ancestors their drain completed have returned.
    pub fn on_drained<F>(&self, hook: F)
    where
        F: FnOnce() + Send + 'static,
    {
        self.inner.phases.on_drained(Box::new(hook), false);
    }

    /// A child shutdown: triggered and forced with this one, and this one
    /// does not count as drained before the child is.
    ///
    /// Keep a handle to a child (or stage) for as long as it matters: the
    /// parent holds it only weakly. When its last handle is dropped, its
    /// trigger and force hooks are dropped unrun (the parent's trigger no
    /// longer reaches it), and it counts as drained once the guards taken
    /// from it are released: then its drained hooks run and the stages
    /// after it start, even if nothing was triggered.
    pub fn child(&self) -> Shutdown {
        self.make_child(None, Start::WithParent)
    }

    /// A named child (a stage): triggered and forced with this one, and
    /// listed by its name in reports; see [`child`](Self::child), and
    /// [`stage_after`](Self::stage_after) for one that waits for others.
    pub fn stage(&self, name: impl Into<Cow<'static, str>>) -> Shutdown {
        self.make_child(Some(name.into()), Start::WithParent)
    }

    /// A named stage that is triggered only once every stage in `after` has
    /// drained, so that "the pool closes after the server drained" is one
    /// line:
    ///
    /// ```
    /// use graceful_core::{Reason, Shutdown};
    ///
    /// let shutdown = Shutdown::new();
    /// let server = shutdown.stage("server");
    /// let pool = shutdown.stage_after("pool", [&server]);
    /// let request = server.guard();
    /// shutdown.trigger(Reason::requested());
    /// assert!(!pool.is_triggered()); // a request is still running
    /// drop(request);
    /// assert!(pool.is_triggered());
    /// ```
    ///
    /// Forcing the parent forces the stage but does not start it early: it
    /// still starts after the stages before it drained (forced work ends
    /// quickly). If forced work never ends, [`enforce_deadline`](Self::enforce_deadline) starts
    /// the waiting stages after its settle time. With no stage in `after`
    /// this is [`stage`](Self::stage).
    pub fn stage_after<'a, I>(&self, name: impl Into<Cow<'static, str>>, after: I) -> Shutdown
    where
        I: IntoIterator<Item = &'a Shutdown>,
    {
        let after: Vec<&Shutdown> = after.into_iter().collect();
        if after.is_empty() {
            return self.stage(name);
        }
        let stage = self.make_child(Some(name.into()), Start::AfterDeps);
        let remaining = Arc::new(AtomicUsize::new(after.len()));
        for dep in after {
            let remaining = remaining.clone();
            let target = child_ref(&stage.inner);
            dep.inner.phases.on_drained(
                Box::new(move || {
                    if remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                        if let Some(stage) = upgrade_child(&target) {
                            stage.trigger(Reason::After);
                        }
                    }
                }),
                true,
            );
        }
        stage
    }

    /// A named child held from birth by a named child of its own, `hold`,
    /// which starts only when triggered itself (neither with its parent,
    /// nor by a force, nor by the settle time's last resort): a child made
    /// after the trigger is triggered at once, and without a hold it would
    /// drain before its first guard is taken (its later guards then count
    /// for nothing). The hold is no work: it holds no guard, and reports do
    /// not list it. Triggering it releases the child.
    pub(crate) fn child_held(
        &self,
        name: impl Into<Cow<'static, str>>,
        hold: impl Into<Cow<'static, str>>,
    ) -> (Shutdown, Shutdown) {
        self.make_child_with(Some(name.into()), Start::WithParent, |child| {
            child.make_child(Some(hold.into()), Start::Hold)
        })
    }

    fn make_child(&self, name: Option<Cow<'static, str>>, start: Start) -> Shutdown {
        self.make_child_with(name, start, |_| ()).0
    }

    /// A new child, with `first` run on it before it is adopted (and so
    /// before it can be triggered).
    fn make_child_with<T>(
        &self,
        name: Option<Cow<'static, str>>,
        start: Start,
        first: impl FnOnce(&Shutdown) -> T,
    ) -> (Shutdown, T) {
        let child = Shutdown {
            inner: Inner::new(name, Some((self.guard(), self.inner.phases.clone())), start),
        };
        let made = first(&child);
        self.inner.adopt(&child.inner, start == Start::WithParent);
        (child, made)
    }

    /// Starts every stage that still waits for earlier stages, because the
    /// work they wait for was forced and did not end. Returns how many
    /// stages (or this shutdown) were started by the call.
    pub(crate) fn start_waiting_stages(&self) -> usize {
        self.inner.start_waiting_stages()
    }

    // ----- drain ------------------------------------------------------------

    /// Waits for the trigger, then for the drain, at most `timeout` (timed
    /// with `rt`'s clock). At the deadline the shutdown is forced, the
    /// [`Report`] of what was left is logged and returned in the
    /// [`Outcome`](crate::Outcome); a drain that began before the deadline
    /// (here, or in the stages that are all that is left) is not forced,
    /// its drained hooks get the settle time to return. Progress is logged
    /// while it waits.
    ///
    /// See [`EnforceDeadline`] for the options.
    pub fn enforce_deadline<R: Runtime>(&self, rt: &R, timeout: Duration) -> EnforceDeadline<R> {
        EnforceDeadline::new(self.clone(), rt.clone(), timeout)
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("name", &self.inner.name)
            .field("triggered", &self.is_triggered())
            .field("forced", &self.is_forced())
            .field("drained", &self.is_drained())
            .field("held", &self.held())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn force_does_not_start_a_stage_early_but_start_waiting_stages_does() {
        let root = Shutdown::new();
        let http = root.stage("http");
        let pool = root.stage_after("pool", [&http]);
        let stuck = http.guard();
        root.trigger(Reason::requested());
        root.force(ForceCause::Deadline);
        assert!(pool.is_forced());
        assert!(!pool.is_triggered(), "forced work has not ended yet");
        assert_eq!(root.start_waiting_stages(), 1);
        assert!(pool.is_triggered());
        drop(stuck);
        assert!(root.is_drained());
    }

    #[test]
    fn a_hold_is_no_work_and_only_its_own_trigger_releases_it() {
        let root = Shutdown::new();
        let (server, hold) = root.child_held("server", "listener");
        root.trigger(Reason::requested());
        assert!(
            !hold.is_triggered(),
            "the parent's trigger does not start it"
        );
        root.force(ForceCause::Deadline);
        assert!(!hold.is_triggered(), "nor does a force");
        assert_eq!(root.start_waiting_stages(), 0, "nor the last resort");
        assert!(!server.is_drained(), "it still holds its server");
        let report = root.report();
        assert_eq!(report.total(), 0, "{report}");
        assert!(
            report.children.iter().all(|c| c.children.is_empty()),
            "{report}"
        );
        hold.trigger(Reason::requested());
        assert!(server.is_drained() && root.is_drained());
    }
}
