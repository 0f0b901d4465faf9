//! Whether a connection waits, idle, for its client's next request: told by
//! the protocol layer that reads it (the HTTP layer of the adapters'
//! servers), so that a closing listener's server shuts such a connection
//! down from its registry, a system call on the stopping thread, before it
//! wakes each connection's task (a stop closing thousands of idle
//! keep-alive connections then closes them as fast as the kernel can).
//!
//! Invariant: the registry closes a connection only from idle, by one
//! compare-and-swap, and a read of the connection leaves idle by another
//! before it takes any byte from the socket. So either the read comes first
//! (the registry then leaves the connection to its task), or the close does
//! (the read then takes nothing and sees the end of the stream): a request
//! is never read from a connection whose write side the registry shut.

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
    /// Called before each read of the connection: whether the read may go
    /// ahead. `false` once the server closed the connection as idle (its
    /// socket is shut down both ways): the read must take nothing and
    /// report the end of the stream.
    pub fn begin_read(&self) -> bool {
        match self
            .0
            .compare_exchange(IDLE, BUSY, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => true,
            Err(state) => state != CLOSED,
        }
    }

    /// Called after a read that found nothing to take, when the connection
    /// is between requests (nothing of a request read and not served,
    /// nothing of a response left to write): until its next read, the
    /// server may close it when its listener closes.
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
    /// (a read is under way, or it is busy).
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
        assert!(idle.begin_read());
        idle.set_idle();
        assert!(idle.is_idle());
        // A read begun: not idle any more until told again.
        assert!(idle.begin_read());
        assert!(!idle.close());
        idle.set_idle();
        assert!(idle.close());
        assert!(idle.is_closed() && !idle.begin_read());
        idle.set_idle();
        assert!(idle.is_closed(), "closed for good");
    }
}
