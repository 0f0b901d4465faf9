use std::fmt;
use std::net::SocketAddr;

use crate::phase::{Forced, Triggered};
use crate::shutdown::Shutdown;

/// What a connection handler knows about its connection and its server.
///
/// The handler can watch [`listener_closed`](Self::listener_closed) to
/// wind down a long-lived connection or stream (a subscription) once no
/// client is routed here any more, [`triggered`](Self::triggered) to learn
/// of the stop at once, or take more guards from
/// [`shutdown`](Self::shutdown) for work it hands to other tasks.
#[derive(Clone)]
pub struct Conn {
    peer: SocketAddr,
    local: SocketAddr,
    shutdown: Shutdown,
    /// Triggered when the server's listener closed.
    listener: Shutdown,
}

impl Conn {
    /// A connection from `peer` to `local`, served under `shutdown`, whose
    /// listener counts as closed at the trigger: for calling a handler
    /// without a server, as in its unit tests. A server gives each handler
    /// its own, whose listener closes after the pre-drain delay.
    pub fn new(peer: SocketAddr, local: SocketAddr, shutdown: Shutdown) -> Conn {
        Conn {
            peer,
            local,
            listener: shutdown.clone(),
            shutdown,
        }
    }

    pub(crate) fn with_listener(
        peer: SocketAddr,
        local: SocketAddr,
        shutdown: Shutdown,
        listener: Shutdown,
    ) -> Conn {
        Conn {
            peer,
            local,
            shutdown,
            listener,
        }
    }

    /// Whether the server's listener has closed: the pre-drain delay (if
    /// any) is over and the server only drains now.
    pub fn is_listener_closed(&self) -> bool {
        self.listener.is_triggered()
    }

    /// Resolves when the server's listener has closed (at the trigger, or
    /// after the pre-drain delay): the moment to end a connection that is
    /// idle, since no client is routed here any more.
    pub fn listener_closed(&self) -> Triggered {
        self.listener.triggered()
    }

    /// The client's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The server's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The server's shutdown (a child of the one passed to `serve`).
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Whether the server is stopping.
    pub fn is_triggered(&self) -> bool {
        self.shutdown.is_triggered()
    }

    /// Resolves when the server starts to stop.
    pub fn triggered(&self) -> Triggered {
        self.shutdown.triggered()
    }

    /// Resolves when the server's drain is forced: the connection is about
    /// to be cut.
    pub fn forced(&self) -> Forced {
        self.shutdown.forced()
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.peer)
            .field("local", &self.local)
            .field("triggered", &self.is_triggered())
            .finish()
    }
}

/// What a connection handler may return: `()` or a `Result` whose error is
/// logged (at debug level: clients hang up, that is not the server's
/// problem).
pub trait HandlerOutput {
    /// Logs the outcome of the handler of the connection from `peer`.
    fn log(self, peer: SocketAddr);
}

impl HandlerOutput for () {
    fn log(self, _peer: SocketAddr) {}
}

impl<E: fmt::Display> HandlerOutput for Result<(), E> {
    fn log(self, peer: SocketAddr) {
        if let Err(e) = self {
            tracing::debug!("connection {peer} ended with an error: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reason;

    #[test]
    fn a_conn_made_without_a_server_sees_its_listener_close_at_the_trigger() {
        let shutdown = Shutdown::new();
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let conn = Conn::new(addr, addr, shutdown.clone());
        assert!(!conn.is_listener_closed() && !conn.is_triggered());
        shutdown.trigger(Reason::requested());
        assert!(conn.is_listener_closed() && conn.is_triggered());
    }
}
