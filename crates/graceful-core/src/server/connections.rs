//! The live connections of one server.
//!
//! Invariants:
//! 1. Each entry holds a reference to its connection's own socket (a clone
//!    of the adapter's reference-counted stream: the same descriptor, never
//!    a duplicate), so a connection costs one descriptor. The descriptor
//!    closes only once both the connection and its entry let go of it, so
//!    `shutdown(2)` through an entry can never reach a different socket
//!    that reused a closed descriptor number. The entry is removed when the
//!    connection's [`ConnTrack`] drops, which the adapters tie to the
//!    connection's stream.
//! 2. A connection is *late* if its server was triggered when it was
//!    registered (accepted during the pre-drain delay, or from the backlog
//!    at close): it may not have sent its first request yet. The server
//!    ends the reads of the others when its listener closes, after its last
//!    registration, and those of the late ones after the first-request
//!    grace, so one accepted just after the trigger never loses the request
//!    it is about to send.
//! 3. An entry is shut down as idle only from its [`Idle`] state (see
//!    there), and not late: what reads it said it waits for a next
//!    request, no read is under way (a read claims it while it runs), and
//!    the peek finds nothing sent.

use std::fmt;
use std::io;
use std::net::{Shutdown as How, SocketAddr};
#[cfg(unix)]
use std::os::fd::AsFd;
use std::sync::Arc;

use crate::sync::{lock, Mutex};

use event_listener::Event;

use crate::guard::NamedGuard;
use crate::shutdown::Shutdown;
use crate::slab::Slab;

use super::Idle;

/// The registry of a server's live connections, for ending them from
/// outside their handlers: their reads at the trigger (TCP), both
/// directions at the force. Shared by every adapter's server.
pub(crate) struct Connections {
    live: Mutex<Slab<Entry>>,
    ended: Event,
}

impl Connections {
    /// An empty registry.
    pub(crate) fn new() -> Arc<Connections> {
        Arc::new(Connections {
            live: Mutex::new(Slab::default()),
            ended: Event::new(),
        })
    }

    /// Cuts every connection when `server` is forced. (Reads are ended by
    /// the server when its listener closes: see
    /// [`ServerScope::listener_closed`](super::ServerScope::listener_closed).)
    pub(crate) fn attach(self: &Arc<Self>, server: &Shutdown) {
        let conns = self.clone();
        server.on_cut(move |_| conns.shutdown_all());
    }

    /// How many connections are live.
    pub(crate) fn len(&self) -> usize {
        lock(&self.live).len()
    }

    /// Shuts down the read half of every live connection that is not late:
    /// a read that would wait returns end-of-stream, data already received
    /// is still read.
    pub(crate) fn shutdown_reads(&self) {
        self.shutdown_where(How::Read, |e| !e.late);
    }

    /// Shuts down the read half of every live late connection, once their
    /// first-request grace is over.
    pub(crate) fn shutdown_late_reads(&self) {
        self.shutdown_where(How::Read, |e| e.late);
    }

    /// Shuts down both halves of every live connection, not late, that its
    /// protocol layer told [`Idle`], with no read under way, and whose
    /// client sent nothing since (bytes waiting unread, a request the task
    /// was not told of yet, are its task's to serve): its client sees the
    /// end at once, before the connection's task is woken to close it.
    /// From [`SPLIT_AT`] connections on, half of them are shut down on a
    /// thread started for it. Returns how many.
    pub(crate) fn close_idle(&self) -> usize {
        let mut idle: Vec<(Socket, Arc<Idle>)> = self.snapshot(|e| {
            (!e.late && e.idle.is_idle()).then(|| (e.socket.clone(), e.idle.clone()))
        });
        if idle.len() < SPLIT_AT {
            return close_each(idle);
        }
        // Each shutdown wakes whatever waits on its socket (on a thread per
        // connection, that thread): the second core sends FINs too. The
        // other half is taken by that thread, or here if it cannot start.
        let other_half = std::sync::Mutex::new(Some(idle.split_off(idle.len() / 2)));
        let take = || {
            let mut half = other_half.lock().unwrap_or_else(|p| p.into_inner());
            half.take().unwrap_or_default()
        };
        std::thread::scope(|scope| {
            let other = std::thread::Builder::new()
                .name("graceful-close".into())
                .spawn_scoped(scope, || close_each(take()));
            let here = close_each(idle);
            here + match other {
                Ok(other) => other.join().unwrap_or(0),
                Err(_) => close_each(take()),
            }
        })
    }

    /// Shuts down both halves of every live connection: pending reads and
    /// writes fail, and the peer sees the connection end.
    pub(crate) fn shutdown_all(&self) {
        self.shutdown_where(How::Both, |_| true);
    }

    /// Shuts down the sockets of the entries `which` picks. The sockets are
    /// taken under the lock and shut down after it: a connection that ends
    /// (and removes its entry) meanwhile is not held up by thousands of
    /// system calls, and the reference taken keeps its descriptor open, so
    /// the call still reaches the right socket. Each reference is dropped
    /// right after its call: a connection that has ended meanwhile closes
    /// then (its peer sees the end), not after the last of thousands.
    fn shutdown_where(&self, how: How, which: impl Fn(&Entry) -> bool) {
        let sockets = self.snapshot(|e| which(e).then(|| e.socket.clone()));
        for socket in sockets {
            shutdown(&socket, how);
        }
    }

    /// What `pick` takes of each live entry, under the lock (the sockets
    /// are then shut down after it, as [`Connections::shutdown_where`]
    /// says).
    fn snapshot<T>(&self, pick: impl Fn(&Entry) -> Option<T>) -> Vec<T> {
        lock(&self.live).iter().filter_map(pick).collect()
    }

    /// Registers a connection of `server`: takes its named guard ("conn
    /// PEER") and keeps `socket`, the connection's own socket shared with
    /// it (not a duplicate descriptor), to shut it down from outside.
    pub(crate) fn register<S: SharedSocket>(
        self: &Arc<Self>,
        server: &Shutdown,
        socket: Arc<S>,
        peer: SocketAddr,
        kind: &str,
    ) -> ConnTrack {
        self.insert(server, socket, peer, kind)
    }

    fn insert(
        self: &Arc<Self>,
        server: &Shutdown,
        socket: Socket,
        peer: SocketAddr,
        kind: &str,
    ) -> ConnTrack {
        let guard = server.guard_named(format!("{kind} {peer}"));
        let idle = Arc::new(Idle::default());
        let slot = {
            let mut live = lock(&self.live);
            let late = server.is_triggered();
            let idle = idle.clone();
            live.insert(Entry { socket, late, idle })
        };
        if server.is_forced() {
            let socket = lock(&self.live).get(slot).map(|e| e.socket.clone());
            if let Some(socket) = socket {
                shutdown(&socket, How::Both);
            }
        }
        ConnTrack {
            conns: self.clone(),
            slot,
            peer,
            idle,
            _guard: guard,
        }
    }

    /// Resolves once fewer than `max` connections are live.
    pub(crate) async fn below(&self, max: usize) {
        loop {
            if self.len() < max {
                return;
            }
            let l = self.ended.listen();
            if self.len() < max {
                return;
            }
            l.await;
        }
    }
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("live", &self.len())
            .finish()
    }
}

/// One live connection's place in its server: its named guard and its
/// registry entry. Dropping it releases both; adapters keep it inside the
/// connection's stream, so it lives exactly as long as the socket (also
/// across an HTTP upgrade).
pub struct ConnTrack {
    conns: Arc<Connections>,
    slot: usize,
    peer: SocketAddr,
    idle: Arc<Idle>,
    _guard: NamedGuard,
}

impl ConnTrack {
    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The connection's idleness, for the protocol layer that reads it to
    /// tell: an idle connection is shut down from the registry when the
    /// listener closes (see [`Idle`]). Never told, it never is.
    pub fn idle(&self) -> &Arc<Idle> {
        &self.idle
    }
}

/// A connection's socket as the registry holds it: the socket the
/// connection itself uses, shared (the registry keeps an `Arc` of it), never
/// a duplicate descriptor, so its descriptor stays open as long as the
/// registry may cut it.
///
/// Implemented for every socket that lends its descriptor ([`AsFd`]); an
/// adapter whose stream needs exclusive access while it does I/O implements
/// it on a wrapper of its own.
///
/// A panic in either method costs its own connection alone: it is logged,
/// the other connections are still shut down, and the stop goes on.
pub trait SharedSocket: Send + Sync + 'static {
    /// Shuts down the read half, the write half or both (`shutdown(2)`).
    fn shutdown(&self, how: How) -> io::Result<()>;

    /// Whether bytes the peer sent wait unread in the socket (a peek that
    /// never blocks and takes nothing; `false` when it cannot be told).
    /// The HTTP layer asks it before it closes a connection it saw idle,
    /// so a request that has just arrived, which the runtime's reactor has
    /// not reported yet, is served rather than reset. Every socket that
    /// lends its descriptor has it; a wrapper that does not (as the tokio
    /// adapter's, behind a lock) implements it with the crate's
    /// `server::has_pending_input`.
    fn has_pending_input(&self) -> bool {
        false
    }
}

#[cfg(unix)]
impl<T: AsFd + Send + Sync + 'static> SharedSocket for T {
    fn shutdown(&self, how: How) -> io::Result<()> {
        socket2::SockRef::from(self).shutdown(how)
    }

    fn has_pending_input(&self) -> bool {
        has_pending_input(self.as_fd())
    }
}

/// [`SharedSocket::has_pending_input`] for the socket `fd`: a
/// non-blocking peek of one byte. For adapter authors.
#[cfg(unix)]
#[doc(hidden)]
pub fn has_pending_input(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    matches!(socket2::SockRef::from(&fd).recv_with_flags(&mut byte, flags), Ok(n) if n > 0)
}

/// How many idle connections [`Connections::close_idle`] shuts down on
/// two threads rather than one.
const SPLIT_AT: usize = 256;

/// Shuts down each of `idle` that is still idle and has nothing sent;
/// returns how many.
/// Each reference is dropped right after its call (see
/// [`Connections::shutdown_where`]).
fn close_each(idle: Vec<(Socket, Arc<Idle>)>) -> usize {
    let mut closed = 0;
    for (socket, idle) in idle {
        // Peeked before it is claimed: a read that begins after the look
        // finds the connection closed and takes nothing (see `Idle::read`).
        if !input_waits(&socket) && idle.close() && shutdown(&socket, How::Both) {
            closed += 1;
        }
    }
    closed
}

/// A reference to a connection's socket that keeps its descriptor open.
type Socket = Arc<dyn SharedSocket>;

/// One live connection: a reference to its socket, whether it came after
/// the trigger, and its idleness.
struct Entry {
    socket: Socket,
    late: bool,
    idle: Arc<Idle>,
}

/// Shuts `socket` down. A `SharedSocket` of an adapter's own that panics
/// costs its connection alone: the others are still shut down, and the
/// stop goes on. Returns whether it did not panic.
fn shutdown(socket: &Socket, how: How) -> bool {
    let shut = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| socket.shutdown(how)));
    if shut.is_err() {
        tracing::error!("a connection's socket panicked in its shutdown");
    }
    shut.is_ok()
}

/// Whether bytes wait unread in `socket`; yes if its peek panics (the
/// connection is then left to its task).
fn input_waits(socket: &Socket) -> bool {
    let peek = std::panic::AssertUnwindSafe(|| socket.has_pending_input());
    std::panic::catch_unwind(peek).unwrap_or_else(|_| {
        tracing::error!("a connection's socket panicked in its peek");
        true
    })
}

impl Drop for ConnTrack {
    fn drop(&mut self) {
        // The entry's reference to the socket is dropped after the lock.
        let entry = lock(&self.conns.live).remove(self.slot);
        drop(entry);
        self.conns.ended.notify(usize::MAX);
    }
}

impl fmt::Debug for ConnTrack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnTrack")
            .field("peer", &self.peer)
            .finish()
    }
}

#[cfg(all(test, unix))]
#[path = "connections_tests.rs"]
mod tests;
