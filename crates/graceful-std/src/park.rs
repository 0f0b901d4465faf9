//! Spawned tasks, and the parking of the ones that wait long.
//!
//! A spawned task runs on a connection thread (see `threads`) and waits
//! there, as [`block_on`](crate::reactor::block_on) does, while it is busy.
//! One that has waited [`PARK_AFTER`] with nothing to do (an idle
//! keep-alive connection) gives its thread back: its future, socket
//! interests and timers move to the parker, one thread that waits for all
//! parked tasks in one `epoll` set. A wake-up, a ready socket or a due timer
//! takes the task out and runs it on a connection thread again. An idle
//! connection then costs its socket and its future, not a thread's stack.
//! At most [`HELD_WAITS`] tasks wait on their threads at once to park;
//! past them a task parks as soon as it waits, so a burst of new
//! connections (each waiting for its next request) does not hold a thread
//! each: 2000 connections opened 128 at a time had left 210 threads
//! behind, each with 24 KiB of stack resident, and now leave about 110.
//!
//! Invariants:
//! - a task's wakers all go through its state, under its lock: `Running`
//!   forwards to the running thread's wake-up, `Parked` unparks,
//!   `Scheduled` and `Done` need nothing (a scheduled task is polled first
//!   thing when it runs);
//! - a task parks under its lock, and only if its thread was not woken
//!   since its last poll: a wake-up before the park is seen by the park
//!   (which then polls again), one after it finds the task `Parked`;
//! - exactly one unpark takes a parked task out: the one that finds it
//!   `Parked` with the parking's key, under the lock. It deletes the task's
//!   sockets from the `epoll` set while the task still holds them (so no
//!   reused descriptor number is ever watched for it), then wakes all its
//!   interests and timers: its futures look again and wait again, wherever
//!   the task runs next, so no wait registered before the park is lost;
//! - a parking that cannot register every socket because another parked
//!   task waits for one of them (a connection's reader and writer in two
//!   tasks), or that failed for want of resources (no parker yet, the
//!   system's limit of watched descriptors, memory), is tried again a
//!   second later, as the parker's start is: the task waits on its thread
//!   meanwhile (woken each second to try), and parks once the other task
//!   has left or the moment's exhaustion has passed.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::reactor::{self, Interest, Notify, Timer};

/// How long a spawned task waits on its thread before it parks.
pub(crate) const PARK_AFTER: Duration = Duration::from_millis(10);

/// How many tasks may wait on their threads at once to park (an idle
/// connection's first 10 ms): a task whose wait would be one more parks
/// at once instead.
pub(crate) const HELD_WAITS: usize = 64;

/// How many tasks wait on their threads to park now.
static HELD: AtomicUsize = AtomicUsize::new(0);

/// How a task waits on its thread before it parks (again).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Wait {
    /// [`PARK_AFTER`], if it is one of the [`HELD_WAITS`]; otherwise not
    /// at all.
    ToPark,
    /// This long (a parking refused for want of resources, or for a
    /// socket another parked task waits for), then tries again; `None`:
    /// for good (nothing parks).
    Retry(Option<Duration>),
}

/// How long a held wait holds its thread: [`PARK_AFTER`], or in tests
/// what the task set up instead (taken whether the wait is held or not).
fn held_for() -> Duration {
    #[cfg(all(test, any(target_os = "linux", target_os = "android")))]
    if let Some(hold) = tests::hold() {
        return hold;
    }
    PARK_AFTER
}

/// While alive, one of the [`HELD_WAITS`] waits on a thread, or one past
/// them (which does not wait), counted.
struct Held(bool);

impl Held {
    /// Counts a wait on the thread: held if fewer than [`HELD_WAITS`] are.
    fn wait() -> Held {
        Held(HELD.fetch_add(1, SeqCst) < HELD_WAITS)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD.fetch_sub(1, SeqCst);
    }
}

/// When a task that could not park for want of resources tries again
/// (where nothing parks: never).
#[cfg(any(target_os = "linux", target_os = "android"))]
const RETRY_PARK: Option<Duration> = Some(epoll_parker::RETRY);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const RETRY_PARK: Option<Duration> = None;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A spawned future and where it is.
pub(crate) struct Task {
    inner: Mutex<Inner>,
}

struct Inner {
    state: State,
    /// The future while it is not being polled (scheduled or parked).
    future: Option<BoxFuture>,
    /// While parked: what the task waits for.
    waits: (Vec<Interest>, Vec<Timer>),
}

enum State {
    /// Queued to run on a connection thread.
    Scheduled,
    /// Polled, or waiting, on the thread this wakes.
    Running(Arc<Notify>),
    /// In the parker, under this key.
    Parked(u64),
    /// Ended (or its future was dropped).
    Done,
}

impl Task {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `future` on a connection thread.
    pub(crate) fn spawn(future: BoxFuture) -> Arc<Task> {
        let task = Arc::new(Task {
            inner: Mutex::new(Inner {
                state: State::Scheduled,
                future: Some(future),
                waits: (Vec::new(), Vec::new()),
            }),
        });
        task.clone().dispatch();
        task
    }

    /// Runs the scheduled task on a connection thread; without one, drops
    /// its future (which releases what it holds: a connection's socket and
    /// guard), on the parker's thread if there is one: the caller may be a
    /// waker, called under locks the future's drop takes.
    fn dispatch(self: Arc<Self>) {
        let ran = crate::threads::run(move |fate| match fate {
            crate::threads::Fate::Run => self.run(),
            crate::threads::Fate::Abandoned => self.abandon(),
        });
        if let Err(e) = ran {
            tracing::error!("no thread for a spawned task: {e}");
        }
    }

    /// No thread will run the task: drops its future.
    fn abandon(self: Arc<Self>) {
        let future = {
            let mut inner = self.lock();
            inner.state = State::Done;
            inner.future.take()
        };
        match (future, parker()) {
            (Some(future), Some(parker)) => parker.drop_later(future),
            (future, _) => drop(future),
        }
    }

    /// Polls the task on this thread until it ends or parks.
    fn run(self: Arc<Self>) {
        let notify = reactor::thread_notify();
        let Some(mut future) = ({
            let mut inner = self.lock();
            let future = inner.future.take();
            if future.is_some() {
                inner.state = State::Running(notify.clone());
            }
            future
        }) else {
            return;
        };
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        let _lists = reactor::Lists::enter();
        // Marks the task ended if its future panics, so that its wakers
        // stop waking this thread.
        let ended = Ended(&self);
        let mut next = match parker() {
            Some(_) => Wait::ToPark,
            None => Wait::Retry(RETRY_PARK),
        };
        loop {
            notify.clear();
            if let Poll::Ready(()) = future.as_mut().poll(&mut cx) {
                return;
            }
            // Past the held waits' number, a wait to park does not wait
            // here: the task parks at once (a wake-up since its poll is
            // seen by the park, a ready socket or a due timer by the
            // parker), so a burst of new connections does not hold a
            // thread each. A retry always waits, so as not to spin.
            let hold = held_for();
            let held = (next == Wait::ToPark).then(Held::wait);
            let wait = match (next, &held) {
                (Wait::ToPark, Some(Held(true))) => Some(Some(hold)),
                (Wait::ToPark, _) => None,
                (Wait::Retry(after), _) => Some(after),
            };
            if let Some(after) = wait {
                let park_at = after.map(|after| Instant::now() + after);
                reactor::wait_once(&notify, park_at);
                if notify.notified() || park_at.map_or(true, |t| Instant::now() < t) {
                    continue;
                }
            }
            drop(held);
            #[cfg(all(test, any(target_os = "linux", target_os = "android")))]
            tests::pause_before_park();
            match self.park(future, &notify) {
                Ok(()) => {
                    std::mem::forget(ended);
                    return;
                }
                Err((f, again)) => {
                    future = f;
                    next = again;
                }
            }
        }
    }

    /// Moves the task, which was not woken since its last poll, to the
    /// parker. Gives the future back if it must stay, with how it waits
    /// next: when a wake-up came in, to park; when the parker or the
    /// system lacked resources, or another parked task waits for one of
    /// its sockets, [`RETRY_PARK`], then it tries again; when the parker
    /// has ended, for good (it stays on this thread).
    fn park(self: &Arc<Self>, future: BoxFuture, notify: &Notify) -> Result<(), (BoxFuture, Wait)> {
        let Some(parker) = parker() else {
            return Err((future, Wait::Retry(RETRY_PARK)));
        };
        let mut inner = self.lock();
        if notify.notified() {
            return Err((future, Wait::ToPark));
        }
        let (interests, timers) = reactor::take_waits();
        match register(|| parker.register(self, &interests, &timers)) {
            Ok(key) => {
                inner.state = State::Parked(key);
                inner.future = Some(future);
                inner.waits = (interests, timers);
                Ok(())
            }
            Err(e) => {
                // The parker ended: no later try can do better. Otherwise
                // (resources, or another parked task waiting for one of its
                // sockets, which may leave) a second later.
                let again = e.raw_os_error().and(RETRY_PARK);
                tracing::debug!("a task stays on its thread: {e}; parking again in {again:?}");
                reactor::restore_waits(interests, timers);
                Err((future, Wait::Retry(again)))
            }
        }
    }

    /// Takes the task out of the parker, if it is still parked under
    /// `key`, and runs it on a connection thread.
    fn unpark(self: &Arc<Self>, key: u64) {
        let (interests, timers) = {
            let mut inner = self.lock();
            if !matches!(inner.state, State::Parked(k) if k == key) {
                return;
            }
            let waits = std::mem::take(&mut inner.waits);
            if let Some(parker) = parker() {
                parker.forget(key, &waits.0, &waits.1);
            }
            inner.state = State::Scheduled;
            waits
        };
        // Outside the lock: a waker may be this task's own (then it finds
        // the task scheduled, and does nothing more). Every waker is woken
        // and the task runs again even if one panics: nothing else would
        // run it (a scheduled task's wakers do nothing), and its
        // connection would never end. The first panic goes on after.
        let wakers = interests.into_iter().map(|i| i.waker);
        let mut panicked = None;
        for waker in wakers.chain(timers.into_iter().map(|t| t.waker)) {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| waker.wake())) {
                panicked.get_or_insert(panic);
            }
        }
        self.clone().dispatch();
        if let Some(panic) = panicked {
            std::panic::resume_unwind(panic);
        }
    }
}

/// While alive, a task that panics is marked ended.
struct Ended<'a>(&'a Task);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        self.0.lock().state = State::Done;
    }
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let inner = self.lock();
        match &inner.state {
            State::Running(notify) => notify.wake_by_ref(),
            &State::Parked(key) => {
                drop(inner);
                self.unpark(key);
            }
            State::Scheduled | State::Done => {}
        }
    }
}

impl Task {
    /// Whether the task is in the parker now.
    #[cfg(all(test, any(target_os = "linux", target_os = "android")))]
    fn is_parked(self: &Arc<Self>) -> bool {
        // Both read under the task's lock, which parks and unparks it.
        let inner = self.lock();
        let parked = matches!(inner.state, State::Parked(_));
        let listed =
            parker().is_some_and(|p| p.state().tasks.values().any(|t| Arc::ptr_eq(t, self)));
        drop(inner);
        assert_eq!(parked, listed, "a task's state and the parker disagree");
        parked
    }
}

/// Whether a task in the parker now waits for the socket `fd`.
#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
pub(crate) fn is_parked_on(fd: std::os::fd::RawFd) -> bool {
    use std::os::fd::{AsFd, AsRawFd};
    // The tasks are locked after the parker's lock is let go: a parking
    // task holds its own lock while it takes the parker's.
    let tasks: Vec<Arc<Task>> = match parker() {
        Some(p) => p.state().tasks.values().cloned().collect(),
        None => return false,
    };
    tasks.iter().any(|task| {
        let inner = task.lock();
        matches!(inner.state, State::Parked(_))
            && inner
                .waits
                .0
                .iter()
                .any(|i| i.socket.as_fd().as_raw_fd() == fd)
    })
}

/// What `register` returns, or in tests the error the task set up for its
/// parking instead.
fn register(register: impl FnOnce() -> std::io::Result<u64>) -> std::io::Result<u64> {
    #[cfg(all(test, any(target_os = "linux", target_os = "android")))]
    if let Some(code) = tests::fail_park() {
        return Err(std::io::Error::from_raw_os_error(code));
    }
    register()
}

#[cfg(any(target_os = "linux", target_os = "android"))]
use epoll_parker::parker;

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn parker() -> Option<&'static Parker> {
    None
}

/// Elsewhere nothing parks: a task waits on its thread.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
struct Parker;

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl Parker {
    fn register(&self, _: &Arc<Task>, _: &[Interest], _: &[Timer]) -> std::io::Result<u64> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
    fn forget(&self, _: u64, _: &[Interest], _: &[Timer]) {}
    fn drop_later(&self, future: BoxFuture) {
        drop(future);
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod epoll_parker {
    use std::collections::{BTreeSet, HashMap};
    use std::os::fd::{AsFd, AsRawFd};
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
    use std::time::Instant;

    use nix::poll::PollFlags;
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
    use nix::sys::eventfd::{EfdFlags, EventFd};

    use super::Task;
    use crate::reactor::{Interest, Timer};

    /// The `epoll` key of the parker's own wake-up.
    const WAKE: u64 = u64::MAX;

    pub(crate) struct Parker {
        epoll: Epoll,
        /// Ends the parker's wait when a task parks with an earlier timer
        /// than the wait's end.
        wake: EventFd,
        state: Mutex<State>,
    }

    #[derive(Default)]
    pub(crate) struct State {
        next_key: u64,
        pub(crate) tasks: HashMap<u64, Arc<Task>>,
        /// Each parked task's earliest timer.
        timers: BTreeSet<(Instant, u64)>,
        /// While the parker waits: until when (`Some(None)`: no end).
        pub(crate) waits_until: Option<Option<Instant>>,
        /// Futures to drop on the parker's thread.
        graveyard: Vec<super::BoxFuture>,
        /// Set when the parker's thread ended: nothing parks any more.
        closed: bool,
    }

    /// The parker, started at its first use (a spawned task's first run);
    /// `None` if it cannot be. A start that failed (out of descriptors or
    /// threads in a flood of connections) is tried again at a use a
    /// second or more later, so that a moment's exhaustion does not leave
    /// every idle connection holding a thread for the process's life.
    pub(crate) fn parker() -> Option<&'static Parker> {
        static PARKER: OnceLock<&'static Parker> = OnceLock::new();
        static FAILED_AT: Mutex<Option<Instant>> = Mutex::new(None);
        started(&PARKER, &FAILED_AT, RETRY, Parker::start)
    }

    /// How long after a failed start the parker is tried again.
    pub(super) const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

    /// What `slot` holds, else what `start` makes, unless it failed (as
    /// recorded in `failed_at`) less than `retry` ago.
    pub(super) fn started<T: Copy>(
        slot: &OnceLock<T>,
        failed_at: &Mutex<Option<Instant>>,
        retry: std::time::Duration,
        start: impl FnOnce() -> std::io::Result<T>,
    ) -> Option<T> {
        if let Some(t) = slot.get() {
            return Some(*t);
        }
        let mut failed = failed_at.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = slot.get() {
            return Some(*t);
        }
        if failed.is_some_and(|at| at.elapsed() < retry) {
            return None;
        }
        match start() {
            Ok(t) => Some(*slot.get_or_init(|| t)),
            Err(e) => {
                tracing::warn!(
                    "no parker for idle tasks ({e}): each waits on its thread; trying again in {retry:?}"
                );
                *failed = Some(Instant::now());
                None
            }
        }
    }

    fn epoll_flags(flags: PollFlags) -> EpollFlags {
        let mut out = EpollFlags::empty();
        if flags.contains(PollFlags::POLLIN) {
            out |= EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
        }
        if flags.contains(PollFlags::POLLOUT) {
            out |= EpollFlags::EPOLLOUT;
        }
        out
    }

    impl Parker {
        fn start() -> std::io::Result<&'static Parker> {
            let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
            let wake = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
            epoll.add(wake.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, WAKE))?;
            // The thread is started before the parker is made to last for
            // good: if it cannot be, the descriptors are closed.
            let (give, take) = std::sync::mpsc::sync_channel::<&'static Parker>(1);
            std::thread::Builder::new()
                .name("graceful-parker".into())
                .spawn(move || {
                    if let Ok(parker) = take.recv() {
                        parker.serve()
                    }
                })?;
            let parker: &'static Parker = Box::leak(Box::new(Parker {
                epoll,
                wake,
                state: Mutex::default(),
            }));
            let _ = give.send(parker);
            Ok(parker)
        }

        pub(crate) fn state(&self) -> MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(|p| p.into_inner())
        }

        /// Adds a parking task's sockets to the set, and its earliest
        /// timer; returns its key. On an error nothing stays registered.
        pub(super) fn register(
            &self,
            task: &Arc<Task>,
            interests: &[Interest],
            timers: &[Timer],
        ) -> std::io::Result<u64> {
            let mut st = self.state();
            if st.closed {
                return Err(std::io::Error::other("the parker has ended"));
            }
            let key = st.next_key;
            // One entry per socket, with every direction waited for.
            let mut fds: Vec<(&Interest, EpollFlags)> = Vec::with_capacity(interests.len());
            for i in interests {
                let fd = i.socket.as_fd().as_raw_fd();
                match fds
                    .iter_mut()
                    .find(|(j, _)| j.socket.as_fd().as_raw_fd() == fd)
                {
                    Some((_, flags)) => *flags |= epoll_flags(i.flags),
                    None => fds.push((i, epoll_flags(i.flags))),
                }
            }
            for (n, (i, flags)) in fds.iter().enumerate() {
                if let Err(e) = self
                    .epoll
                    .add(i.socket.as_fd(), EpollEvent::new(*flags, key))
                {
                    for (i, _) in &fds[..n] {
                        let _ = self.epoll.delete(i.socket.as_fd());
                    }
                    return Err(e.into());
                }
            }
            st.next_key += 1;
            st.tasks.insert(key, task.clone());
            if let Some(first) = timers.iter().map(|t| t.deadline).min() {
                st.timers.insert((first, key));
                // The parker's wait ends later than this timer: end it.
                if st
                    .waits_until
                    .is_some_and(|until| until.map_or(true, |u| first < u))
                {
                    let _ = self.wake.write(1);
                }
            }
            Ok(key)
        }

        /// Removes a task taken out under `key`, its sockets (still open:
        /// the caller holds them) and its timer.
        pub(super) fn forget(&self, key: u64, interests: &[Interest], timers: &[Timer]) {
            let mut st = self.state();
            if let Some(first) = timers.iter().map(|t| t.deadline).min() {
                st.timers.remove(&(first, key));
            }
            let task = st.tasks.remove(&key);
            // Under the parker's lock, once per socket: a socket another
            // task parks on next is added under the lock too, so this
            // never deletes its entry.
            let mut deleted: Vec<i32> = Vec::with_capacity(interests.len());
            for i in interests {
                let fd = i.socket.as_fd().as_raw_fd();
                if !deleted.contains(&fd) {
                    deleted.push(fd);
                    let _ = self.epoll.delete(i.socket.as_fd());
                }
            }
            drop(st);
            // Not the task's last reference: the caller holds one.
            drop(task);
        }

        /// Drops `future` on the parker's thread: a task that could not be
        /// run again, woken by a caller that may hold locks its drop
        /// takes.
        pub(super) fn drop_later(&self, future: super::BoxFuture) {
            let mut st = self.state();
            if st.closed {
                drop(st);
                drop(future);
                return;
            }
            st.graveyard.push(future);
            let _ = self.wake.write(1);
        }

        /// The parker's thread: waits for the parked tasks' sockets and
        /// timers, and unparks the ones that are ready or due.
        fn serve(&self) {
            let mut events = vec![EpollEvent::empty(); 256];
            let mut ready: Vec<(u64, Arc<Task>)> = Vec::new();
            loop {
                let until = {
                    let mut st = self.state();
                    let until = st.timers.first().map(|&(t, _)| t);
                    st.waits_until = Some(until);
                    until
                };
                let timeout = match until {
                    None => EpollTimeout::NONE,
                    Some(t) => {
                        // Rounded up, so that the timer is due on waking.
                        let left = t.saturating_duration_since(Instant::now())
                            + std::time::Duration::from_micros(999);
                        EpollTimeout::try_from(left).unwrap_or(EpollTimeout::MAX)
                    }
                };
                let n = match self.epoll.wait(&mut events, timeout) {
                    Ok(n) => n,
                    Err(nix::errno::Errno::EINTR) => 0,
                    Err(e) => {
                        // Never seen: the set and the buffer are the
                        // parker's own. Parking ends for good rather than
                        // retrying on a timer: every parked task runs
                        // again, and tasks wait on their threads from now.
                        tracing::error!(
                            "the parker's wait failed ({e}); idle tasks wait on their threads"
                        );
                        let mut st = self.state();
                        st.closed = true;
                        ready.extend(st.tasks.iter().map(|(k, t)| (*k, t.clone())));
                        let graveyard = std::mem::take(&mut st.graveyard);
                        drop(st);
                        drop_all(graveyard);
                        unpark_all(&mut ready);
                        return;
                    }
                };
                let graveyard = {
                    let mut st = self.state();
                    st.waits_until = None;
                    for e in &events[..n] {
                        if e.data() == WAKE {
                            let _ = self.wake.read();
                        } else if let Some(t) = st.tasks.get(&e.data()) {
                            ready.push((e.data(), t.clone()));
                        }
                    }
                    let now = Instant::now();
                    while let Some(&(t, key)) = st.timers.first() {
                        if t > now {
                            break;
                        }
                        st.timers.pop_first();
                        if let Some(t) = st.tasks.get(&key) {
                            ready.push((key, t.clone()));
                        }
                    }
                    std::mem::take(&mut st.graveyard)
                };
                drop_all(graveyard);
                unpark_all(&mut ready);
            }
        }
    }

    /// Drops each future: a panic in one's drop is logged, and the parker
    /// goes on.
    fn drop_all(futures: Vec<super::BoxFuture>) {
        for future in futures {
            if catch_unwind(AssertUnwindSafe(|| drop(future))).is_err() {
                tracing::error!("a task's future panicked as it was dropped");
            }
        }
    }

    /// Unparks each task: a panic in one (a waker's) is logged, and the
    /// parker goes on; the task runs again all the same.
    fn unpark_all(ready: &mut Vec<(u64, Arc<Task>)>) {
        for (key, task) in ready.drain(..) {
            if catch_unwind(AssertUnwindSafe(|| task.unpark(key))).is_err() {
                tracing::error!("a task's waker panicked as it was unparked");
            }
        }
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use std::cell::Cell;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::mpsc;

    use nix::poll::PollFlags;

    use super::*;
    use crate::reactor::tests::{pair, read_byte, sleep_until};
    use crate::reactor::Socket;

    const BOUND: Duration = Duration::from_secs(10);

    /// A spawned task, and what its future returns.
    struct Spawned<T> {
        task: Arc<Task>,
        out: mpsc::Receiver<T>,
    }

    fn spawn<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> Spawned<T> {
        let (tx, out) = mpsc::channel();
        let task = Task::spawn(Box::pin(async move {
            let _ = tx.send(f.await);
        }));
        Spawned { task, out }
    }

    impl<T> Spawned<T> {
        /// Waits (at most 10 s) until the task is parked.
        fn until_parked(&self) {
            let until = Instant::now() + BOUND;
            while !self.task.is_parked() {
                assert!(Instant::now() < until, "the task never parked");
                std::thread::sleep(Duration::from_millis(1));
            }
        }

        fn output(&self) -> T {
            self.out.recv_timeout(BOUND).expect("the task never ended")
        }
    }

    thread_local! {
        /// How long the task polled last on this thread pauses between
        /// deciding to park and parking: the window for a wake-up to land
        /// in. Set by the task's own future.
        static PAUSE_BEFORE_PARK: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    }

    /// Set while a task pauses before its park.
    static PAUSING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    thread_local! {
        /// The error the next parking of the task polled last on this
        /// thread fails with, as if the parker's set had refused it. Set by
        /// the task's own future.
        static FAIL_NEXT_PARK: Cell<Option<i32>> = const { Cell::new(None) };
    }

    pub(super) fn fail_park() -> Option<i32> {
        FAIL_NEXT_PARK.take()
    }

    thread_local! {
        /// How long the task polled last on this thread holds it in its
        /// next wait, if held, instead of `PARK_AFTER`. Set by the task's
        /// own future.
        static HOLD: Cell<Option<Duration>> = const { Cell::new(None) };
    }

    pub(super) fn hold() -> Option<Duration> {
        HOLD.take()
    }

    /// A wait that holds its thread for a minute, if held; and word of
    /// its future's first poll.
    fn held_read(server: Arc<TcpStream>) -> (Spawned<u8>, mpsc::Receiver<()>) {
        let (polled, first) = mpsc::channel();
        let read = read_byte(server);
        let got = spawn(async move {
            HOLD.set(Some(Duration::from_secs(60)));
            let _ = polled.send(());
            read.await
        });
        (got, first)
    }

    /// Once `HELD_WAITS` tasks wait on their threads, a task's wait parks
    /// at once (here where each would hold its thread for a minute); once
    /// the held ones have left, a wait holds its thread again. (`HELD` is
    /// the process's: this relies on the test running alone in its
    /// process, as under nextest.)
    #[test]
    fn past_the_held_waits_a_task_parks_at_once() {
        let held: Vec<_> = (0..HELD_WAITS)
            .map(|_| {
                let (client, server) = pair();
                (client, held_read(server).0)
            })
            .collect();
        let until = Instant::now() + BOUND;
        while HELD.load(SeqCst) < HELD_WAITS {
            assert!(Instant::now() < until, "the waits were never held");
            std::thread::sleep(Duration::from_millis(1));
        }
        let (mut client, server) = pair();
        let (parked, _) = held_read(server);
        parked.until_parked();
        assert_eq!(HELD.load(SeqCst), HELD_WAITS);
        for (mut client, got) in held {
            assert!(!got.task.is_parked());
            client.write_all(b"h").unwrap();
            assert_eq!(got.output(), b'h');
        }
        client.write_all(b"p").unwrap();
        assert_eq!(parked.output(), b'p');
        assert_eq!(HELD.load(SeqCst), 0);
        // A wait holds its thread again: 50 ms after its first poll it is
        // still not parked (a wait past the held ones parks at once).
        let (mut client, server) = pair();
        let (again, polled) = held_read(server);
        polled.recv_timeout(BOUND).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!again.task.is_parked(), "parked at once");
        assert_eq!(HELD.load(SeqCst), 1);
        client.write_all(b"a").unwrap();
        assert_eq!(again.output(), b'a');
    }

    /// A parking refused for want of resources (here `ENOMEM`) is tried
    /// again a retry later: the task does not keep its thread for good.
    #[test]
    fn a_parking_that_failed_for_want_of_resources_is_tried_again() {
        let (mut client, server) = pair();
        let got = spawn(async move {
            FAIL_NEXT_PARK.set(Some(12));
            read_byte(server).await
        });
        got.until_parked();
        client.write_all(b"x").unwrap();
        assert_eq!(got.output(), b'x');
    }

    pub(super) fn pause_before_park() {
        let pause = PAUSE_BEFORE_PARK.take();
        if pause > Duration::ZERO {
            PAUSING.store(true, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(pause);
            PAUSING.store(false, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn a_task_waiting_for_its_socket_parks_and_is_run_again_when_it_is_ready() {
        let (mut client, server) = pair();
        let got = spawn(read_byte(server));
        got.until_parked();
        client.write_all(b"x").unwrap();
        assert_eq!(got.output(), b'x');
        assert!(!got.task.is_parked());
    }

    #[test]
    fn a_parked_task_is_run_again_by_its_waker() {
        let (tx, rx) = futures::channel::oneshot::channel::<u8>();
        let got = spawn(async move { rx.await.unwrap() });
        got.until_parked();
        tx.send(7).unwrap();
        assert_eq!(got.output(), 7);
        assert!(!got.task.is_parked());
    }

    /// A wake-up that lands after the task decided to park and before it
    /// parked is seen by the park, which then polls again.
    #[test]
    fn a_wake_up_just_before_the_park_is_not_lost() {
        let (tx, mut rx) = futures::channel::oneshot::channel::<u8>();
        let got = spawn(std::future::poll_fn(move |cx| {
            let polled = Pin::new(&mut rx).poll(cx);
            // Only this task's thread pauses, and only before this park.
            PAUSE_BEFORE_PARK.set(match polled.is_pending() {
                true => Duration::from_millis(300),
                false => Duration::ZERO,
            });
            polled.map(Result::unwrap)
        }));
        // The task decides to park after PARK_AFTER, then pauses.
        let until = Instant::now() + BOUND;
        while !PAUSING.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(
                Instant::now() < until,
                "the task never paused before its park"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        tx.send(7).unwrap();
        assert!(
            PAUSING.load(std::sync::atomic::Ordering::SeqCst),
            "the wake-up did not land in the pause"
        );
        assert_eq!(got.output(), 7, "the wake-up was lost");
    }

    /// A task that sleeps until `deadline`, then returns when it woke.
    fn sleeper(deadline: Instant) -> Spawned<Instant> {
        spawn(async move {
            sleep_until(deadline).await;
            Instant::now()
        })
    }

    /// Parks, then returns when it woke, which must be within 2 s of
    /// `deadline`.
    fn parked_until(sleeper: Spawned<Instant>, deadline: Instant) -> Instant {
        sleeper.until_parked();
        let at = sleeper.output();
        let late = at.saturating_duration_since(deadline);
        assert!(late < Duration::from_secs(2), "{late:?} late");
        at
    }

    #[test]
    fn a_parked_tasks_timer_runs_it_at_its_deadline() {
        let deadline = Instant::now() + Duration::from_millis(500);
        let at = parked_until(sleeper(deadline), deadline);
        assert!(at >= deadline, "ran {:?} early", deadline - at);
    }

    /// A task that parks with a timer earlier than the parker's wait ends
    /// that wait.
    #[test]
    fn an_earlier_timer_ends_the_parkers_longer_wait() {
        let late_deadline = Instant::now() + Duration::from_secs(60);
        let late = spawn(sleep_until(late_deadline));
        late.until_parked();
        // Until the parker waits for the 60 s timer.
        let until = Instant::now() + BOUND;
        while parker().unwrap().state().waits_until != Some(Some(late_deadline)) {
            assert!(
                Instant::now() < until,
                "the parker never waited for the timer"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let deadline = Instant::now() + Duration::from_millis(300);
        parked_until(sleeper(deadline), deadline);
        assert!(late.task.is_parked());
    }

    /// The parker holds no socket of a task it let go: once the task ends,
    /// its socket is closed.
    #[test]
    fn an_unparked_task_that_ends_closes_its_socket() {
        let (mut client, server) = pair();
        let done = spawn(async move {
            read_byte(server).await;
        });
        done.until_parked();
        client.write_all(b"x").unwrap();
        done.output();
        client.set_read_timeout(Some(BOUND)).unwrap();
        assert_eq!(
            client.read(&mut [0; 1]).unwrap(),
            0,
            "the socket is still open"
        );
    }

    /// Wake-ups that land before, around and after the park are never
    /// lost.
    #[test]
    fn wake_ups_racing_the_park_are_never_lost() {
        let got: Vec<_> = (0..300u64)
            .map(|i| {
                let (tx, rx) = futures::channel::oneshot::channel::<u64>();
                let got = spawn(async move { rx.await.unwrap() });
                // 0 to 15 ms, around PARK_AFTER (10 ms).
                let delay = Duration::from_micros(i * 50);
                std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    tx.send(i).unwrap();
                });
                got
            })
            .collect();
        for (i, got) in got.into_iter().enumerate() {
            assert_eq!(got.output(), i as u64);
        }
    }

    /// Waits until the socket is readable, without reading it.
    fn readable(socket: Arc<TcpStream>) -> impl Future<Output = ()> {
        let waiter: Socket = socket.clone();
        std::future::poll_fn(move |cx| match socket.peek(&mut [0; 1]) {
            Ok(_) => Poll::Ready(()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                reactor::wait(&waiter, PollFlags::POLLIN, cx);
                Poll::Pending
            }
            Err(e) => panic!("{e}"),
        })
    }

    /// A socket that a parked task waits for cannot be watched for a
    /// second one, which then waits on its thread: both are still woken.
    #[test]
    fn a_task_whose_socket_another_parked_task_waits_for_stays_on_its_thread() {
        let (mut client, server) = pair();
        let first = spawn(readable(server.clone()));
        first.until_parked();
        let second = spawn(readable(server));
        std::thread::sleep(PARK_AFTER * 20);
        assert!(first.task.is_parked());
        assert!(!second.task.is_parked(), "the second task parked too");
        client.write_all(b"x").unwrap();
        first.output();
        second.output();
    }

    /// The second task of the test above parks once the first has left.
    #[test]
    fn a_task_whose_socket_another_parked_task_waits_for_parks_once_that_one_left() {
        let (mut client, server) = pair();
        let (leave, left) = futures::channel::oneshot::channel::<()>();
        let readable_or_left = futures::future::select(readable(server.clone()), left);
        let first = spawn(async move {
            readable_or_left.await;
        });
        first.until_parked();
        let second = spawn(readable(server));
        std::thread::sleep(PARK_AFTER * 20);
        assert!(first.task.is_parked());
        assert!(!second.task.is_parked(), "the second task parked too");
        leave.send(()).unwrap();
        first.output();
        second.until_parked();
        client.write_all(b"x").unwrap();
        second.output();
    }

    /// A task unparked for one of its waits (a timer) is still woken for
    /// another (its socket) that a combinator polls only when woken: every
    /// wait of a parked task is woken as it is unparked.
    #[test]
    fn an_unparked_task_is_still_woken_for_its_other_waits() {
        use futures::stream::{FuturesUnordered, StreamExt};
        let (mut client, server) = pair();
        let (timer_fired, fired) = mpsc::channel::<()>();
        let got = spawn(async move {
            let timer = Box::pin(async move {
                sleep_until(Instant::now() + Duration::from_millis(300)).await;
                timer_fired.send(()).unwrap();
                0u8
            }) as Pin<Box<dyn Future<Output = u8> + Send>>;
            let read = Box::pin(read_byte(server));
            let mut all: FuturesUnordered<_> = [timer, read].into_iter().collect();
            let mut got = Vec::new();
            while let Some(b) = all.next().await {
                got.push(b);
            }
            got
        });
        got.until_parked();
        assert!(
            fired.try_recv().is_err(),
            "the timer fired before the first park"
        );
        fired.recv_timeout(BOUND).unwrap();
        // The task parks again, waiting for its socket alone.
        got.until_parked();
        client.write_all(b"x").unwrap();
        assert_eq!(got.output(), vec![0, b'x'], "the socket's wake-up was lost");
    }

    /// A waker that records its wake-up.
    struct Woken(std::sync::atomic::AtomicBool);

    impl Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// A waker that panics when woken.
    struct Panics;

    impl Wake for Panics {
        fn wake(self: Arc<Self>) {
            panic!("a waker panics");
        }
    }

    /// A task unparked by its socket still runs again when one of its
    /// waits' wakers panics, its other waits are still woken, and the
    /// parker goes on serving others.
    #[test]
    fn a_panicking_waker_neither_strands_its_task_nor_its_other_waits_nor_the_parker() {
        let (mut client, server) = pair();
        let waiter: Socket = server.clone();
        let recorder = Arc::new(Woken(std::sync::atomic::AtomicBool::new(false)));
        let woken = recorder.clone();
        let mut registered = false;
        let got = spawn(std::future::poll_fn(move |cx| {
            if registered {
                return Poll::Ready(());
            }
            registered = true;
            // Three waits on the socket: one whose waker panics, one that
            // records its wake-up, and the task's own.
            let panics = Waker::from(Arc::new(Panics));
            reactor::wait(&waiter, PollFlags::POLLIN, &Context::from_waker(&panics));
            let records = Waker::from(recorder.clone());
            reactor::wait(&waiter, PollFlags::POLLIN, &Context::from_waker(&records));
            reactor::wait(&waiter, PollFlags::POLLIN, cx);
            Poll::Pending
        }));
        got.until_parked();
        client.write_all(b"x").unwrap();
        got.output();
        assert!(
            woken.0.load(std::sync::atomic::Ordering::SeqCst),
            "a waker after the one that panicked was not woken"
        );
        // The parker still parks and unparks.
        let (tx, rx) = futures::channel::oneshot::channel::<u8>();
        let next = spawn(async move { rx.await.unwrap() });
        next.until_parked();
        tx.send(3).unwrap();
        assert_eq!(next.output(), 3);
    }

    /// A parking whose second socket cannot be watched leaves its first
    /// one unwatched too: a third task then parks on it.
    #[test]
    fn a_failed_registration_leaves_none_of_its_sockets_watched() {
        let (_a_client, a) = pair();
        let (_b_client, b) = pair();
        let first = spawn(readable(b.clone()));
        first.until_parked();
        // Waits for a, then b: a is added, b fails (the first task's).
        let (a2, b2): (Socket, Socket) = (a.clone(), b);
        let second = spawn(std::future::poll_fn(move |cx| {
            reactor::wait(&a2, PollFlags::POLLIN, cx);
            reactor::wait(&b2, PollFlags::POLLIN, cx);
            Poll::<()>::Pending
        }));
        std::thread::sleep(PARK_AFTER * 20);
        assert!(!second.task.is_parked());
        let third = spawn(readable(a));
        third.until_parked();
    }

    /// A future that records, as it is dropped, the name of the thread
    /// that drops it, and panics then if `panics`.
    struct Records(mpsc::Sender<Option<String>>, bool);

    impl Drop for Records {
        fn drop(&mut self) {
            let _ = self.0.send(std::thread::current().name().map(String::from));
            if self.1 {
                panic!("a future panics as it is dropped");
            }
        }
    }

    impl Future for Records {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            Poll::Pending
        }
    }

    /// Drops a `Records` with `drop_later`: the thread it was dropped on.
    fn dropped_later_on(panics: bool) -> Option<String> {
        let (tx, rx) = mpsc::channel();
        parker().unwrap().drop_later(Box::pin(Records(tx, panics)));
        rx.recv_timeout(BOUND).expect("never dropped")
    }

    /// A future that cannot be run again is dropped on the parker's
    /// thread, not in its waker's caller.
    #[test]
    fn a_future_dropped_later_is_dropped_on_the_parkers_thread() {
        assert_eq!(dropped_later_on(false).as_deref(), Some("graceful-parker"));
    }

    /// A future whose drop panics on the parker's thread is logged, and
    /// the parker goes on: it still drops the next one, and still runs a
    /// parked task again at its timer.
    #[test]
    fn a_future_that_panics_as_the_parker_drops_it_leaves_the_parker_serving() {
        assert_eq!(dropped_later_on(true).as_deref(), Some("graceful-parker"));
        assert_eq!(dropped_later_on(false).as_deref(), Some("graceful-parker"));
        let deadline = Instant::now() + Duration::from_millis(300);
        parked_until(sleeper(deadline), deadline);
    }

    /// A parker that could not be started is tried again once `retry`
    /// passed since, not at every use; one started is kept.
    #[test]
    fn a_parker_that_could_not_start_is_tried_again_later() {
        use std::sync::OnceLock;
        let slot: OnceLock<u32> = OnceLock::new();
        let failed_at = Mutex::new(None);
        let retry = Duration::from_millis(200);
        let tries = Cell::new(0);
        let fail = || {
            tries.set(tries.get() + 1);
            Err(std::io::Error::other("out of descriptors"))
        };
        assert_eq!(epoll_parker::started(&slot, &failed_at, retry, fail), None);
        assert_eq!(epoll_parker::started(&slot, &failed_at, retry, fail), None);
        assert_eq!(tries.get(), 1, "tried again at once");
        std::thread::sleep(retry);
        let ok = || {
            tries.set(tries.get() + 1);
            Ok(7)
        };
        assert_eq!(epoll_parker::started(&slot, &failed_at, retry, ok), Some(7));
        assert_eq!(
            epoll_parker::started(&slot, &failed_at, retry, fail),
            Some(7)
        );
        assert_eq!(tries.get(), 2, "a started one is kept");
    }
}
