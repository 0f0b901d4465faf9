//! Scenarios 4 and 5: how fast a trigger reaches many waiting tasks, and how
//! fast the end of a drain is seen.

use graceful_core::Reason;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use event_listener::{Event, Listener};

use crate::stats::{Kind, Row, Table};
use crate::Mode;

type BoxFut = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// An executor to run the waiting tasks on.
pub(crate) trait Exec {
    fn name(&self) -> &'static str;
    fn spawn(&self, f: BoxFut);
    fn block_on(&self, f: BoxFut);
    fn tokio_context(&self) -> Option<&tokio::runtime::Runtime>;
}

/// tokio's multi-threaded runtime, 2 workers.
pub(crate) struct Tokio(pub(crate) tokio::runtime::Runtime);

impl Exec for Tokio {
    fn name(&self) -> &'static str {
        "tokio multi-thread"
    }
    fn spawn(&self, f: BoxFut) {
        drop(self.0.spawn(f));
    }
    fn block_on(&self, f: BoxFut) {
        self.0.block_on(f)
    }
    fn tokio_context(&self) -> Option<&tokio::runtime::Runtime> {
        Some(&self.0)
    }
}

/// smol's executor (async-executor) on 2 threads, which end when this is
/// dropped (their stop channels close).
pub(crate) struct Smol {
    ex: Arc<async_executor::Executor<'static>>,
    _stops: Vec<futures::channel::oneshot::Sender<()>>,
}

impl Smol {
    pub(crate) fn new() -> Smol {
        let ex = Arc::new(async_executor::Executor::new());
        let mut stops = Vec::new();
        for i in 0..2 {
            let (tx, rx) = futures::channel::oneshot::channel::<()>();
            stops.push(tx);
            let ex = ex.clone();
            std::thread::Builder::new()
                .name(format!("smol-{i}"))
                .spawn(move || {
                    futures_lite::future::block_on(ex.run(async move {
                        let _ = rx.await;
                    }))
                })
                .unwrap();
        }
        Smol { ex, _stops: stops }
    }
}

impl Exec for Smol {
    fn name(&self) -> &'static str {
        "smol (async-executor)"
    }
    fn spawn(&self, f: BoxFut) {
        self.ex.spawn(f).detach();
    }
    fn block_on(&self, f: BoxFut) {
        futures_lite::future::block_on(self.ex.run(f))
    }
    fn tokio_context(&self) -> Option<&tokio::runtime::Runtime> {
        None
    }
}

/// The floor: a flag, an event, a counter.
pub(crate) struct FloorGroup {
    flag: AtomicBool,
    trig: Event,
    count: AtomicUsize,
    zero: Event,
}

impl FloorGroup {
    fn new() -> Arc<FloorGroup> {
        Arc::new(FloorGroup {
            flag: AtomicBool::new(false),
            trig: Event::new(),
            count: AtomicUsize::new(1),
            zero: Event::new(),
        })
    }
    async fn triggered(self: Arc<Self>) {
        loop {
            if self.flag.load(Ordering::Acquire) {
                return;
            }
            let l = self.trig.listen();
            if self.flag.load(Ordering::Acquire) {
                return;
            }
            l.await;
        }
    }
    fn trigger(&self) {
        self.flag.store(true, Ordering::Release);
        self.trig.notify(usize::MAX);
        self.release();
    }
    fn acquire(self: &Arc<Self>) -> FloorGuard {
        self.count.fetch_add(1, Ordering::Relaxed);
        FloorGuard(self.clone())
    }
    fn release(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.zero.notify(usize::MAX);
        }
    }
    async fn drained(self: Arc<Self>) {
        loop {
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            let l = self.zero.listen();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            l.await;
        }
    }
}

pub(crate) struct FloorGuard(Arc<FloorGroup>);

impl Drop for FloorGuard {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// The true floor's one-shot signal: a flag, and the wakers of those
/// waiting, taken out under the lock and woken after it.
#[derive(Default)]
pub(crate) struct Flag {
    set: AtomicBool,
    wakers: Mutex<Vec<std::task::Waker>>,
}

impl Flag {
    fn fire(&self) {
        self.set.store(true, Ordering::Release);
        let wakers = std::mem::take(&mut *self.wakers.lock().unwrap());
        for w in wakers {
            w.wake();
        }
    }

    /// Resolves once fired; a re-poll replaces its waker in place.
    fn wait(self: Arc<Self>) -> impl std::future::Future<Output = ()> {
        let mut slot: Option<usize> = None;
        std::future::poll_fn(move |cx| {
            if self.set.load(Ordering::Acquire) {
                return std::task::Poll::Ready(());
            }
            let mut wakers = self.wakers.lock().unwrap();
            // Checked again under the lock, which `fire` takes after
            // setting the flag: no wake-up is lost in between.
            if self.set.load(Ordering::Acquire) {
                return std::task::Poll::Ready(());
            }
            match slot {
                Some(i) => wakers[i].clone_from(cx.waker()),
                None => {
                    slot = Some(wakers.len());
                    wakers.push(cx.waker().clone());
                }
            }
            std::task::Poll::Pending
        })
    }
}

/// The true floor: a [`Flag`] for the trigger, one counter for the guards
/// and a [`Flag`] for the drain (no event-listener).
#[derive(Default)]
pub(crate) struct TrueFloor {
    triggered: Arc<Flag>,
    count: AtomicUsize,
    drained: Arc<Flag>,
}

impl TrueFloor {
    fn new() -> Arc<TrueFloor> {
        let floor = TrueFloor::default();
        floor.count.store(1, Ordering::Relaxed);
        Arc::new(floor)
    }
    fn acquire(self: &Arc<Self>) -> TrueFloorGuard {
        self.count.fetch_add(1, Ordering::Relaxed);
        TrueFloorGuard(self.clone())
    }
    fn release(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.drained.fire();
        }
    }
    fn trigger(&self) {
        self.triggered.fire();
        self.release();
    }
}

pub(crate) struct TrueFloorGuard(Arc<TrueFloor>);

impl Drop for TrueFloorGuard {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// One implementation's trigger, waiters, guards and drain.
enum Group {
    TrueFloor(Arc<TrueFloor>),
    Floor(Arc<FloorGroup>),
    Graceful(graceful_core::Shutdown),
    TokioUtil(
        tokio_util::sync::CancellationToken,
        tokio_util::task::TaskTracker,
    ),
    TokioGraceful(
        Option<tokio::sync::oneshot::Sender<()>>,
        Option<tokio_graceful::Shutdown>,
    ),
    AsyncShutdown(async_shutdown::ShutdownManager<()>),
}

/// The first floor is the one ratios are taken against; the
/// event-listener one is kept as a baseline next to it.
const IMPLS: [(&str, Kind); 6] = [
    ("AtomicBool + Mutex<Vec<Waker>>", Kind::Floor),
    ("Arc<AtomicUsize> + Event", Kind::Floor),
    ("graceful-core", Kind::Ours),
    ("tokio-util CancellationToken + TaskTracker", Kind::Peer),
    ("tokio-graceful", Kind::Peer),
    ("async-shutdown", Kind::Peer),
];

impl Group {
    fn new(i: usize, exec: &dyn Exec) -> Option<Group> {
        Some(match i {
            0 => Group::TrueFloor(TrueFloor::new()),
            1 => Group::Floor(FloorGroup::new()),
            2 => Group::Graceful(graceful_core::Shutdown::new()),
            3 => Group::TokioUtil(
                tokio_util::sync::CancellationToken::new(),
                tokio_util::task::TaskTracker::new(),
            ),
            4 => {
                // Builds on a tokio runtime (it spawns its signal task).
                let rt = exec.tokio_context()?;
                let _enter = rt.enter();
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                Group::TokioGraceful(Some(tx), Some(tokio_graceful::Shutdown::new(rx)))
            }
            _ => Group::AsyncShutdown(async_shutdown::ShutdownManager::new()),
        })
    }

    /// A task body: waits for the trigger while holding a guard (if
    /// `hold`), then releases it.
    fn task(&self, hold: bool) -> BoxFut {
        match self {
            Group::TrueFloor(g) => {
                let guard = hold.then(|| g.acquire());
                let w = g.triggered.clone().wait();
                Box::pin(async move {
                    w.await;
                    drop(guard);
                })
            }
            Group::Floor(g) => {
                let guard = hold.then(|| g.acquire());
                let w = g.clone().triggered();
                Box::pin(async move {
                    w.await;
                    drop(guard);
                })
            }
            Group::Graceful(s) => {
                let guard = hold.then(|| s.guard());
                let w = s.triggered();
                Box::pin(async move {
                    w.await;
                    drop(guard);
                })
            }
            Group::TokioUtil(token, tracker) => {
                let guard = hold.then(|| tracker.token());
                let token = token.clone();
                Box::pin(async move {
                    token.cancelled().await;
                    drop(guard);
                })
            }
            Group::TokioGraceful(_, s) => {
                let s = s.as_ref().unwrap();
                if hold {
                    let guard = s.guard();
                    Box::pin(async move {
                        guard.cancelled().await;
                        drop(guard);
                    })
                } else {
                    let weak = s.guard_weak();
                    Box::pin(async move { weak.into_cancelled().await })
                }
            }
            Group::AsyncShutdown(m) => {
                let guard = hold.then(|| m.delay_shutdown_token().unwrap());
                let w = m.wait_shutdown_triggered();
                Box::pin(async move {
                    w.await;
                    drop(guard);
                })
            }
        }
    }

    fn trigger(&mut self) {
        match self {
            Group::TrueFloor(g) => g.trigger(),
            Group::Floor(g) => g.trigger(),
            Group::Graceful(s) => {
                s.trigger(Reason::requested());
            }
            Group::TokioUtil(token, tracker) => {
                token.cancel();
                tracker.close();
            }
            Group::TokioGraceful(tx, _) => {
                let _ = tx.take().unwrap().send(());
            }
            Group::AsyncShutdown(m) => {
                let _ = m.trigger_shutdown(());
            }
        }
    }

    fn drained(&mut self) -> BoxFut {
        match self {
            Group::TrueFloor(g) => Box::pin(g.drained.clone().wait()),
            Group::Floor(g) => Box::pin(g.clone().drained()),
            Group::Graceful(s) => Box::pin(s.drained()),
            Group::TokioUtil(_, tracker) => {
                let tracker = tracker.clone();
                Box::pin(async move { tracker.wait().await })
            }
            Group::TokioGraceful(_, s) => {
                let s = s.take().unwrap();
                Box::pin(async move {
                    s.shutdown().await;
                })
            }
            Group::AsyncShutdown(m) => Box::pin(m.wait_shutdown_complete()),
        }
    }
}

/// Tasks left, an event for the last, and when the last finished.
type Done = Arc<(AtomicUsize, Event, Mutex<Option<Instant>>)>;

/// Spawns `n` tasks of `group` on `exec` and waits until each has been
/// polled once (and so has registered its waker on the trigger): counted,
/// not guessed with a sleep. Returns the completion counter.
fn spawn_waiters(group: &Group, exec: &dyn Exec, n: usize, hold: bool) -> Done {
    let done = Arc::new((AtomicUsize::new(n), Event::new(), Mutex::new(None)));
    let parked = Arc::new(AtomicUsize::new(0));
    for _ in 0..n {
        let mut body = group.task(hold);
        let (done, parked) = (done.clone(), parked.clone());
        let mut first = true;
        let body = std::future::poll_fn(move |cx| {
            let polled = body.as_mut().poll(cx);
            if std::mem::take(&mut first) {
                parked.fetch_add(1, Ordering::SeqCst);
            }
            polled
        });
        exec.spawn(Box::pin(async move {
            body.await;
            if done.0.fetch_sub(1, Ordering::AcqRel) == 1 {
                *done.2.lock().unwrap() = Some(Instant::now());
                done.1.notify(usize::MAX);
            }
        }));
    }
    while parked.load(Ordering::SeqCst) < n {
        std::thread::sleep(Duration::from_millis(1));
    }
    done
}

/// Runs `measure` on a fresh group of every implementation (those `exec`
/// can run), `rounds` times, rotating which goes first so that order
/// effects hit everyone alike; one sample per run, in µs.
fn rotated(
    exec: &dyn Exec,
    rounds: usize,
    mut measure: impl FnMut(&mut Group) -> Duration,
) -> Vec<Row> {
    let mut rows: Vec<Row> = IMPLS.iter().map(|(n, k)| Row::new(n, *k)).collect();
    rows.retain(|r| r.name != "tokio-graceful" || exec.tokio_context().is_some());
    for round in 0..rounds {
        let k = rows.len();
        for j in 0..k {
            let row = &mut rows[(round + j) % k];
            let i = IMPLS
                .iter()
                .position(|(name, _)| *name == row.name)
                .unwrap();
            let mut group = Group::new(i, exec).unwrap();
            row.samples
                .push(measure(&mut group).as_nanos() as f64 / 1000.0);
        }
    }
    rows
}

/// Scenario 4: trigger to the last of `n` waiting tasks woken, in µs.
pub(crate) fn trigger_to_last_woken(mode: Mode, exec: &dyn Exec, n: usize) -> Table {
    let rounds = if n > 10_000 {
        mode.pick(7, 25)
    } else {
        mode.pick(9, 25)
    };
    let rows = rotated(exec, rounds, |group| {
        let done = spawn_waiters(group, exec, n, false);
        let l = done.1.listen();
        let t0 = Instant::now();
        group.trigger();
        // The last task counts down, then records its time, then notifies:
        // waited for unless the time is there (a count of zero alone may
        // come before the time).
        if done.2.lock().unwrap().is_none() {
            l.wait_timeout(Duration::from_secs(30));
        }
        let t1 = done
            .2
            .lock()
            .unwrap()
            .expect("every waiter woke within 30 s");
        t1 - t0
    });
    Table {
        title: format!(
            "4. trigger to the last of {n} waiting tasks woken, {}",
            exec.name()
        ),
        unit: "µs",
        lower_is_better: true,
        rows,
    }
}

/// Scenario 5: trigger to `drained` seen, with `n` guards each released by
/// its task right after the trigger, in µs.
pub(crate) fn trigger_to_drained(mode: Mode, exec: &dyn Exec, n: usize) -> Table {
    let rows = rotated(exec, mode.pick(9, 25), |group| {
        let _ = spawn_waiters(group, exec, n, true);
        let drained = group.drained();
        let t0 = Instant::now();
        group.trigger();
        exec.block_on(drained);
        t0.elapsed()
    });
    Table {
        title: format!(
            "5. trigger to drained, {n} guards released right after it, {}",
            exec.name()
        ),
        unit: "µs",
        lower_is_better: true,
        rows,
    }
}

/// No tokio here: the implementations that need it are left out.
struct NoTokio;

impl Exec for NoTokio {
    fn name(&self) -> &'static str {
        "single thread"
    }
    fn spawn(&self, _: BoxFut) {
        unreachable!()
    }
    fn block_on(&self, _: BoxFut) {
        unreachable!()
    }
    fn tokio_context(&self) -> Option<&tokio::runtime::Runtime> {
        None
    }
}

/// The measured phase of [`wake_once`]: trigger, then run the executor on
/// this thread until every waiter has finished (and, when guards are held,
/// until the drain was seen). Not inlined, so that callgrind can count
/// exactly this.
#[inline(never)]
fn wake_phase(ex: &async_executor::Executor<'static>, group: &mut Group, left: &AtomicUsize) {
    group.trigger();
    while left.load(Ordering::SeqCst) > 0 {
        ex.try_tick();
    }
}

/// Runs `n` waiters of implementation `i` on one thread, all parked, then
/// the measured wake phase. With `hold`, each waiter holds a guard it
/// releases when woken, and a further task waits for the drain. Run by the
/// benchmark under callgrind.
pub(crate) fn wake_once(i: usize, n: usize, hold: bool) {
    let ex: &'static async_executor::Executor<'static> =
        Box::leak(Box::new(async_executor::Executor::new()));
    let mut group = Group::new(i, &NoTokio).expect("needs no tokio");
    let left = Arc::new(AtomicUsize::new(n + usize::from(hold)));
    for _ in 0..n {
        let body = group.task(hold);
        let left = left.clone();
        ex.spawn(async move {
            body.await;
            left.fetch_sub(1, Ordering::AcqRel);
        })
        .detach();
    }
    if hold {
        let drained = group.drained();
        let left = left.clone();
        ex.spawn(async move {
            drained.await;
            left.fetch_sub(1, Ordering::AcqRel);
        })
        .detach();
    }
    while ex.try_tick() {}
    wake_phase(ex, &mut group, &left);
}

/// Scenarios 4 and 5, counted: instructions per waiter woken (and, with
/// `hold`, per guard released up to the drain seen), single-threaded under
/// callgrind, deterministic unlike wall-clock time on a shared machine.
/// `None` when valgrind is not installed.
pub(crate) fn instructions_per_waiter(n: usize, hold: bool) -> Option<Table> {
    let valgrind_ok = std::process::Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !valgrind_ok {
        eprintln!("valgrind not found: skipping the instruction counts");
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let mut rows = Vec::new();
    for (i, (name, kind)) in IMPLS.iter().enumerate() {
        if *name == "tokio-graceful" {
            continue; // needs a tokio runtime of its own
        }
        let out = std::process::Command::new("valgrind")
            .args([
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                "--toggle-collect=*wake_phase*",
            ])
            .arg(&exe)
            .args([
                "--wake-once",
                &i.to_string(),
                &n.to_string(),
                if hold { "hold" } else { "" },
            ])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stderr);
        let collected: f64 = text
            .lines()
            .find_map(|l| l.split("Collected : ").nth(1))?
            .trim()
            .parse()
            .ok()?;
        let mut row = Row::new(name, *kind);
        row.samples.push(collected / n as f64);
        row.note = "callgrind, deterministic".into();
        rows.push(row);
    }
    let title = if hold {
        format!("5c. instructions per guard, trigger to drained, {n} guards, one thread")
    } else {
        format!("4c. instructions per waiter woken, {n} waiters, one thread")
    };
    Some(Table {
        title,
        unit: "instructions",
        lower_is_better: true,
        rows,
    })
}
