//! Whether a connection waits, idle, for its client's next request: told by
//! the protocol layer that reads it (the HTTP layer of the adapters'
//! servers, or a handler through its stream), so that a closing listener's
//! server shuts such a connection down from its registry, a system call on
//! the stopping thread, before it wakes each connection's task (a stop
//! closing thousands of idle keep-alive connections then closes them as
//! fast as the kernel can).
//!
//! Invariant: the registry closes a connection only from idle, by one
//! compare-and-swap, and a read that took bytes leaves idle by another
//! before it hands them on. So either the read's claim comes first (the
//! registry then leaves the connection to its task), or the close does (the
//! read then drops what it took, which arrived after the registry looked
//! and found nothing, and reports the end of the stream): a request is
//! never handed on from a connection whose write side the registry shut.

use crate::sync::{AtomicU8, Ordering};

/// Reading, writing, or not known to be idle.
const BUSY: u8 = 0;
/// Between requests, no read under way: the registry may close it.
const IDLE: u8 = 1;
/// Closed by the registry as idle.
const CLOSED: u8 = 2;

/// A connection's idleness, shared by its registry entry and the protocol
/// layer reading it (see [`ConnTrack::idle`](super::ConnTrack::idle)).
/// For adapter and protocol authors.
#[derive(Debug)]
pub struct Idle(AtomicU8);

impl Default for Idle {
    fn default() -> Self {
        Idle(AtomicU8::new(BUSY))
    }
}

impl Idle {
    /// Called with what a read of the connection took, `n` bytes (0: the
    /// end of the stream): how many the reader hands on. `n`, the
    /// connection no longer idle; or 0, the end of the stream, once the
    /// server closed the connection as idle (its socket is shut down both
    /// ways): what a read took as it did so arrived after the server
    /// looked and found nothing, too late to be answered.
    pub fn took(&self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        match self
            .0
            .compare_exchange(IDLE, BUSY, Ordering::SeqCst, Ordering::SeqCst)
        {
            Err(CLOSED) => 0,
            _ => n,
        }
    }

    /// Tells that the connection waits for its client's next message, with
    /// nothing it read left to answer (nothing buffered, nothing left to
    /// write): until a read takes bytes, the server may shut it down when
    /// its listener closes.
    pub fn set_idle(&self) {
        let _ = self
            .0
            .compare_exchange(BUSY, IDLE, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Whether the server closed the connection as idle.
    pub fn is_closed(&self) -> bool {
        self.0.load(Ordering::SeqCst) == CLOSED
    }

    /// Whether the connection is idle now.
    pub(crate) fn is_idle(&self) -> bool {
        self.0.load(Ordering::SeqCst) == IDLE
    }

    /// Claims the idle connection for closing, as the registry does before
    /// it shuts the socket down: `false` if it is not idle
    /// (a read took bytes since it was told idle).
    pub fn close(&self) -> bool {
        self.0
            .compare_exchange(IDLE, CLOSED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn only_an_idle_connection_is_closed_and_its_reads_then_see_the_end() {
        let idle = Idle::default();
        assert!(!idle.close(), "busy until told idle");
        assert_eq!(idle.took(5), 5);
        idle.set_idle();
        assert!(idle.is_idle());
        assert_eq!(idle.took(0), 0);
        assert!(idle.is_idle(), "the end of the stream claimed it");
        // A read took bytes: not idle any more until told again.
        assert_eq!(idle.took(5), 5);
        assert!(!idle.close());
        idle.set_idle();
        assert!(idle.close());
        assert!(idle.is_closed());
        assert_eq!(idle.took(5), 0, "bytes handed on after the close");
        idle.set_idle();
        assert!(idle.is_closed(), "closed for good");
    }
}
