//! Whether a connection waits, idle, for its client's next request: told by
//! the protocol layer that reads it (the HTTP/1 layer of the adapters'
//! `http::serve`, or a handler through its stream's `idle`), so that a
//! closing listener's server shuts such a connection down from its
//! registry, a system call on the stopping thread, before it wakes each
//! connection's task.
//!
//! Invariant: the registry closes a connection only from idle, by one
//! compare-and-swap, after a peek found no byte waiting in its socket; a
//! read leaves idle by another before it takes any byte from the socket,
//! and goes back to idle only if it took none. So either the read claims
//! the connection first (the registry then leaves it to its task), or the
//! close comes first (the read then takes nothing and reports the end of
//! the stream): a byte that reached the socket before the registry looked
//! is never lost to the close, and none is handed on from a connection
//! whose write side the registry shut.

use std::io;
use std::task::Poll;

use crate::sync::{AtomicU8, Ordering};

/// Not known to be idle: a request is being served, or nothing was told.
const BUSY: u8 = 0;
/// Waiting for the next request, no read under way: the registry may close
/// it.
const IDLE: u8 = 1;
/// Idle, and a read is under way: the registry leaves it.
const READING: u8 = 2;
/// Closed by the registry as idle.
const CLOSED: u8 = 3;

/// A connection's idleness, shared by its registry entry and what reads the
/// connection (see [`ConnTrack::idle`](super::ConnTrack::idle)). For
/// adapter and protocol authors; a handler only calls
/// [`set_idle`](Self::set_idle).
#[derive(Debug)]
pub struct Idle(AtomicU8);

impl Default for Idle {
    fn default() -> Self {
        Idle(AtomicU8::new(BUSY))
    }
}

impl Idle {
    /// Runs `read`, one read of the connection that returns how many bytes
    /// it took from the socket (0: the end of the stream; a layer that
    /// buffers what it takes, such as TLS, must count what it took, not
    /// what it hands on), as the idle close needs: once the server closed
    /// the connection as idle, not at all (it returns 0, the end of the
    /// stream); otherwise with the connection claimed while it runs, idle
    /// again after it only if it took nothing (also if it panics). Reads
    /// nest: one inside another's claim (a layer over the adapter's
    /// stream) runs as part of it.
    pub fn read(&self, read: impl FnOnce() -> Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        let claimed =
            match self
                .0
                .compare_exchange(IDLE, READING, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => true,
                Err(CLOSED) => return Poll::Ready(Ok(0)),
                Err(_) => false,
            };
        // Only this read moves the connection out of `READING`: to idle
        // if it took nothing, or unwinds.
        let claim = claimed.then(|| Claim(&self.0));
        let result = read();
        if let Some(claim) = claim {
            if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
                claim.0.store(BUSY, Ordering::SeqCst);
            }
        }
        result
    }

    /// Tells that the connection waits for its client's next message, with
    /// nothing it read left to answer (nothing buffered, nothing left to
    /// write): until a read takes bytes, the server may shut it down when
    /// its listener closes. Told by what reads the connection, between its
    /// reads: a read already under way when it is told is not claimed, and
    /// what it takes could be cut off from its answer.
    pub fn set_idle(&self) {
        let _ = self
            .0
            .compare_exchange(BUSY, IDLE, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Whether the connection was told idle and no read took bytes since
    /// (whether a read is under way or not), or the server closed it as
    /// idle.
    pub fn is_told_idle(&self) -> bool {
        self.0.load(Ordering::SeqCst) != BUSY
    }

    /// Whether the server closed the connection as idle.
    pub fn is_closed(&self) -> bool {
        self.0.load(Ordering::SeqCst) == CLOSED
    }

    /// Whether the connection is idle now, with no read under way.
    pub(crate) fn is_idle(&self) -> bool {
        self.0.load(Ordering::SeqCst) == IDLE
    }

    /// Claims the idle connection for closing, as the registry does before
    /// it shuts the socket down: `false` if it is not idle, or a read is
    /// under way.
    pub fn close(&self) -> bool {
        self.0
            .compare_exchange(IDLE, CLOSED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

/// A read's claim: gives the connection back as idle when dropped, unless
/// the read took bytes (then it was marked busy first).
struct Claim<'a>(&'a AtomicU8);

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .compare_exchange(READING, IDLE, Ordering::SeqCst, Ordering::SeqCst);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn took(n: usize) -> impl FnOnce() -> Poll<io::Result<usize>> {
        move || Poll::Ready(Ok(n))
    }

    #[test]
    fn only_an_idle_connection_is_closed_and_its_reads_then_see_the_end() {
        let idle = Idle::default();
        assert!(!idle.close(), "busy until told idle");
        idle.set_idle();
        assert!(idle.is_idle());
        // A read that finds nothing, or the end, leaves it idle.
        assert!(idle.read(|| Poll::Pending).is_pending());
        assert!(matches!(idle.read(took(0)), Poll::Ready(Ok(0))));
        assert!(idle.is_idle());
        // While a read runs, it is not idle.
        let _ = idle.read(|| {
            assert!(!idle.is_idle() && !idle.close(), "closed under a read");
            Poll::Pending
        });
        // A read that took bytes: busy until told idle again.
        assert!(matches!(idle.read(took(5)), Poll::Ready(Ok(5))));
        assert!(!idle.close());
        idle.set_idle();
        assert!(idle.close());
        assert!(idle.is_closed());
        let mut ran = false;
        let read = idle.read(|| {
            ran = true;
            Poll::Ready(Ok(5))
        });
        assert!(
            matches!(read, Poll::Ready(Ok(0))) && !ran,
            "read after the close"
        );
        idle.set_idle();
        assert!(idle.is_closed(), "closed for good");
    }

    #[test]
    fn a_read_that_panics_gives_the_connection_back() {
        let idle = Idle::default();
        idle.set_idle();
        let panicked = std::panic::catch_unwind(|| idle.read(|| panic!("in the read")));
        assert!(panicked.is_err());
        assert!(idle.is_idle(), "left claimed");
        assert!(idle.close());
    }

    #[test]
    fn a_read_inside_another_runs_under_its_claim() {
        let idle = Idle::default();
        idle.set_idle();
        let outer = idle.read(|| {
            let inner = idle.read(took(3));
            assert!(!idle.close(), "closed between the two ends");
            inner
        });
        assert!(matches!(outer, Poll::Ready(Ok(3))));
        assert!(!idle.is_idle(), "idle after bytes were taken");
    }
}
