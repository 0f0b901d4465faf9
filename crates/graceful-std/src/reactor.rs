//! Each thread waits for its own work: [`block_on`] parks the thread until
//! the future is woken, or, when the future waits for a non-blocking socket
//! (see [`wait`]), waits in `poll(2)` for that socket and for a wake-up.
//!
//! This is what lets hyper's connection state machine, HTTP/2 included, run
//! on a thread per busy connection with no polling timeouts: the thread
//! that polls a connection also waits for its socket. (A spawned task that
//! waits long takes its waits to the parker, see `park`.)
//!
//! Invariants:
//! - a socket interest is registered by the thread that polls the socket,
//!   into that thread's list, and is only serviced by that thread's
//!   [`wait_once`]; every future of this crate is polled by a [`block_on`]
//!   or a spawned task's run, which wait with it (`Runtime::spawn` and
//!   `Runtime::block_on` use them), and a task that parks takes its lists
//!   along ([`take_waits`]);
//! - an interest stays registered until its socket is ready (then its
//!   waker is woken and it is removed), the `block_on` returns, its task
//!   is unparked (then it is woken), or its stream is dropped on the
//!   thread ([`forget`]): a
//!   combinator that polls only its woken children (a `select`, a
//!   `FuturesUnordered`) must still be woken for a child whose socket
//!   becomes ready later. Registering the same socket, direction and
//!   waker again adds nothing; another waker gets an entry of its own;
//! - a wake-up is never lost: the waker sets `notified` and then sends the
//!   thread's wake-up if the thread armed it; the thread arms it, then
//!   reads `notified`, then waits (both sides `SeqCst`), so either the
//!   waker sees it armed or the thread sees the flag. An armed wake-up
//!   sent before the wait starts ends the wait at once.

use std::cell::RefCell;
use std::future::Future;
use std::os::fd::AsFd;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};

/// A socket a future waits for, as the waiting thread holds it (keeping its
/// descriptor open while it is polled).
pub(crate) type Socket = Arc<dyn AsFd + Send + Sync>;

pub(crate) struct Interest {
    pub(crate) socket: Socket,
    pub(crate) flags: PollFlags,
    pub(crate) waker: Waker,
}

/// A timer a future waits for: its id, deadline and who to wake.
pub(crate) struct Timer {
    id: u64,
    pub(crate) deadline: Instant,
    pub(crate) waker: Waker,
}

thread_local! {
    /// How many `block_on` calls run on this thread (nested ones count).
    static DEPTH: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    static INTERESTS: RefCell<Vec<Interest>> = const { RefCell::new(Vec::new()) };
    static TIMERS: RefCell<Vec<Timer>> = const { RefCell::new(Vec::new()) };
    static NOTIFY: Arc<Notify> = Arc::new(Notify {
        thread: std::thread::current(),
        notified: AtomicBool::new(false),
        wake: ThreadWake::new(),
    });
    /// Tells the thread's [`ThreadWake`] that the thread is exiting.
    static EXIT: Exit = Exit(NOTIFY.with(Arc::clone));
}

struct Exit(Arc<Notify>);

impl Drop for Exit {
    fn drop(&mut self) {
        self.0.wake.exit();
    }
}

/// Has the thread running [`block_on`] wait for `socket` to become
/// readable (`PollFlags::POLLIN`) or writable (`POLLOUT`), then wakes
/// `cx`'s waker. Call it after the socket answered `WouldBlock`.
pub(crate) fn wait(socket: &Socket, flags: PollFlags, cx: &Context<'_>) {
    INTERESTS.with(|i| {
        let mut interests = i.borrow_mut();
        let same = |i: &Interest| {
            i.flags == flags
                && std::ptr::addr_eq(Arc::as_ptr(&i.socket), Arc::as_ptr(socket))
                && i.waker.will_wake(cx.waker())
        };
        if !interests.iter().any(same) {
            interests.push(Interest {
                socket: socket.clone(),
                flags,
                waker: cx.waker().clone(),
            });
        }
    });
    outside_block_on();
}

/// Whether this thread still waits for `socket` to be ready for `flags`:
/// [`wait`] registered it and no `poll(2)` saw it ready since (one that
/// does wakes its waker and drops the interest), while a `poll(2)` follows
/// every wake-up of the thread (one that does not wait, when the thread
/// was woken already). Trying the I/O again then would only fail again: a
/// thread woken for something else (a timer, the stop, a task that yields)
/// need not ask the kernel.
pub(crate) fn still_waiting<S: ?Sized>(socket: &Arc<S>, flags: PollFlags) -> bool {
    INTERESTS.with(|i| {
        i.borrow().iter().any(|i| {
            i.flags == flags && std::ptr::addr_eq(Arc::as_ptr(&i.socket), Arc::as_ptr(socket))
        })
    })
}

/// Runs `op` on `socket`; when it would block, has this thread wait for
/// `flags` and returns `Pending`. While this thread still waits for that,
/// `op` is not tried: a connection woken for something else (a timer, the
/// stop) makes no failed system call.
pub(crate) fn poll_io<T>(
    socket: &Arc<std::net::TcpStream>,
    cx: &Context<'_>,
    flags: PollFlags,
    mut op: impl FnMut(&std::net::TcpStream) -> std::io::Result<T>,
) -> Poll<std::io::Result<T>> {
    let pending = || {
        wait(&(socket.clone() as Socket), flags, cx);
        Poll::Pending
    };
    if still_waiting(socket, flags) {
        return pending();
    }
    loop {
        match op(socket) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return pending(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            done => return Poll::Ready(done),
        }
    }
}

/// Whether this thread runs a [`block_on`] of this crate (or a spawned
/// task), which services the socket waits its futures register, and not
/// code run [`outside`] it.
pub(crate) fn in_block_on() -> bool {
    DEPTH.with(|d| d.get() > 0)
}

/// Runs `f` as if no [`block_on`] of this crate ran on this thread (a
/// blocking handler, which may poll futures with an executor of its own
/// that would never service a wait registered here): the async I/O of
/// this crate's streams blocks in it, as `std::io` does. A `block_on`
/// inside `f` counts again.
pub(crate) fn outside<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = DEPTH.try_with(|d| d.set(self.0));
        }
    }
    let _restore = Restore(DEPTH.with(|d| d.replace(0)));
    f()
}

/// Drops this thread's waits for `socket`, whose stream is gone: a wait
/// that nothing polls any more does not keep its descriptor open (its
/// client would see no end until the task that dropped it ends).
pub(crate) fn forget<S: ?Sized>(socket: &Arc<S>) {
    let _ = INTERESTS.try_with(|i| {
        let Ok(mut interests) = i.try_borrow_mut() else {
            return;
        };
        let (gone, kept): (Vec<Interest>, Vec<Interest>) = std::mem::take(&mut *interests)
            .into_iter()
            .partition(|i| std::ptr::addr_eq(Arc::as_ptr(&i.socket), Arc::as_ptr(socket)));
        *interests = kept;
        drop(interests);
        // Their wakers are dropped after the borrow (a drop may register a
        // wait).
        drop(gone);
    });
}

/// Says once, loudly, that a socket or timer wait was registered on a
/// thread that runs no [`block_on`] of this crate: nothing will service it.
fn outside_block_on() {
    if DEPTH.with(|d| d.get()) == 0 {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            tracing::error!(
                "a graceful-std socket or timer was polled outside graceful-std's runtime; \
                 it will not be woken: run it with graceful_std::Runtime"
            )
        });
    }
}

/// A fresh timer id for [`wait_until`].
pub(crate) fn timer_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, SeqCst)
}

/// Has the thread running [`block_on`] wake `cx`'s waker at `deadline`:
/// the thread's own wait ends then, with no timer thread. Registering
/// timer `id` again replaces its entry; [`cancel_timer`] removes it.
pub(crate) fn wait_until(id: u64, deadline: Instant, cx: &Context<'_>) {
    TIMERS.with(|t| {
        let mut timers = t.borrow_mut();
        match timers.iter_mut().find(|t| t.id == id) {
            Some(t) => {
                t.deadline = deadline;
                t.waker.clone_from(cx.waker());
            }
            None => timers.push(Timer {
                id,
                deadline,
                waker: cx.waker().clone(),
            }),
        }
    });
    outside_block_on();
}

/// Forgets timer `id` on this thread (a timer dropped before its deadline).
/// One registered on another thread wakes its waker once, harmlessly.
pub(crate) fn cancel_timer(id: u64) {
    // `try_with`: a timer dropped while the thread's locals are destroyed.
    let _ = TIMERS.try_with(|t| {
        if let Ok(mut timers) = t.try_borrow_mut() {
            timers.retain(|t| t.id != id);
        }
    });
}

/// Wakes the timers that are due; returns the earliest deadline left.
fn fire_timers() -> Option<Instant> {
    if TIMERS.with(|t| t.borrow().is_empty()) {
        return None;
    }
    let due: Vec<Timer> = TIMERS.with(|t| {
        let now = Instant::now();
        let mut timers = t.borrow_mut();
        let (due, left) = std::mem::take(&mut *timers)
            .into_iter()
            .partition(|t| t.deadline <= now);
        *timers = left;
        due
    });
    for timer in due {
        timer.waker.wake();
    }
    TIMERS.with(|t| t.borrow().iter().map(|t| t.deadline).min())
}

/// The waker of one thread's `block_on`.
pub(crate) struct Notify {
    thread: Thread,
    notified: AtomicBool,
    /// How a wake-up ends the thread's wait for sockets.
    wake: ThreadWake,
}

impl Notify {
    /// Whether the thread was woken since it last cleared the flag.
    pub(crate) fn notified(&self) -> bool {
        self.notified.load(SeqCst)
    }

    /// Clears the flag, before a poll.
    pub(crate) fn clear(&self) {
        self.notified.store(false, SeqCst);
    }
}

impl Wake for Notify {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // A future that wakes itself while its thread polls it (a yield):
        // the thread reads the flag before it waits, so the flag is enough.
        if !self.notified.swap(true, SeqCst) && std::thread::current().id() != self.thread.id() {
            self.wake.wake();
            self.thread.unpark();
        }
    }
}

/// Runs `future` to completion on this thread.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let notify = thread_notify();
    let waker = Waker::from(notify.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    let _lists = Lists::enter();
    loop {
        notify.clear();
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        wait_once(&notify, None);
    }
}

/// This thread's waker.
pub(crate) fn thread_notify() -> Arc<Notify> {
    NOTIFY.with(Arc::clone)
}

/// Waits once for what the futures polled on this thread wait for (a
/// socket, a timer, a wake-up of `notify`, this thread's), or until
/// `until`: wakes the interests and timers that are ready or due, keeps
/// the others.
pub(crate) fn wait_once(notify: &Notify, until: Option<Instant>) {
    let next_timer = fire_timers();
    let until = match (next_timer, until) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let interests = INTERESTS.with(|i| std::mem::take(&mut *i.borrow_mut()));
    let waiting = match interests.is_empty() {
        true => {
            while !notify.notified.load(SeqCst) {
                match until {
                    None => std::thread::park(),
                    Some(t) if t <= Instant::now() => break,
                    Some(t) => std::thread::park_timeout(t - Instant::now()),
                }
            }
            interests
        }
        false => wait_for(notify, interests, until),
    };
    fire_timers();
    INTERESTS.with(|i| {
        let mut i = i.borrow_mut();
        let added = std::mem::replace(&mut *i, waiting);
        i.extend(added);
    });
}

/// Takes what the futures polled on this thread wait for: its socket
/// interests and its timers (a task leaving the thread).
pub(crate) fn take_waits() -> (Vec<Interest>, Vec<Timer>) {
    (
        INTERESTS.with(|i| std::mem::take(&mut *i.borrow_mut())),
        TIMERS.with(|t| std::mem::take(&mut *t.borrow_mut())),
    )
}

/// Gives back what [`take_waits`] took (a task that stays).
pub(crate) fn restore_waits(interests: Vec<Interest>, timers: Vec<Timer>) {
    INTERESTS.with(|i| i.borrow_mut().extend(interests));
    TIMERS.with(|t| t.borrow_mut().extend(timers));
}

/// The interests and timers of one `block_on`. A `block_on` inside a
/// future polled by another keeps the outer one's aside and gives them
/// back when it returns or unwinds (a panicking task on a reused thread
/// leaves nothing behind, so no socket of its stays open). Its wake-ups
/// are the outer one's too (one waker per thread): on return it leaves the
/// thread marked woken, so the outer loop polls again rather than miss
/// one.
pub(crate) struct Lists {
    interests: Vec<Interest>,
    timers: Vec<Timer>,
}

impl Lists {
    /// Sets the outer lists aside, if any, for a `block_on` (or a task's
    /// run) on this thread.
    pub(crate) fn enter() -> Lists {
        DEPTH.with(|d| d.set(d.get() + 1));
        let (interests, timers) = take_waits();
        Lists { interests, timers }
    }
}

impl Drop for Lists {
    fn drop(&mut self) {
        let interests = std::mem::take(&mut self.interests);
        let timers = std::mem::take(&mut self.timers);
        // The inner lists are dropped after the borrow ends: dropping a
        // waker may run code that registers a wait.
        let inner = INTERESTS.try_with(|i| std::mem::replace(&mut *i.borrow_mut(), interests));
        let inner_timers = TIMERS.try_with(|t| std::mem::replace(&mut *t.borrow_mut(), timers));
        drop((inner, inner_timers));
        let _ = DEPTH.try_with(|d| d.set(d.get() - 1));
        let _ = NOTIFY.try_with(|n| n.notified.store(true, SeqCst));
    }
}

/// Waits for one of `interests` or a wake-up, wakes the interests that are
/// ready and returns the others.
fn wait_for(notify: &Notify, interests: Vec<Interest>, until: Option<Instant>) -> Vec<Interest> {
    // Registers the thread's exit with its wake-up before it can be sent.
    EXIT.with(|_| ());
    let armed = match notify.wake.arm() {
        Ok(()) => true,
        Err(e) => {
            // Cannot be woken in the wait (no signal handler, or no socket
            // pair): wait for the sockets with a short timeout, re-checking
            // between waits.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                tracing::warn!("no wake-up for socket waits ({e}): re-checking every 10 ms")
            });
            false
        }
    };
    // Already woken: look at the sockets without waiting, so that an
    // interest still listed always means a poll after the last wake-up saw
    // its socket not ready (see `still_waiting`), however often the thread
    // is woken.
    let woken = notify.notified.load(SeqCst);
    let mut fds: Vec<PollFd<'_>> = interests
        .iter()
        .map(|i| PollFd::new(i.socket.as_fd(), i.flags))
        .collect();
    let extra = notify.wake.fd();
    if let Some(fd) = extra {
        fds.push(PollFd::new(fd, PollFlags::POLLIN));
    }
    let mut timeout = (!armed).then_some(Duration::from_millis(10));
    if let Some(until) = until {
        // Rounded up to the next millisecond, so the timer is due on waking.
        let left = until.saturating_duration_since(Instant::now()) + Duration::from_micros(999);
        timeout = Some(timeout.map_or(left, |t| t.min(left)));
    }
    if woken {
        timeout = Some(Duration::ZERO);
    }
    let mut polled = notify.wake.poll(&mut fds, timeout);
    if polled == Err(nix::errno::Errno::EINTR) {
        // Woken by a signal, which the kernel reports only when no socket
        // was ready as it looked; a signal left pending by an earlier look
        // may end a wait at once, though. Look once more without waiting
        // (the signal is taken by now), so that an interest kept was seen
        // not ready after the wake-up.
        polled = notify.wake.poll(&mut fds, Some(Duration::ZERO));
    }
    let ready: Vec<bool> = match polled {
        Ok(_) => fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect(),
        // Another signal again: no socket is known to be ready; the next
        // wait looks again.
        Err(nix::errno::Errno::EINTR) => vec![false; fds.len()],
        // Failed: wake every interest, whose futures retry their I/O and
        // see what is wrong.
        Err(_) => vec![true; fds.len()],
    };
    drop(fds);
    if extra.is_some() && ready.last() == Some(&true) {
        notify.wake.drain();
    }
    let mut waiting = Vec::with_capacity(interests.len());
    for (interest, ready) in interests.into_iter().zip(ready) {
        match ready {
            true => interest.waker.wake(),
            false => waiting.push(interest),
        }
    }
    waiting
}

#[cfg(any(target_os = "linux", target_os = "android"))]
use signal_wake::ThreadWake;

/// On Linux a thread waiting for sockets is woken by a signal sent to it
/// alone (`pthread_kill`), which ends its `ppoll`: no descriptor per
/// thread, so an HTTP connection costs one descriptor, its socket.
///
/// Invariants: the signal (SIGURG, ignored by default and otherwise unused
/// here) is blocked on the thread from its first socket wait on, and
/// unblocked only inside `ppoll`, so a signal sent before the wait starts
/// stays pending and ends the wait at once; a signal is sent only to a
/// thread that armed (blocked it, with the handler installed) and has not
/// exited: `alive` is cleared, under its lock, by the thread's exit before
/// its id can be reused.
#[cfg(any(target_os = "linux", target_os = "android"))]
mod signal_wake {
    use std::os::fd::BorrowedFd;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::Duration;

    use nix::poll::PollFd;
    use nix::sys::pthread::{pthread_kill, pthread_self, Pthread};
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    use nix::sys::time::TimeSpec;

    const SIGNAL: Signal = Signal::SIGURG;

    pub(super) struct ThreadWake {
        pthread: Pthread,
        /// Set once the thread blocked the signal, never cleared.
        armed: AtomicBool,
        /// The mask to wait with: the thread's own, the signal unblocked.
        waiting_mask: OnceLock<SigSet>,
        /// Cleared when the thread exits.
        alive: Mutex<bool>,
    }

    impl ThreadWake {
        /// Made on the thread it wakes.
        pub(super) fn new() -> ThreadWake {
            ThreadWake {
                pthread: pthread_self(),
                armed: AtomicBool::new(false),
                waiting_mask: OnceLock::new(),
                alive: Mutex::new(true),
            }
        }

        /// Installs the handler (once per process) and blocks the signal on
        /// this thread (once per thread).
        pub(super) fn arm(&self) -> std::io::Result<()> {
            if self.armed.load(SeqCst) {
                return Ok(());
            }
            static HANDLER: OnceLock<Result<(), String>> = OnceLock::new();
            HANDLER
                .get_or_init(|| {
                    // The handler only sets a flag nobody reads: its job is
                    // to interrupt `ppoll`.
                    signal_hook::flag::register(SIGNAL as i32, Arc::new(AtomicBool::new(false)))
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
                .clone()
                .map_err(std::io::Error::other)?;
            let mut block = SigSet::empty();
            block.add(SIGNAL);
            let mut old = SigSet::empty();
            nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&block), Some(&mut old))?;
            old.remove(SIGNAL);
            let _ = self.waiting_mask.set(old);
            self.armed.store(true, SeqCst);
            Ok(())
        }

        /// Ends the thread's wait, or its next one.
        pub(super) fn wake(&self) {
            if self.armed.load(SeqCst) {
                let alive = self.alive.lock().unwrap_or_else(|p| p.into_inner());
                if *alive {
                    let _ = pthread_kill(self.pthread, SIGNAL);
                }
            }
        }

        /// Called by the thread as it exits.
        pub(super) fn exit(&self) {
            *self.alive.lock().unwrap_or_else(|p| p.into_inner()) = false;
        }

        pub(super) fn fd(&self) -> Option<BorrowedFd<'_>> {
            None
        }

        pub(super) fn drain(&self) {}

        /// Waits for `fds`, at most `timeout`, or until woken (`EINTR`).
        pub(super) fn poll(
            &self,
            fds: &mut [PollFd<'_>],
            timeout: Option<Duration>,
        ) -> nix::Result<i32> {
            let timeout = timeout.map(TimeSpec::from_duration);
            nix::poll::ppoll(fds, timeout, self.waiting_mask.get().copied())
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
use pipe_wake::ThreadWake;

/// Elsewhere a thread waiting for sockets also waits for its own socket
/// pair, made at its first socket wait, which a wake-up writes to. (Built
/// everywhere, so that it is compiled and tested on Linux too.)
#[cfg_attr(any(target_os = "linux", target_os = "android"), allow(dead_code))]
mod pipe_wake {
    use std::io::{Read, Write};
    use std::os::fd::{AsFd, BorrowedFd};
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::OnceLock;
    use std::time::Duration;

    use nix::poll::{PollFd, PollTimeout};

    pub(super) struct ThreadWake {
        pair: OnceLock<(UnixStream, UnixStream)>,
        /// Set (`SeqCst`) once the pair exists, so that a waker's check and
        /// the thread's check of its `notified` flag cannot both miss.
        armed: AtomicBool,
    }

    impl ThreadWake {
        pub(super) fn new() -> ThreadWake {
            ThreadWake {
                pair: OnceLock::new(),
                armed: AtomicBool::new(false),
            }
        }

        pub(super) fn arm(&self) -> std::io::Result<()> {
            if self.pair.get().is_none() {
                let (tx, rx) = UnixStream::pair()?;
                tx.set_nonblocking(true)?;
                rx.set_nonblocking(true)?;
                let _ = self.pair.set((tx, rx));
            }
            self.armed.store(true, SeqCst);
            Ok(())
        }

        pub(super) fn wake(&self) {
            if self.armed.load(SeqCst) {
                if let Some((tx, _)) = self.pair.get() {
                    let _ = (&*tx).write(&[1]);
                }
            }
        }

        pub(super) fn exit(&self) {}

        pub(super) fn fd(&self) -> Option<BorrowedFd<'_>> {
            self.pair.get().map(|(_, rx)| rx.as_fd())
        }

        pub(super) fn drain(&self) {
            if let Some((_, rx)) = self.pair.get() {
                let _ = (&*rx).read(&mut [0; 64]);
            }
        }

        pub(super) fn poll(
            &self,
            fds: &mut [PollFd<'_>],
            timeout: Option<Duration>,
        ) -> nix::Result<i32> {
            let timeout = match timeout {
                None => PollTimeout::NONE,
                Some(t) => PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX),
            };
            nix::poll::poll(fds, timeout)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use nix::poll::PollFlags;

        #[test]
        fn a_wake_makes_the_pair_readable_until_drained() {
            let wake = ThreadWake::new();
            wake.wake(); // not armed: nothing to write to, nothing breaks
            wake.arm().unwrap();
            let ready = |wake: &ThreadWake| {
                let mut fds = [PollFd::new(wake.fd().unwrap(), PollFlags::POLLIN)];
                wake.poll(&mut fds, Some(Duration::ZERO)).unwrap() == 1
            };
            assert!(!ready(&wake));
            wake.wake();
            assert!(ready(&wake));
            wake.drain();
            assert!(!ready(&wake));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    /// Resolves at `deadline`, through the thread's own timers.
    pub(crate) fn sleep_until(deadline: Instant) -> impl Future<Output = ()> {
        let id = timer_id();
        std::future::poll_fn(move |cx| {
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            wait_until(id, deadline, cx);
            Poll::Pending
        })
    }

    /// Reads one byte from a non-blocking socket through the reactor.
    pub(crate) fn read_byte(socket: Arc<TcpStream>) -> impl Future<Output = u8> {
        let waiter: Socket = socket.clone();
        std::future::poll_fn(move |cx| {
            let mut b = [0u8; 1];
            match (&*socket).read(&mut b) {
                Ok(_) => Poll::Ready(b[0]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    wait(&waiter, PollFlags::POLLIN, cx);
                    Poll::Pending
                }
                Err(e) => panic!("{e}"),
            }
        })
    }

    /// Runs `f` on a thread of its own, failing if it takes over 10 s.
    fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(f()).unwrap());
        rx.recv_timeout(Duration::from_secs(10))
            .expect("block_on hung")
    }

    /// A connected client, and the server's side, non-blocking.
    pub(crate) fn pair() -> (TcpStream, Arc<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (client, Arc::new(server))
    }

    /// The server's side of a connection whose client sends `bytes` after
    /// `delay`, then stays open.
    fn sent_after(delay: Duration, bytes: &'static [u8]) -> Arc<TcpStream> {
        let (mut client, server) = pair();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            client.write_all(bytes).unwrap();
            std::thread::sleep(Duration::from_secs(10));
        });
        server
    }

    #[test]
    fn a_timer_ends_the_wait_at_its_deadline() {
        let took = bounded(|| {
            let start = Instant::now();
            block_on(sleep_until(start + Duration::from_millis(30)));
            start.elapsed()
        });
        assert!(took >= Duration::from_millis(30), "{took:?}");
    }

    /// A child of a combinator that polls only its woken children is still
    /// woken when its socket becomes ready after another child's wake-up:
    /// the interest is kept across waits.
    #[test]
    fn a_socket_interest_survives_another_wake_up() {
        use futures::stream::{FuturesUnordered, StreamExt};
        let (mut client, server) = pair();
        let got = bounded(move || {
            // The client writes only once the timer has fired: the read's
            // interest must outlive the wake-up the timer caused.
            let (go, went) = std::sync::mpsc::channel::<()>();
            std::thread::spawn(move || {
                went.recv().unwrap();
                std::thread::sleep(Duration::from_millis(30));
                client.write_all(b"x").unwrap();
                std::thread::sleep(Duration::from_secs(10));
            });
            let timer = Box::pin(async move {
                sleep_until(Instant::now() + Duration::from_millis(20)).await;
                go.send(()).unwrap();
                0u8
            }) as std::pin::Pin<Box<dyn Future<Output = u8> + Send>>;
            let read = Box::pin(read_byte(server));
            let mut all: FuturesUnordered<_> = [timer, read].into_iter().collect();
            block_on(async move {
                let mut got = Vec::new();
                while let Some(b) = all.next().await {
                    got.push(b);
                }
                got
            })
        });
        assert_eq!(got, vec![0, b'x']);
    }

    /// A wake-up from another thread ends a wait for a socket.
    #[test]
    fn a_wake_from_another_thread_ends_a_wait_for_a_socket() {
        let (_client, server) = pair();
        let woken = bounded(move || {
            let (tx, rx) = futures::channel::oneshot::channel::<()>();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                tx.send(()).unwrap();
            });
            block_on(async move {
                let read = std::pin::pin!(read_byte(server));
                matches!(
                    futures::future::select(read, rx).await,
                    futures::future::Either::Right(_)
                )
            })
        });
        assert!(woken, "the socket was never readable; the channel must win");
    }

    /// A wake-up that lands while a nested `block_on` runs is not lost to
    /// the outer one.
    #[test]
    fn a_wake_during_a_nested_block_on_reaches_the_outer_one() {
        let done = bounded(|| {
            let (tx, rx) = futures::channel::oneshot::channel::<()>();
            let mut tx = Some(tx);
            block_on(async move {
                let mut rx = rx;
                std::future::poll_fn(|cx| {
                    if let Poll::Ready(r) = std::pin::Pin::new(&mut rx).poll(cx) {
                        return Poll::Ready(r.is_ok());
                    }
                    if let Some(tx) = tx.take() {
                        // The send, from another thread, lands while a
                        // nested block_on waits, after its first poll; the
                        // nested one then polls again and returns.
                        let (done_tx, mut done_rx) = futures::channel::oneshot::channel::<()>();
                        let (go, went) = std::sync::mpsc::channel::<()>();
                        std::thread::spawn(move || {
                            went.recv().unwrap();
                            tx.send(()).unwrap();
                            done_tx.send(()).unwrap();
                        });
                        let mut go = Some(go);
                        block_on(std::future::poll_fn(|cx| {
                            let done = std::pin::Pin::new(&mut done_rx).poll(cx);
                            if let Some(go) = go.take() {
                                go.send(()).unwrap();
                            }
                            done.map(drop)
                        }));
                    }
                    Poll::Pending
                })
                .await
            })
        });
        assert!(done);
    }

    /// A task that panics while it waits for a socket leaves nothing on its
    /// thread: the next `block_on` there does not keep its socket open.
    #[test]
    fn a_panicking_task_leaves_no_interest_behind() {
        let (mut client, server) = pair();
        let weak = Arc::downgrade(&server);
        let left = bounded(move || {
            let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                block_on(async move {
                    let mut read = std::pin::pin!(read_byte(server));
                    std::future::poll_fn(|cx| -> Poll<()> {
                        assert!(read.as_mut().poll(cx).is_pending());
                        panic!("the handler panics while its read waits");
                    })
                    .await
                })
            }));
            assert!(panicked.is_err());
            INTERESTS.with(|i| i.borrow().len())
        });
        assert_eq!(left, 0, "the panicked task's interest stayed");
        assert!(weak.upgrade().is_none(), "its socket is still open");
        let mut b = [0u8; 1];
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(client.read(&mut b).unwrap(), 0, "the client sees the close");
    }

    /// Two futures waiting for the same socket with different wakers are
    /// both woken.
    #[test]
    fn two_waiters_on_one_socket_are_both_woken() {
        use futures::stream::{FuturesUnordered, StreamExt};
        let server = sent_after(Duration::from_millis(50), b"ab");
        let got = bounded(move || {
            let mut all: FuturesUnordered<_> = [read_byte(server.clone()), read_byte(server)]
                .into_iter()
                .collect();
            block_on(async move {
                let mut got = Vec::new();
                while let Some(b) = all.next().await {
                    got.push(b);
                }
                got.sort();
                got
            })
        });
        assert_eq!(got, b"ab".to_vec());
    }

    /// Waiting again for the same socket, direction and waker adds no
    /// entry (a future polled often grows no list); another direction, or
    /// another waker, gets one of its own.
    #[test]
    fn the_same_wait_registered_again_adds_nothing() {
        use crate::runtime::Noop;
        let (_client, server) = pair();
        let server: Socket = server;
        let (one, two) = (Waker::from(Arc::new(Noop)), Waker::from(Arc::new(Noop)));
        let count = || INTERESTS.with(|i| i.borrow().len());
        for _ in 0..3 {
            wait(&server, PollFlags::POLLIN, &Context::from_waker(&one));
        }
        assert_eq!(count(), 1);
        wait(&server, PollFlags::POLLOUT, &Context::from_waker(&one));
        wait(&server, PollFlags::POLLIN, &Context::from_waker(&two));
        assert_eq!(count(), 3);
        INTERESTS.with(|i| i.borrow_mut().clear());
    }

    /// A read that would block is not tried again while the thread still
    /// waits for the socket, however often the future is polled; once the
    /// wait sees it readable, it is read.
    #[test]
    fn a_read_that_would_block_is_tried_again_only_once_the_socket_is_ready() {
        let (mut client, server) = pair();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let reads = std::sync::atomic::AtomicUsize::new(0);
            let mut polls = 0;
            let got = block_on(std::future::poll_fn(|cx| {
                polls += 1;
                let mut buf = [0u8; 8];
                let read = poll_io(&server, cx, PollFlags::POLLIN, |mut s| {
                    reads.fetch_add(1, SeqCst);
                    s.read(&mut buf)
                });
                match read {
                    Poll::Ready(n) => Poll::Ready(n.unwrap()),
                    // Woken for something else, five times over; then
                    // the data comes.
                    Poll::Pending if polls <= 5 => {
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    Poll::Pending => {
                        if polls == 6 {
                            client.write_all(b"hi").unwrap();
                        }
                        Poll::Pending
                    }
                }
            }));
            tx.send((got, reads.load(SeqCst), polls)).unwrap();
        });
        let (got, reads, polls) = rx.recv_timeout(Duration::from_secs(10)).expect("hung");
        assert_eq!(got, 2);
        assert_eq!(polls, 7);
        assert_eq!(
            reads, 2,
            "the read that would block, then the one that read"
        );
    }

    /// A thread woken over and over (a task that yields at every poll)
    /// still reads what comes: each wake-up is followed by a look at the
    /// sockets, which sees the data.
    #[test]
    fn a_thread_woken_at_every_poll_still_reads_what_comes() {
        let (mut client, server) = pair();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut polls = 0;
            let got = block_on(std::future::poll_fn(|cx| {
                polls += 1;
                if polls == 3 {
                    client.write_all(b"hi").unwrap();
                }
                let mut buf = [0u8; 8];
                match poll_io(&server, cx, PollFlags::POLLIN, |mut s| s.read(&mut buf)) {
                    Poll::Ready(n) => Poll::Ready(n.unwrap()),
                    Poll::Pending => {
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                }
            }));
            tx.send(got).unwrap();
        });
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the data was never read");
        assert_eq!(got, 2);
    }
}
