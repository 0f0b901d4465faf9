//! A std listener driven by the core's accept loop, with no reactor.
//!
//! The loop is async, so it needs to learn when the listener has a
//! connection. A thread of the listener's own waits for that in `poll(2)`,
//! on the listener and on a socket pair used to stop it, and wakes the
//! loop. Invariants: the thread waits in `poll` only while the loop is
//! parked on an accept that found nothing (a waker is registered); the
//! thread is stopped and joined before the listener closes, so it never
//! polls a descriptor number that was closed and reused.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

use graceful_core::server::Accept;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// A listening socket for [`graceful_core::server::serve`]; accepted
/// sockets are blocking, for handlers that block (the async I/O of a
/// [`Stream`](crate::Stream) does not wait in its calls).
pub(crate) struct Listener {
    inner: Arc<TcpListener>,
    waiter: Arc<Waiter>,
    stop_tx: UnixStream,
    thread: Option<JoinHandle<()>>,
}

/// What the listener's thread waits for: a waker to wake (the loop is
/// waiting for a connection), or the stop.
#[derive(Default)]
struct Waiter {
    state: Mutex<State>,
    armed: Condvar,
}

#[derive(Default)]
struct State {
    waker: Option<Waker>,
    stop: bool,
}

impl Waiter {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Listener {
    /// Takes `listener`, setting it non-blocking (the flag is shared with
    /// every process the listener is handed to; all of them poll), and
    /// starts the timer thread if no timer did yet (see
    /// [`start_timer_thread`](crate::runtime::start_timer_thread)).
    pub(crate) fn new(listener: TcpListener) -> io::Result<Listener> {
        crate::runtime::start_timer_thread()?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let inner = Arc::new(listener);
        let (stop_tx, stop_rx) = UnixStream::pair()?;
        stop_tx.set_nonblocking(true)?;
        stop_rx.set_nonblocking(true)?;
        let waiter = Arc::new(Waiter::default());
        let thread = std::thread::Builder::new()
            .name(format!("accept {local}"))
            .spawn({
                let (inner, waiter) = (inner.clone(), waiter.clone());
                move || wait_for_connections(&inner, &waiter, stop_rx)
            })?;
        Ok(Listener {
            inner,
            waiter,
            stop_tx,
            thread: Some(thread),
        })
    }

    /// Stops the listener's thread and waits for it to end, once.
    fn stop_thread(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.waiter.state().stop = true;
        self.waiter.armed.notify_one();
        // One byte is enough; a full pair means the thread is woken anyway.
        let _ = (&self.stop_tx).write(&[1]);
        let _ = thread.join();
    }

    fn accept(&self) -> io::Result<Option<(Arc<TcpStream>, SocketAddr)>> {
        match self.inner.accept() {
            Ok((stream, peer)) => {
                stream.set_nonblocking(false)?;
                Ok(Some((Arc::new(stream), peer)))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The listener's thread: waits until the loop waits for a connection, then
/// until the listener has one (or an error to report), and wakes the loop.
fn wait_for_connections(listener: &TcpListener, waiter: &Waiter, mut stop_rx: UnixStream) {
    loop {
        {
            let mut st = waiter.state();
            while st.waker.is_none() && !st.stop {
                st = waiter.armed.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.stop {
                return;
            }
        }
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop_rx.as_fd(), PollFlags::POLLIN),
        ];
        let ready = match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => fds.map(|fd| fd.revents().is_some_and(|r| !r.is_empty())),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                // Cannot wait: let the loop's accept report what is wrong
                // (it backs off), rather than spinning here.
                tracing::error!("accept thread: poll failed: {e}");
                [true, false]
            }
        };
        if ready[1] {
            let _ = stop_rx.read(&mut [0; 16]);
            continue;
        }
        if ready[0] {
            let waker = waiter.state().waker.take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl Accept for Listener {
    type Socket = TcpStream;

    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Arc<TcpStream>, SocketAddr)>> {
        match self.accept() {
            Ok(Some(conn)) => Poll::Ready(Ok(conn)),
            Ok(None) => {
                debug_assert!(self.thread.is_some(), "poll_accept after accept_queued");
                // Level-triggered: a connection queued since the accept
                // makes the thread's poll return at once, so none is missed.
                self.waiter.state().waker = Some(cx.waker().clone());
                self.waiter.armed.notify_one();
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Called only at the close, to take the backlog: the listener's
    /// thread is stopped and joined first, so the listener closes right
    /// after the last look at its backlog, not after a thread's wake-up
    /// and join, during which a connection the kernel completed would be
    /// reset by the close.
    fn accept_queued(&mut self) -> io::Result<Option<(Arc<TcpStream>, SocketAddr)>> {
        self.stop_thread();
        self.accept()
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

impl Drop for Listener {
    /// Stops and joins the thread (unless the close's look at the backlog
    /// did), so the descriptor closes (when `inner` drops after this) with
    /// nothing polling it.
    fn drop(&mut self) {
        self.stop_thread();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The close's look at the backlog stops the listener's thread first:
    /// the close that follows it waits for no thread.
    #[test]
    fn the_backlog_look_at_the_close_stops_the_thread_first() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut listener = Listener::new(listener).unwrap();
        let _queued = TcpStream::connect(addr).unwrap();
        assert!(listener.thread.is_some());
        // The kernel may queue the connection a moment after the client's
        // connect returned.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let taken = loop {
            match listener.accept_queued().unwrap() {
                Some(taken) => break Some(taken),
                None if std::time::Instant::now() > until => break None,
                None => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        };
        assert!(taken.is_some(), "the queued connection is taken");
        assert!(listener.thread.is_none(), "the thread still runs");
        assert!(listener.accept_queued().unwrap().is_none());
    }
}
