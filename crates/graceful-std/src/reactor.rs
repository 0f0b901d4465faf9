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

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// A socket a future waits for, as the waiting thread holds it (keeping its
/// descriptor open while it is polled).
pub(crate) type Socket = Arc<dyn AsFd + Send + Sync>;

struct Interest {
    socket: Socket,
    flags: PollFlags,
    waker: Waker,
}

thread_local! {
    static INTERESTS: RefCell<Vec<Interest>> = const { RefCell::new(Vec::new()) };
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
        if !self.notified.swap(true, SeqCst) {
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
    let out = loop {
        notify.notified.store(false, SeqCst);
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            break out;
        }
        let interests = INTERESTS.with(|i| std::mem::take(&mut *i.borrow_mut()));
        let waiting = match interests.is_empty() {
            true => {
                while !notify.notified.load(SeqCst) {
                    std::thread::park();
                }
                interests
            }
            false => wait_for(&notify, interests),
        };
        INTERESTS.with(|i| {
            let mut i = i.borrow_mut();
            let added = std::mem::replace(&mut *i, waiting);
            i.extend(added);
        });
    };
    INTERESTS.with(|i| *i.borrow_mut() = outer);
    out
}

/// Waits for one of `interests` or a wake-up, wakes the interests that are
/// ready and returns the others.
fn wait_for(notify: &Notify, interests: Vec<Interest>) -> Vec<Interest> {
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
    let timeout = match fd {
        Some(_) => PollTimeout::NONE,
        None => PollTimeout::from(10u8),
    };
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
    if let Some(fd) = fd {
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
