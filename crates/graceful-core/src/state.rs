//! Shared state of one shutdown.
//!
//! Invariants:
//! 1. `Phases::state` bits only ever go from 0 to 1 (phases are sticky). A bit
//!    is set with a `SeqCst` read-modify-write *before* its event is notified
//!    (`DRAINING` with `CLEAN` in one compare-exchange, `CLEAN` only if no
//!    bit of `UNCLEAN` was set yet; `DRAINED` only after the drained hooks
//!    returned),
//!    and a waiter creates its listener *before* re-checking the bit, so no
//!    wake-up is lost between a check and a subscription.
//! 2. The guard count is the strong count of one `Counted<Token>`. Before the
//!    trigger, `Inner::holder` owns one extra strong reference, so the count
//!    cannot reach zero. The trigger releases it; when the last strong
//!    reference goes, `Token::drop` marks `DRAINING`, then `DRAINED`. Hence `DRAINED` implies
//!    `TRIGGERED` (or that every handle was dropped untriggered), and it is
//!    set exactly once.
//! 3. A child holds one guard of its parent until the child is drained, so a
//!    parent is never drained before its children. On draining, a shutdown
//!    runs its drained hooks and dependents, releases its parent, and only
//!    then wakes its own waiters.
//! 4. Lists that must not miss a late registration (hooks, children,
//!    callbacks after drain) are closed under their lock when their phase is
//!    reached; a registration that finds the list closed acts at once.

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::time::Instant;

use crate::guard::Guard;
use crate::reason::{ForceCause, Reason};
use crate::report::{GuardInfo, Report};
use crate::slab::Slab;
use crate::sync::{
    child_ref, lock, upgrade_child, Arc, AtomicU8, ChildRef, Counted, Mutex, Ordering, WeakCounted,
};
use crate::waker_set::WakerSet;

pub(crate) const TRIGGERED: u8 = 1;
pub(crate) const FORCED: u8 = 2;
pub(crate) const DRAINED: u8 = 4;
/// Set together with `DRAINED` when the drain completed before any force:
/// the two bits tell "drained in time" from "drained because the forced
/// work was cut", whatever order observers see them in.
pub(crate) const CLEAN: u8 = 8;
/// Set once, by the release that drains the shutdown, *before* its drained
/// hooks and dependents run; `DRAINED` is published only after them, so a
/// drained wait or check that starts while a hook runs still waits for it.
const DRAINING: u8 = 16;
/// Set on a stopping shutdown when a child drained after it was forced
/// during this one's stop (a server cut at its own deadline), or drained
/// with this bit set itself: work was cut, so this one's drain is not clean
/// either, and its outcome is forced (B17's exit code 1 reaches the level
/// the process exits on).
const FORCED_BELOW: u8 = 32;
/// Set, before `FORCED`, on a shutdown forced on its own (by its deadline
/// or a signal, not by code nor by its parent's force) while its parent
/// was stopping: its drain then marks the parent `FORCED_BELOW`.
const FORCED_IN_STOP: u8 = 64;
/// Claimed by a deadline before it forces, and only if the drain has not
/// begun: a drain that begins after it is not clean.
const FORCING: u8 = 128;
/// What makes a drain not clean.
const UNCLEAN: u8 = FORCED | FORCED_BELOW | FORCED_IN_STOP | FORCING;

type Callback = Box<dyn FnOnce() + Send + 'static>;
pub(crate) type Hook = Box<dyn FnOnce(&Reason) + Send + 'static>;
pub(crate) type ForcedHook = Box<dyn FnOnce(ForceCause) + Send + 'static>;

/// What a force runs once every bit in the tree is set: every forced hook
/// (a child's before its parent's), then the trigger hooks of the children
/// the force started.
#[derive(Default)]
struct AfterForce {
    /// The cuts of the whole tree: run before any forced hook.
    cuts: Vec<Vec<ForcedHook>>,
    hooks: Vec<Vec<ForcedHook>>,
    triggers: Vec<(Arc<Inner>, Reason)>,
}

/// The three sticky phases, their events, and what runs once drained.
pub(crate) struct Phases {
    state: AtomicU8,
    triggered: WakerSet,
    forced: WakerSet,
    drained: WakerSet,
    /// Run once drained: the user's hooks first, then what starts the
    /// stages that wait for this one; `None` once drained.
    after_drained: Mutex<Option<AfterDrained>>,
    parent: Mutex<Option<Guard>>,
    /// The parent's phases, told when this shutdown drains after a force
    /// during the parent's stop.
    parent_phases: Option<Arc<Phases>>,
    /// The cause and report of this shutdown's force during its parent's
    /// stop, or of the first such force below it.
    forced_in_stop: Mutex<Option<(ForceCause, Report)>>,
    /// When a drain of this shutdown forces it (the earliest, if several
    /// were recorded): from that drain's start, or from its server's
    /// trigger.
    deadline: Mutex<Option<Instant>>,
}

impl Phases {
    pub(crate) fn new(parent: Option<(Guard, Arc<Phases>)>) -> Self {
        let (parent, parent_phases) = parent.unzip();
        Phases {
            state: AtomicU8::new(0),
            triggered: WakerSet::default(),
            forced: WakerSet::default(),
            drained: WakerSet::default(),
            after_drained: Mutex::new(Some(AfterDrained::default())),
            parent: Mutex::new(parent),
            parent_phases,
            forced_in_stop: Mutex::new(None),
            deadline: Mutex::new(None),
        }
    }

    /// Records that a drain forces this shutdown at `at` (kept if earlier
    /// than the one recorded).
    pub(crate) fn set_deadline(&self, at: Instant) {
        let mut deadline = lock(&self.deadline);
        *deadline = Some(deadline.map_or(at, |d| d.min(at)));
    }

    /// The earliest deadline recorded for this shutdown or an ancestor.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let own = *lock(&self.deadline);
        let above = self.parent_phases.as_ref().and_then(|p| p.deadline());
        match (own, above) {
            (Some(own), Some(above)) => Some(own.min(above)),
            (own, above) => own.or(above),
        }
    }

    /// The cause and report of the first force below this shutdown (or of
    /// its own, on its own) during the stop.
    pub(crate) fn forced_below(&self) -> Option<(ForceCause, Report)> {
        lock(&self.forced_in_stop).clone()
    }

    /// Whether this shutdown still holds its parent's guard (until it
    /// drains).
    pub(crate) fn holds_parent(&self) -> bool {
        lock(&self.parent).as_ref().is_some_and(Guard::is_attached)
    }

    /// Whether the drain began: the last guard was released, and the
    /// drained hooks run or ran.
    pub(crate) fn is_draining(&self) -> bool {
        self.is(DRAINING)
    }

    /// Whether the drain is not clean for a reason other than this
    /// shutdown's own force: a force below it, or a deadline's claim.
    pub(crate) fn is_unclean_without_force(&self) -> bool {
        self.is(FORCED_BELOW | FORCING)
    }

    /// Claims the right to force for a deadline, unless the drain began
    /// (then it is left to finish, drained hooks included). A drain that
    /// begins after the claim is not clean.
    pub(crate) fn claim_deadline_force(&self) -> bool {
        let mut prev = self.state.load(Ordering::SeqCst);
        loop {
            if prev & DRAINING != 0 {
                return false;
            }
            match self.state.compare_exchange(
                prev,
                prev | FORCING,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(actual) => prev = actual,
            }
        }
    }

    #[inline]
    pub(crate) fn is(&self, bit: u8) -> bool {
        self.state.load(Ordering::SeqCst) & bit != 0
    }

    pub(crate) fn waiters(&self, bit: u8) -> &WakerSet {
        match bit {
            TRIGGERED => &self.triggered,
            FORCED => &self.forced,
            _ => &self.drained,
        }
    }

    /// Sets `bit`; returns whether this call set it.
    fn set(&self, bit: u8) -> bool {
        let prev = self.state.fetch_or(bit, Ordering::SeqCst);
        if prev & bit == 0 {
            self.waiters(bit).wake_all();
            true
        } else {
            false
        }
    }

    /// Marks the shutdown drained: its last guard was released.
    fn set_drained(this: &Arc<Self>) {
        let mut chain = Chain::default();
        Phases::drain_into(this, &mut chain);
        // Every drained hook of the chain has run: publish, children before
        // their parents, then start the stages that waited for them.
        for phases in chain.completed {
            phases.state.fetch_or(DRAINED, Ordering::SeqCst);
            phases.drained.wake_all();
        }
        for cb in chain.dependents {
            run_callback(cb);
        }
    }

    /// Runs the drained hooks of `this`, then releases its parent, draining
    /// the parent the same way if this was the parent's last guard; records
    /// each shutdown it completed, in order, and the stages waiting for
    /// them, for `set_drained` to publish and start. So `DRAINED` is
    /// published only after the drained hooks of this shutdown *and* of
    /// every ancestor it completed have returned (a process that exits on a
    /// server's drain cuts none of the root's hooks short), a child is
    /// published before its parent (a drained parent has drained children),
    /// and a stage that runs after this one starts once this one reads as
    /// drained.
    fn drain_into(this: &Arc<Self>, chain: &mut Chain) {
        let mut prev = this.state.load(Ordering::SeqCst);
        loop {
            if prev & DRAINING != 0 {
                return;
            }
            let clean = if prev & UNCLEAN == 0 { CLEAN } else { 0 };
            match this.state.compare_exchange(
                prev,
                prev | DRAINING | clean,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(actual) => prev = actual,
            }
        }
        // Hooks and dependents registered while these run (by a hook, or
        // by another thread) join the list and wait their turn, as if
        // registered before; the list closes once no hook is left.
        loop {
            let hooks = {
                let mut list = lock(&this.after_drained);
                let after = list.get_or_insert_with(AfterDrained::default);
                chain.dependents.append(&mut after.dependents);
                if after.hooks.is_empty() {
                    *list = None;
                    break;
                }
                std::mem::take(&mut after.hooks)
            };
            for cb in hooks {
                run_callback(cb);
            }
        }
        chain.completed.push(this.clone());
        // Drained after a force during the parent's stop, here or below,
        // or after a deadline claimed its force (`FORCING`, whose record
        // may not be written yet): the parent's drain is not clean either.
        // Told before the parent's guard is released; a parent that is not
        // stopping (a job stopped by code) is not told.
        if prev & (FORCED_IN_STOP | FORCED_BELOW | FORCING) != 0 {
            if let Some(parent) = this.parent_phases.as_ref().filter(|p| p.is(TRIGGERED)) {
                let first = this
                    .forced_below()
                    .unwrap_or((ForceCause::Deadline, Report::default()));
                lock(&parent.forced_in_stop).get_or_insert(first);
                parent.state.fetch_or(FORCED_BELOW, Ordering::SeqCst);
            }
        }
        let parent = lock(&this.parent).take();
        if let Some(token) = parent
            .and_then(Guard::into_token)
            .and_then(Counted::into_inner)
        {
            Phases::drain_into(&token.phases, chain);
            // Its drop finds the drain begun and does nothing more.
            drop(token);
        }
    }

    /// Runs `cb` once drained (at once if already drained). Hooks run before
    /// dependents, each kind in registration order.
    pub(crate) fn on_drained(&self, cb: Callback, dependent: bool) {
        let mut list = lock(&self.after_drained);
        match list.as_mut() {
            Some(after) if dependent => after.dependents.push(cb),
            Some(after) => after.hooks.push(cb),
            None => {
                drop(list);
                run_callback(cb);
            }
        }
    }
}

/// Runs a drained hook or dependent, isolated from its panic like every
/// other hook: a late registration runs at once, on the registering thread.
fn run_callback(cb: Callback) {
    if catch_unwind(AssertUnwindSafe(cb)).is_err() {
        tracing::error!("a callback run after a stage drained panicked; the others still run");
    }
}

/// The shutdowns one release completed, and the stages waiting for them.
#[derive(Default)]
struct Chain {
    completed: Vec<Arc<Phases>>,
    dependents: Vec<Callback>,
}

#[derive(Default)]
struct AfterDrained {
    hooks: Vec<Callback>,
    dependents: Vec<Callback>,
}

/// What a guard counts. Dropping the last reference marks the shutdown drained.
pub(crate) struct Token {
    phases: Arc<Phases>,
}

impl Drop for Token {
    fn drop(&mut self) {
        Phases::set_drained(&self.phases);
    }
}

pub(crate) struct NamedEntry {
    pub(crate) name: Cow<'static, str>,
    pub(crate) location: &'static Location<'static>,
    pub(crate) since: Instant,
}

pub(crate) type Registry = Slab<NamedEntry>;

struct Child {
    inner: ChildRef<Inner>,
    follows_trigger: bool,
}

#[derive(Default)]
struct Children {
    /// The reason this shutdown was triggered with, once it was.
    triggered: Option<Reason>,
    forced: Option<ForceCause>,
    list: Vec<Child>,
}

/// What starts a shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// Its parent's trigger (or its own).
    WithParent,
    /// A stage that starts when the stages it runs after have drained, not
    /// when its parent is triggered; forcing it does not start it early,
    /// the settle time's last resort does.
    AfterDeps,
    /// Only its own trigger: a hold on its parent that is no work (a
    /// server's open listener), listed in no report.
    Hold,
}

pub(crate) struct Inner {
    pub(crate) name: Option<Cow<'static, str>>,
    start_by: Start,
    pub(crate) phases: Arc<Phases>,
    pub(crate) token: WeakCounted<Token>,
    holder: Mutex<Option<Counted<Token>>>,
    reason: Mutex<Option<Reason>>,
    force_cause: Mutex<Option<ForceCause>>,
    /// What was held at the moment of the force, before anything was cut.
    forced_report: Mutex<Option<Report>>,
    triggered_at: Mutex<Option<Instant>>,
    hooks: Mutex<Option<Vec<Hook>>>,
    forced_hooks: Mutex<Option<Vec<ForcedHook>>>,
    /// Forced hooks that cut what this shutdown's work holds (a server's
    /// connections) and run no user code: run before every forced hook of
    /// the tree, so that no slow hook anywhere delays them.
    cuts: Mutex<Option<Vec<ForcedHook>>>,
    pub(crate) registry: Mutex<Registry>,
    children: Mutex<Children>,
    /// The children this shutdown's start also started, with their
    /// reasons: their trigger is finished (hooks run) after this one's.
    started_children: Mutex<Vec<(Arc<Inner>, Reason)>>,
}

impl Inner {
    pub(crate) fn new(
        name: Option<Cow<'static, str>>,
        parent: Option<(Guard, Arc<Phases>)>,
        start_by: Start,
    ) -> Arc<Inner> {
        let phases = Arc::new(Phases::new(parent));
        let holder = Counted::new(Token {
            phases: phases.clone(),
        });
        Arc::new(Inner {
            name,
            start_by,
            phases,
            token: Counted::downgrade(&holder),
            holder: Mutex::new(Some(holder)),
            reason: Mutex::new(None),
            force_cause: Mutex::new(None),
            forced_report: Mutex::new(None),
            triggered_at: Mutex::new(None),
            hooks: Mutex::new(Some(Vec::new())),
            forced_hooks: Mutex::new(Some(Vec::new())),
            cuts: Mutex::new(Some(Vec::new())),
            registry: Mutex::new(Registry::default()),
            children: Mutex::new(Children::default()),
            started_children: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn reason(&self) -> Option<Reason> {
        lock(&self.reason).clone()
    }

    pub(crate) fn force_cause(&self) -> Option<ForceCause> {
        *lock(&self.force_cause)
    }

    pub(crate) fn forced_report(&self) -> Option<Report> {
        lock(&self.forced_report).clone()
    }

    pub(crate) fn triggered_at(&self) -> Option<Instant> {
        *lock(&self.triggered_at)
    }

    /// Guards held, not counting the trigger's own reference.
    pub(crate) fn held(&self) -> usize {
        let holder = lock(&self.holder).is_some() as usize;
        self.token.strong_count().saturating_sub(holder)
    }

    pub(crate) fn trigger(&self, reason: Reason) -> bool {
        if !self.start(&reason) {
            return false;
        }
        self.finish_trigger(reason);
        true
    }

    /// The first half of a trigger, which runs no user code: records the
    /// reason and sets the phase bit (waking its waiters), here and in the
    /// children that follow this trigger, so the whole tree is triggered at
    /// once (a server's connections mark their responses `Connection:
    /// close` from the moment its readiness fails). Returns whether this
    /// call started the shutdown; the caller then owes
    /// [`finish_trigger`](Self::finish_trigger).
    pub(crate) fn start(&self, reason: &Reason) -> bool {
        {
            let mut r = lock(&self.reason);
            if r.is_some() {
                return false;
            }
            *r = Some(reason.clone());
        }
        *lock(&self.triggered_at) = Some(Instant::now());
        self.phases.set(TRIGGERED);
        let children: Vec<Arc<Inner>> = {
            let mut c = lock(&self.children);
            c.triggered = Some(reason.clone());
            c.list
                .iter()
                .filter(|c| c.follows_trigger)
                .filter_map(|c| upgrade_child(&c.inner))
                .collect()
        };
        if !children.is_empty() {
            let parent = std::sync::Arc::new(reason.clone());
            let started: Vec<(Arc<Inner>, Reason)> = children
                .into_iter()
                .map(|child| (child, Reason::Parent(parent.clone())))
                .filter(|(child, reason)| child.start(reason))
                .collect();
            *lock(&self.started_children) = started;
        }
        true
    }

    /// The second half of a trigger: the hooks, then the children's (in the
    /// same order, parents first), then the release of the trigger's own
    /// reference.
    pub(crate) fn finish_trigger(&self, reason: Reason) {
        let hooks = lock(&self.hooks).take().unwrap_or_default();
        for hook in hooks {
            run_hook(hook, &reason);
        }

        let started = std::mem::take(&mut *lock(&self.started_children));
        for (child, reason) in started {
            child.finish_trigger(reason);
        }

        // Release the trigger's own reference: from here the last guard's
        // release marks the shutdown drained.
        let holder = lock(&self.holder).take();
        drop(holder);
    }

    /// Forces this shutdown and its descendants. Returns false if it was
    /// already forced.
    pub(crate) fn force(&self, cause: ForceCause) -> bool {
        self.force_with(Reason::Forced, cause)
    }

    /// Forces this shutdown and its descendants, starting it with `reason`
    /// first unless it was started already or is a stage waiting for others
    /// (see [`Start`]). The force has two halves, as a trigger has:
    /// first the bits and reports of the whole tree, which run no user code,
    /// then the cuts of the whole tree (a server's cut of its connections),
    /// then the forced hooks, a child's before its parent's, then the
    /// trigger hooks of the starts made here. So no hook, here, above or
    /// beside, delays the force of any shutdown in the tree, nor its cut.
    /// Returns false if it was already forced.
    pub(crate) fn force_with(&self, reason: Reason, cause: ForceCause) -> bool {
        let started = self.start_by == Start::WithParent && self.start(&reason);
        let mut then = AfterForce::default();
        let forced = self.force_started(cause, &mut then);
        for hook in then.cuts.into_iter().chain(then.hooks).flatten() {
            if catch_unwind(AssertUnwindSafe(|| hook(cause))).is_err() {
                tracing::error!("a forced hook panicked; the other hooks still run");
            }
        }
        for (child, reason) in then.triggers {
            child.finish_trigger(reason);
        }
        if started {
            self.finish_trigger(reason);
        }
        forced
    }

    /// The first half of a force: the cause, the report and the bit, here
    /// and below; what runs user code is pushed to `then`.
    fn force_started(&self, cause: ForceCause, then: &mut AfterForce) -> bool {
        {
            let mut c = lock(&self.force_cause);
            if c.is_some() {
                return false;
            }
            *c = Some(cause);
        }
        let report = self.report();
        // Forced on its own while its parent stops (a server's deadline):
        // recorded before the bit, so a drain that follows sees it.
        let in_stop = !matches!(cause, ForceCause::Requested)
            && self
                .phases
                .parent_phases
                .as_ref()
                .is_some_and(|p| p.is(TRIGGERED) && !p.is(FORCED));
        if in_stop {
            lock(&self.phases.forced_in_stop).get_or_insert((cause, report.clone()));
            self.phases.state.fetch_or(FORCED_IN_STOP, Ordering::SeqCst);
        }
        *lock(&self.forced_report) = Some(report);
        self.phases.set(FORCED);
        let hooks = lock(&self.forced_hooks).take().unwrap_or_default();
        then.cuts.push(lock(&self.cuts).take().unwrap_or_default());
        let children: Vec<Arc<Inner>> = {
            let mut c = lock(&self.children);
            c.forced = Some(cause);
            c.list
                .iter()
                .filter_map(|c| upgrade_child(&c.inner))
                .collect()
        };
        let parent = std::sync::Arc::new(self.reason().unwrap_or(Reason::Forced));
        for child in children {
            let reason = Reason::Parent(parent.clone());
            let started = child.start_by == Start::WithParent && child.start(&reason);
            child.force_started(cause, then);
            if started {
                then.triggers.push((child, reason));
            }
        }
        then.hooks.push(hooks);
        true
    }

    /// Starts every stage in this tree that is still waiting for the stages
    /// it runs after. The last resort when forced work does not end.
    /// Returns how many were started.
    pub(crate) fn start_waiting_stages(&self) -> usize {
        if self.start_by == Start::Hold {
            return 0;
        }
        let mut started = usize::from(self.trigger(Reason::Forced));
        for child in self.children() {
            started += child.start_waiting_stages();
        }
        started
    }

    /// What is still held here and below.
    pub(crate) fn report(&self) -> Report {
        let now = Instant::now();
        let mut named: Vec<GuardInfo> = lock(&self.registry)
            .iter()
            .map(|e| GuardInfo {
                name: e.name.to_string(),
                location: e.location,
                age: now.saturating_duration_since(e.since),
            })
            .collect();
        named.sort_by_key(|g| std::cmp::Reverse(g.age));
        // The children first, then the count, then those of the children
        // that still hold this shutdown (a child that drains releases it
        // just before it reads as drained): a child made or released
        // meanwhile is at worst counted as one more guard held, never one
        // of this shutdown's own guards left out. A hold is no work: not
        // listed, and its guard not counted (unless it is released during
        // the report: then, like any child, one more).
        let all = self.children();
        let mut held = self.held();
        let mut children = Vec::new();
        for child in all.iter().filter(|c| c.phases.holds_parent()) {
            match child.start_by {
                Start::Hold => held = held.saturating_sub(1),
                _ => children.push(child.report()),
            }
        }
        Report {
            name: self.name.as_ref().map(|n| n.to_string()),
            held,
            named,
            children,
        }
    }

    pub(crate) fn on_triggered(&self, hook: Hook) {
        let mut hooks = lock(&self.hooks);
        match hooks.as_mut() {
            Some(v) => v.push(hook),
            None => {
                drop(hooks);
                // Triggered already: the reason is set before the list closes.
                let reason = self.reason().unwrap_or(Reason::Forced);
                run_hook(hook, &reason);
            }
        }
    }

    pub(crate) fn on_forced(&self, hook: ForcedHook) {
        self.add_forced(&self.forced_hooks, hook);
    }

    /// Like [`on_forced`](Self::on_forced), for a cut (see `cuts`).
    pub(crate) fn on_cut(&self, hook: ForcedHook) {
        self.add_forced(&self.cuts, hook);
    }

    fn add_forced(&self, list: &Mutex<Option<Vec<ForcedHook>>>, hook: ForcedHook) {
        let mut hooks = lock(list);
        match hooks.as_mut() {
            Some(v) => v.push(hook),
            None => {
                drop(hooks);
                let cause = self.force_cause().unwrap_or(ForceCause::Requested);
                if catch_unwind(AssertUnwindSafe(|| hook(cause))).is_err() {
                    tracing::error!("a forced hook panicked");
                }
            }
        }
    }

    /// Registers `child`; triggers or forces it at once if this shutdown
    /// already reached that phase.
    pub(crate) fn adopt(&self, child: &Arc<Inner>, follows_trigger: bool) {
        let (triggered, forced) = {
            let mut c = lock(&self.children);
            #[cfg(not(loom))]
            if c.list.len() >= 16 && c.list.len().is_power_of_two() {
                c.list.retain(|c| c.inner.strong_count() > 0);
            }
            c.list.push(Child {
                inner: child_ref(child),
                follows_trigger,
            });
            (c.triggered.clone(), c.forced)
        };
        if let (Some(reason), true) = (triggered, follows_trigger) {
            child.trigger(Reason::Parent(std::sync::Arc::new(reason)));
        }
        if let Some(cause) = forced {
            child.force(cause);
        }
    }

    /// Whether what holds this shutdown is stages (or children) whose drain
    /// began, their drained hooks running, or that only such stages of
    /// their own hold, and nothing else: no guard, no hold, at any level. A
    /// stage releases its parent only once its hooks returned. The count of
    /// holders is read before and after the children are listed: a release
    /// or a new guard in between reads as false.
    pub(crate) fn only_draining_stages_hold(&self) -> bool {
        let before = self.held();
        let holding: Vec<_> = self
            .children()
            .into_iter()
            .filter(|c| c.phases.holds_parent())
            .collect();
        !holding.is_empty()
            && holding
                .iter()
                .all(|c| c.phases.is_draining() || c.only_draining_stages_hold())
            && before == holding.len()
            && self.held() == before
    }

    pub(crate) fn children(&self) -> Vec<Arc<Inner>> {
        lock(&self.children)
            .list
            .iter()
            .filter_map(|c| upgrade_child(&c.inner))
            .collect()
    }
}

fn run_hook(hook: Hook, reason: &Reason) {
    if catch_unwind(AssertUnwindSafe(|| hook(reason))).is_err() {
        tracing::error!("a shutdown hook panicked; the other hooks still run");
    }
}
