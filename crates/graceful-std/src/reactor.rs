//! Each thread waits for its own work: [`block_on`] parks the thread until
//! the future is woken, or, when the future waits for a non-blocking socket
//! (see [`wait`]), waits in `poll(2)` for that socket and for a wake-up.
//!
//! This is what lets hyper's connection state machine, HTTP/2 included, run
//! on a thread per connection with no reactor thread and no polling
//! timeouts: the thread that polls a connection also waits for its socket.
//!
//! Invariants:
//! - a socket interest is registered by the thread that polls the socket,
//!   into that thread's list, and is only serviced by that thread's
//!   [`block_on`]; every future of this crate is polled by a `block_on` of
//!   this module (`Runtime::spawn` and `Runtime::block_on` use it);
//! - an interest stays registered until its socket is ready (then its
//!   waker is woken and it is removed) or the `block_on` returns: a
//!   combinator that polls only its woken children (a `select`, a
//!   `FuturesUnordered`) must still be woken for a child whose socket
//!   becomes ready later. Registering the same socket and direction again
//!   replaces the waker instead of adding an entry;
//! - a wake-up is never lost: the waker sets `notified` and then writes to
//!   the thread's wake descriptor if it exists; the thread creates the
//!   descriptor, then reads `notified`, then waits on the descriptor (both
//!   sides `SeqCst`), so either the waker sees the descriptor or the
//!   thread sees the flag.

use std::cell::RefCell;
use std::future::Future;
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// A socket a future waits for, as the waiting thread holds it (keeping its
/// descriptor open while it is polled).
pub(crate) type Socket = Arc<dyn AsFd + Send + Sync>;

struct Interest {
    socket: Socket,
    flags: PollFlags,
    waker: Waker,
}

/// A timer a future waits for: its id, deadline and who to wake.
struct Timer {
    id: u64,
    deadline: Instant,
    waker: Waker,
}

thread_local! {
    static INTERESTS: RefCell<Vec<Interest>> = const { RefCell::new(Vec::new()) };
    static TIMERS: RefCell<Vec<Timer>> = const { RefCell::new(Vec::new()) };
    static NOTIFY: Arc<Notify> = Arc::new(Notify {
        thread: std::thread::current(),
        notified: AtomicBool::new(false),
        fd: OnceLock::new(),
    });
}

/// Has the thread running [`block_on`] wait for `socket` to become
/// readable (`PollFlags::POLLIN`) or writable (`POLLOUT`), then wakes
/// `cx`'s waker. Call it after the socket answered `WouldBlock`.
pub(crate) fn wait(socket: &Socket, flags: PollFlags, cx: &Context<'_>) {
    INTERESTS.with(|i| {
        let mut interests = i.borrow_mut();
        let same = |i: &&mut Interest| {
            i.flags == flags && std::ptr::addr_eq(Arc::as_ptr(&i.socket), Arc::as_ptr(socket))
        };
        match interests.iter_mut().find(|i| same(i)) {
            Some(i) => i.waker.clone_from(cx.waker()),
            None => interests.push(Interest {
                socket: socket.clone(),
                flags,
                waker: cx.waker().clone(),
            }),
        }
    });
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
struct Notify {
    thread: Thread,
    notified: AtomicBool,
    /// Created the first time the thread waits for a socket.
    fd: OnceLock<WakeFd>,
}

impl Wake for Notify {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // A future that wakes itself while its thread polls it (a yield):
        // the thread reads the flag before it waits, so the flag is enough.
        if !self.notified.swap(true, SeqCst) && std::thread::current().id() != self.thread.id() {
            if let Some(fd) = self.fd.get() {
                fd.wake();
            }
            self.thread.unpark();
        }
    }
}

/// Runs `future` to completion on this thread.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let notify = NOTIFY.with(Arc::clone);
    let waker = Waker::from(notify.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    // A `block_on` inside a future polled by another keeps the outer one's
    // interests aside.
    let outer = INTERESTS.with(|i| std::mem::take(&mut *i.borrow_mut()));
    let outer_timers = TIMERS.with(|t| std::mem::take(&mut *t.borrow_mut()));
    let out = loop {
        notify.notified.store(false, SeqCst);
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            break out;
        }
        let next_timer = fire_timers();
        let interests = INTERESTS.with(|i| std::mem::take(&mut *i.borrow_mut()));
        let waiting = match interests.is_empty() {
            true => {
                while !notify.notified.load(SeqCst) {
                    match next_timer {
                        None => std::thread::park(),
                        Some(t) if t <= Instant::now() => break,
                        Some(t) => std::thread::park_timeout(t - Instant::now()),
                    }
                }
                interests
            }
            false => wait_for(&notify, interests, next_timer),
        };
        fire_timers();
        INTERESTS.with(|i| {
            let mut i = i.borrow_mut();
            let added = std::mem::replace(&mut *i, waiting);
            i.extend(added);
        });
    };
    INTERESTS.with(|i| *i.borrow_mut() = outer);
    TIMERS.with(|t| *t.borrow_mut() = outer_timers);
    out
}

/// Waits for one of `interests` or a wake-up, wakes the interests that are
/// ready and returns the others.
fn wait_for(notify: &Notify, interests: Vec<Interest>, until: Option<Instant>) -> Vec<Interest> {
    let fd = match notify.fd.get() {
        Some(fd) => Some(fd),
        None => match WakeFd::new() {
            Ok(fd) => Some(notify.fd.get_or_init(|| fd)),
            Err(e) => {
                // Out of descriptors: wait for the sockets with a short
                // timeout instead, re-checking for wake-ups between waits.
                tracing::debug!("no wake descriptor ({e}): waiting with a timeout");
                None
            }
        },
    };
    if notify.notified.load(SeqCst) {
        return interests;
    }
    let mut fds: Vec<PollFd<'_>> = interests
        .iter()
        .map(|i| PollFd::new(i.socket.as_fd(), i.flags))
        .collect();
    if let Some(fd) = fd {
        fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
    }
    let mut timeout = match fd {
        Some(_) => PollTimeout::NONE,
        None => PollTimeout::from(10u8),
    };
    if let Some(until) = until {
        // Rounded up to the next millisecond, so the timer is due on waking.
        let left = until.saturating_duration_since(Instant::now()) + Duration::from_micros(999);
        let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX);
        if timeout == PollTimeout::NONE || ms < timeout {
            timeout = ms;
        }
    }
    let ready: Vec<bool> = match poll(&mut fds, timeout) {
        Ok(_) => fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect(),
        // Interrupted or failed: wake every interest, whose futures retry
        // their I/O and see what is wrong.
        Err(_) => vec![true; fds.len()],
    };
    drop(fds);
    if let (Some(fd), Some(true)) = (fd, ready.last()) {
        fd.drain();
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

/// A descriptor that becomes readable when the thread is woken.
#[cfg(any(target_os = "linux", target_os = "android"))]
struct WakeFd(nix::sys::eventfd::EventFd);

#[cfg(any(target_os = "linux", target_os = "android"))]
impl WakeFd {
    fn new() -> std::io::Result<WakeFd> {
        use nix::sys::eventfd::{EfdFlags, EventFd};
        let flags = EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK;
        Ok(WakeFd(EventFd::from_value_and_flags(0, flags)?))
    }

    fn wake(&self) {
        let _ = self.0.write(1);
    }

    fn drain(&self) {
        let _ = self.0.read();
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A descriptor that becomes readable when the thread is woken.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
struct WakeFd {
    tx: std::os::unix::net::UnixStream,
    rx: std::os::unix::net::UnixStream,
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl WakeFd {
    fn new() -> std::io::Result<WakeFd> {
        let (tx, rx) = std::os::unix::net::UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok(WakeFd { tx, rx })
    }

    fn wake(&self) {
        use std::io::Write;
        let _ = (&self.tx).write(&[1]);
    }

    fn drain(&self) {
        use std::io::Read;
        let _ = (&self.rx).read(&mut [0; 64]);
    }

    fn as_fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    /// Resolves at `deadline`, through the thread's own timers.
    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> {
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
    fn read_byte(socket: Arc<TcpStream>) -> impl Future<Output = u8> {
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
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let server = Arc::new(server);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            client.write_all(b"x").unwrap();
            std::thread::sleep(Duration::from_secs(10));
        });
        let got = bounded(move || {
            let timer = Box::pin(async {
                sleep_until(Instant::now() + Duration::from_millis(20)).await;
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
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let server = Arc::new(server);
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
}
