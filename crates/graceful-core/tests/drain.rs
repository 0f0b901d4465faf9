//! `Shutdown::enforce_deadline` on a real-time runtime: outcomes, exit codes, reports.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::{within, ThreadRuntime};
use graceful_core::{ForceCause, Outcome, Reason, Runtime, Shutdown, Signal};

#[test]
fn drains_within_the_deadline_with_exit_code_zero() {
    within(10, || {
        let rt = ThreadRuntime;
        let s = Shutdown::new();
        let g = s.guard();
        s.trigger(Reason::Signal(Signal::Terminate));
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(g);
        });
        let outcome = rt.block_on(s.enforce_deadline(&rt, Duration::from_secs(5)));
        assert!(outcome.is_drained(), "{outcome}");
        assert_eq!(outcome.exit_code(), 0);
        assert!(outcome.took() >= Duration::from_millis(40));
        assert!(outcome.took() < Duration::from_secs(2));
    });
}

#[test]
fn drain_waits_for_the_trigger_first() {
    within(10, || {
        let rt = ThreadRuntime;
        let s = Shutdown::new();
        let s2 = s.clone();
        let t0 = Instant::now();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            s2.trigger(Reason::Requested { code: Some(7) });
        });
        let outcome = s.enforce_deadline(&rt, Duration::from_millis(10)).wait();
        assert!(t0.elapsed() >= Duration::from_millis(90));
        assert!(outcome.is_drained());
        assert_eq!(outcome.exit_code(), 7, "a requested exit code is kept");
    });
}

#[test]
fn deadline_forces_reports_and_exits_one() {
    within(10, || {
        let rt = ThreadRuntime;
        let s = Shutdown::named("svc");
        let held = s.guard_named("slow upload");
        s.trigger(Reason::requested());
        let t0 = Instant::now();
        let outcome = s
            .enforce_deadline(&rt, Duration::from_millis(200))
            .settle(Duration::from_millis(50))
            .wait();
        let elapsed = t0.elapsed();
        assert!(
            elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(2),
            "{elapsed:?}"
        );
        match &outcome {
            Outcome::Forced { cause, report, .. } => {
                assert_eq!(*cause, ForceCause::Deadline);
                assert_eq!(report.total(), 1);
                assert_eq!(report.named[0].name, "slow upload");
            }
            other => panic!("expected forced, got {other}"),
        }
        assert_eq!(outcome.exit_code(), 1);
        assert_eq!(outcome.forced_count(), 1);
        assert!(s.is_forced());
        drop(held);
    });
}

#[test]
fn second_signal_forces_with_128_plus_signo() {
    within(10, || {
        let rt = ThreadRuntime;
        let s = Shutdown::new();
        let _held = s.guard();
        s.trigger(Reason::Signal(Signal::Terminate));
        let s2 = s.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            s2.force(ForceCause::Signal(Signal::Interrupt));
        });
        let outcome = s
            .enforce_deadline(&rt, Duration::from_secs(30))
            .settle(Duration::from_millis(10))
            .wait();
        assert_eq!(outcome.exit_code(), 130);
        assert!(outcome.took() < Duration::from_secs(5));
    });
}

#[test]
fn forced_drain_starts_stages_stuck_behind_work_that_never_ends() {
    within(10, || {
        let rt = ThreadRuntime;
        let root = Shutdown::new();
        let http = root.stage("http");
        let flush = root.stage_after("telemetry", [&http]);
        let _stuck = http.guard();
        root.trigger(Reason::requested());
        let outcome = root
            .enforce_deadline(&rt, Duration::from_millis(50))
            .settle(Duration::from_millis(50))
            .wait();
        assert!(!outcome.is_drained());
        assert!(
            flush.is_triggered(),
            "cleanup still runs after a forced drain"
        );
    });
}

#[test]
fn an_error_reason_exits_one_even_when_drained() {
    let rt = ThreadRuntime;
    let s = Shutdown::new();
    s.trigger(Reason::error(std::io::Error::other("listener died")));
    let outcome = s.enforce_deadline(&rt, Duration::from_secs(1)).wait();
    assert!(outcome.is_drained());
    assert_eq!(outcome.exit_code(), 1);
    assert!(outcome.to_string().contains("listener died"));
}

#[test]
fn work_that_ends_because_it_was_forced_is_still_a_forced_outcome() {
    within(10, || {
        let rt = ThreadRuntime;
        let s = Shutdown::new();
        let conn = std::sync::Mutex::new(Some(s.guard_named("conn 10.0.0.9:4000")));
        // Like a server cutting its connections: the force releases the guard.
        s.on_forced(move |_| drop(conn.lock().unwrap().take()));
        s.trigger(Reason::Signal(Signal::Terminate));
        let s2 = s.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            s2.force(ForceCause::Signal(Signal::Terminate));
        });
        let outcome = s.enforce_deadline(&rt, Duration::from_secs(30)).wait();
        assert!(s.is_drained() && !s.is_drained_in_time());
        assert_eq!(outcome.exit_code(), 143, "{outcome}");
        let report = outcome.report().expect("forced");
        assert_eq!(
            report.named[0].name, "conn 10.0.0.9:4000",
            "named as it was when forced"
        );
    });
}

/// [`ThreadRuntime`], recording the length of every sleep asked of it;
/// with `.1`, its clock stands at that instant (its sleeps are real).
#[derive(Clone, Default)]
struct Recording(Arc<Mutex<Vec<Duration>>>, Option<Instant>);

impl graceful_core::Runtime for Recording {
    type Sleep = <ThreadRuntime as graceful_core::Runtime>::Sleep;
    fn sleep(&self, d: Duration) -> Self::Sleep {
        self.0.lock().unwrap().push(d);
        ThreadRuntime.sleep(d)
    }
    fn now(&self) -> Instant {
        self.1.unwrap_or_else(Instant::now)
    }
    fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, f: F) {
        ThreadRuntime.spawn(f)
    }
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        ThreadRuntime.block_on(f)
    }
}

/// A zero progress interval is taken as 10 ms: no shorter timer is asked
/// for (a zero one would log in a loop), and the drain still ends.
#[test]
fn a_zero_progress_interval_is_taken_as_10_ms() {
    within(10, || {
        let rt = Recording::default();
        let s = Shutdown::new();
        let g = s.guard();
        s.trigger(Reason::requested());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(g);
        });
        let outcome = s
            .enforce_deadline(&rt, Duration::from_secs(5))
            .progress_every(Some(Duration::ZERO))
            .wait();
        assert!(outcome.is_drained(), "{outcome}");
        let sleeps = rt.0.lock().unwrap().clone();
        assert!(
            sleeps.contains(&Duration::from_millis(10)),
            "no progress timer: {sleeps:?}"
        );
        assert!(
            sleeps.iter().all(|d| *d >= Duration::from_millis(10)),
            "{sleeps:?}"
        );
    });
}

/// Asserts that `outcome` is forced with `cause`.
fn assert_forced(outcome: &Outcome, cause: ForceCause) {
    match outcome {
        Outcome::Forced { cause: c, .. } => assert_eq!(*c, cause, "{outcome}"),
        _ => panic!("forced with {cause} expected: {outcome}"),
    }
}

/// A root whose drained hook blocks until released, and reports that it
/// started; its stage "server" with one guard.
struct HookedRoot {
    root: Shutdown,
    server: Shutdown,
    guard: Option<graceful_core::NamedGuard>,
    started: mpsc::Receiver<()>,
    release: mpsc::Sender<()>,
    done: Arc<AtomicBool>,
}

impl HookedRoot {
    fn new() -> HookedRoot {
        let root = Shutdown::named("root");
        let server = root.stage("server");
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let release_rx = Mutex::new(release_rx);
        root.on_drained(move || {
            started_tx.send(()).unwrap();
            let _ = release_rx.lock().unwrap().recv();
            d.store(true, SeqCst);
        });
        let guard = Some(server.guard_named("request"));
        HookedRoot {
            root,
            server,
            guard,
            started,
            release,
            done,
        }
    }

    /// The server's drain with a 10 ms deadline (passed while the root's
    /// drained hook runs) and `settle`; its outcome and how long it took.
    fn server_outcome(&self, settle: Duration) -> (Outcome, Duration) {
        let t0 = Instant::now();
        let outcome = self
            .server
            .enforce_deadline(&ThreadRuntime, Duration::from_millis(10))
            .settle(settle)
            .wait();
        (outcome, t0.elapsed())
    }

    /// Releases the guard on another thread, where the root's drained hook
    /// then runs; returns once the hook started.
    fn drain_into_the_hook(&mut self) {
        let guard = self.guard.take();
        std::thread::spawn(move || drop(guard));
        self.started.recv().unwrap();
    }
}

/// The deadline passes while the drained hooks of a drain that began in
/// time still run: the outcome waits for them (DESIGN §3: a drained wait of
/// any kind is observed only after the drained hooks returned), and the
/// deadline forces nothing.
#[test]
fn a_deadline_passing_while_drained_hooks_run_waits_for_them() {
    within(10, || {
        let mut h = HookedRoot::new();
        h.root.trigger(Reason::requested());
        h.drain_into_the_hook();
        let release = h.release.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            release.send(()).unwrap();
        });
        // The deadline passes long before the hook returns.
        let (outcome, _) = h.server_outcome(Duration::from_secs(5));
        assert!(outcome.is_drained(), "{outcome}");
        assert!(
            h.done.load(SeqCst),
            "the outcome came before the hook returned"
        );
        assert!(h.server.is_drained());
        // The root reads drained just after: the thread that ran the hook
        // publishes each drain of the chain, the server's before the
        // root's (a drained parent has drained children).
        let until = Instant::now() + Duration::from_secs(5);
        while !h.root.is_drained() {
            assert!(Instant::now() < until, "the root never read drained");
            std::thread::yield_now();
        }
        assert!(!h.server.is_forced());
    });
}

/// The same wait gives way to a force from elsewhere (a second signal):
/// hooks never delay escalation.
#[test]
fn a_force_ends_the_wait_for_drained_hooks_past_the_deadline() {
    within(10, || {
        let mut h = HookedRoot::new();
        h.root.trigger(Reason::Signal(Signal::Terminate));
        h.drain_into_the_hook();
        let forcer = h.root.clone();
        let spawned = Instant::now();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            forcer.force(ForceCause::Signal(Signal::Interrupt));
        });
        let (outcome, _) = h.server_outcome(Duration::from_secs(5));
        let elapsed = spawned.elapsed();
        assert_forced(&outcome, ForceCause::Signal(Signal::Interrupt));
        assert!(!h.done.load(SeqCst));
        // Not at the 10 ms deadline: at the force, 200 ms after the spawn.
        assert!(
            elapsed >= Duration::from_millis(200) && elapsed < Duration::from_secs(2),
            "{elapsed:?}"
        );
        h.release.send(()).unwrap();
    });
}

/// Drained hooks that still run `settle` after the deadline no longer hold
/// the outcome: the deadline bounds the stop. It is forced, with nothing
/// held.
#[test]
fn drained_hooks_overrunning_the_deadline_by_the_settle_time_are_left() {
    within(10, || {
        let mut h = HookedRoot::new();
        h.root.trigger(Reason::requested());
        h.drain_into_the_hook();
        let (outcome, elapsed) = h.server_outcome(Duration::from_millis(200));
        assert_forced(&outcome, ForceCause::Deadline);
        assert_eq!(outcome.forced_count(), 0);
        assert_eq!(outcome.exit_code(), 1);
        assert!(!h.done.load(SeqCst));
        assert!(
            elapsed >= Duration::from_millis(180) && elapsed < Duration::from_secs(3),
            "{elapsed:?}"
        );
        h.release.send(()).unwrap();
    });
}

/// A server forced by its own deadline during the stop makes the root's
/// drain a forced one too (B17: exit 1, the deadline passed and work was
/// cut), though the root drained well within its own deadline; the root's
/// outcome names what was cut.
#[test]
fn a_stage_forced_by_its_own_deadline_makes_the_roots_outcome_forced() {
    within(10, || {
        let root = Shutdown::named("root");
        let server = root.stage("server");
        let held = Arc::new(Mutex::new(Some(server.guard_named("hung"))));
        let cut = held.clone();
        server.on_forced(move |_| drop(cut.lock().unwrap().take()));
        root.trigger(Reason::Signal(Signal::Terminate));
        let server_outcome = std::thread::spawn({
            let server = server.clone();
            move || {
                server
                    .enforce_deadline(&ThreadRuntime, Duration::from_millis(100))
                    .wait()
            }
        });
        let outcome = root
            .enforce_deadline(&ThreadRuntime, Duration::from_secs(5))
            .wait();
        let server_outcome = server_outcome.join().unwrap();
        assert!(!server_outcome.is_drained(), "{server_outcome}");
        assert!(!root.is_drained_in_time());
        assert_eq!(outcome.exit_code(), 1, "{outcome}");
        assert_forced(&outcome, ForceCause::Deadline);
        assert_eq!(outcome.forced_count(), 1, "{outcome}");
        assert!(outcome.report().unwrap().to_string().contains("hung"));
        // A force after the drain, which finds nothing held, does not make
        // the drain read as in time.
        root.force(ForceCause::Signal(Signal::Interrupt));
        assert!(!root.is_drained_in_time());
        assert!(
            outcome.took() < Duration::from_secs(2),
            "{:?}",
            outcome.took()
        );
    });
}

/// The root's deadline passes while its drained hooks run, after a stage
/// below was forced: the outcome still waits for the hooks, and is forced
/// for the stage.
#[test]
fn a_root_with_a_forced_stage_still_waits_for_its_drained_hooks() {
    within(10, || {
        let mut h = HookedRoot::new();
        h.root.trigger(Reason::requested());
        h.server.force(ForceCause::Deadline);
        h.drain_into_the_hook();
        let release = h.release.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            release.send(()).unwrap();
        });
        let outcome = h
            .root
            .enforce_deadline(&ThreadRuntime, Duration::from_millis(10))
            .settle(Duration::from_secs(5))
            .wait();
        assert!(
            h.done.load(SeqCst),
            "the outcome came before the hook returned"
        );
        assert_forced(&outcome, ForceCause::Deadline);
        assert!(!h.root.is_forced(), "nothing left to force at the root");
    });
}

/// Forces that are not a stop's: a child forced before the stop (a job
/// cancelled at its own timeout) whose work ends only after the trigger, a
/// child forced by code during the stop (one request cancelled), and a
/// grandchild forced during its parent's own stop (a tenant stopped by
/// code) leave the process's stop clean.
#[test]
fn children_forced_outside_the_stop_leave_the_stop_clean() {
    within(10, || {
        let root = Shutdown::named("root");
        let job = root.child();
        let job_work = job.guard();
        job.force(ForceCause::Deadline);
        let request = root.child();
        let request_work = request.guard();
        // A tenant stopped by code, not the process: its task is forced by
        // its own deadline during the tenant's stop, not the root's.
        let tenant = root.child();
        let task = tenant.child();
        let task_work = task.guard();
        tenant.trigger(Reason::requested());
        task.force(ForceCause::Deadline);
        drop(task_work);
        assert!(tenant.is_drained() && !tenant.is_drained_in_time());
        root.trigger(Reason::Requested { code: Some(3) });
        drop(job_work);
        request.force(ForceCause::Requested);
        drop(request_work);
        let outcome = root
            .enforce_deadline(&ThreadRuntime, Duration::from_secs(5))
            .wait();
        assert!(outcome.is_drained(), "{outcome}");
        assert_eq!(outcome.exit_code(), 3);
    });
}

/// Gives `stage` a drained hook that blocks until released (then sets
/// the flag returned), triggers `root` with one guard of `stage` held,
/// releases that guard on another thread, and returns once the hook runs,
/// with what releases it.
fn trigger_into_a_blocked_hook(
    root: &Shutdown,
    stage: &Shutdown,
) -> (mpsc::Sender<()>, Arc<AtomicBool>) {
    let (started_tx, started) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    stage.on_drained(move || {
        started_tx.send(()).unwrap();
        let _ = release_rx.recv();
        d.store(true, SeqCst);
    });
    let guard = stage.guard_named("request");
    root.trigger(Reason::requested());
    std::thread::spawn(move || drop(guard));
    started.recv().unwrap();
    (release, done)
}

/// `root`'s outcome with a 10 ms deadline and `settle`, the hook that
/// `release` releases let go once the deadline passed: once the drain
/// asked for its settle timer (which it does only then), or after 5 s if
/// it never does (a forced outcome does not wait for the hook).
fn outcome_with_the_hook_released_late(
    root: &Shutdown,
    release: mpsc::Sender<()>,
    settle: Duration,
) -> Outcome {
    let rt = Recording::default();
    let asked = rt.0.clone();
    std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(5);
        while !asked.lock().unwrap().contains(&settle) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = release.send(());
    });
    root.enforce_deadline(&rt, Duration::from_millis(10))
        .settle(settle)
        .progress_every(None)
        .wait()
}

/// The root's deadline passes while a stage's drained hook runs, nothing
/// else held: as with the root's own hooks, the drain began in time, so
/// the root waits for the hook (at most `settle`) and forces nothing.
#[test]
fn a_root_deadline_passing_while_a_stage_drained_hook_runs_waits_for_it() {
    within(10, || {
        let root = Shutdown::named("root");
        let http = root.stage("http");
        let (release, done) = trigger_into_a_blocked_hook(&root, &http);
        let outcome = outcome_with_the_hook_released_late(&root, release, Duration::from_secs(5));
        assert!(outcome.is_drained(), "{outcome}");
        assert!(
            done.load(SeqCst),
            "the outcome came before the hook returned"
        );
        assert!(!root.is_forced() && !http.is_forced());
        assert!(root.is_drained_in_time());
    });
}

/// The same two levels down (root, a stage, a server under it whose
/// drained hook runs): the stage is held by the server alone, and the
/// deadline forces nothing either.
#[test]
fn a_root_deadline_passing_while_a_hook_two_levels_down_runs_waits_for_it() {
    within(10, || {
        let root = Shutdown::named("root");
        let http = root.stage("http");
        let server = http.stage("server");
        let (release, done) = trigger_into_a_blocked_hook(&root, &server);
        let outcome = outcome_with_the_hook_released_late(&root, release, Duration::from_secs(5));
        assert!(outcome.is_drained(), "{outcome}");
        assert!(
            done.load(SeqCst),
            "the outcome came before the hook returned"
        );
        assert!(!root.is_forced() && !http.is_forced() && !server.is_forced());
    });
}

/// The same with a guard of the root's own still held at the deadline:
/// that is work, and the deadline forces it (after 100 ms of settle for
/// the work forced to end, which it does not).
#[test]
fn a_root_deadline_with_work_held_besides_a_stage_hook_forces() {
    within(10, || {
        let root = Shutdown::named("root");
        let http = root.stage("http");
        let _job = root.guard_named("job");
        let (release, _) = trigger_into_a_blocked_hook(&root, &http);
        let outcome =
            outcome_with_the_hook_released_late(&root, release, Duration::from_millis(100));
        assert_forced(&outcome, ForceCause::Deadline);
    });
}

/// A drain records its deadline (its start on its runtime's clock, plus
/// its timeout) for the work below it to read: none before the drain
/// begins, then on its shutdown and every shutdown below it, the earliest
/// of those above. The drains are polled here, one step at a time.
#[test]
fn a_drain_tells_the_work_below_it_its_deadline() {
    within(10, || {
        use std::future::Future;
        use std::task::{Context, Waker};
        let at = Instant::now() + Duration::from_secs(100);
        let rt = Recording(Arc::default(), Some(at));
        let secs = |n: u64| Some(at + Duration::from_secs(n));
        let mut cx = Context::from_waker(Waker::noop());
        let drain =
            |s: &Shutdown, n: u64| Box::pin(s.enforce_deadline(&rt, Duration::from_secs(n)));
        let root = Shutdown::new();
        let server = root.stage("server");
        let conn = server.child();
        let work = conn.guard();
        let mut server_drain = drain(&server, 10);
        assert!(server_drain.as_mut().poll(&mut cx).is_pending());
        assert_eq!(conn.deadline(), None, "a deadline before the trigger");
        root.trigger(Reason::requested());
        assert!(server_drain.as_mut().poll(&mut cx).is_pending());
        assert_eq!((conn.deadline(), server.deadline()), (secs(10), secs(10)));
        assert_eq!(root.deadline(), None, "a deadline above the drain");
        // A later drain of the same shutdown leaves the nearer deadline.
        let mut later = drain(&server, 60);
        assert!(later.as_mut().poll(&mut cx).is_pending());
        assert_eq!((conn.deadline(), server.deadline()), (secs(10), secs(10)));
        // A nearer deadline above wins; a later one below does not.
        let mut root_drain = drain(&root, 5);
        assert!(root_drain.as_mut().poll(&mut cx).is_pending());
        assert_eq!((conn.deadline(), root.deadline()), (secs(5), secs(5)));
        let mut below = drain(&conn, 60);
        assert!(below.as_mut().poll(&mut cx).is_pending());
        assert_eq!(conn.deadline(), secs(5));
        drop(work);
        for drain in [below, later, server_drain, root_drain] {
            assert!(rt.block_on(drain).is_drained());
        }
    });
}
