use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::{Conn, Connections, ServeConfig};
use crate::drain::Outcome;
use crate::reason::Reason;
use crate::runtime::Runtime;
use crate::shutdown::Shutdown;

/// One server's place in a shutdown, shared by every adapter's server: a
/// child of the shutdown named after the server, the registry of its live
/// connections (reads ended at the trigger when `close_idle`, sockets cut
/// at the force), and its drain with the configured deadline.
#[derive(Debug)]
pub(crate) struct ServerScope {
    name: String,
    shutdown: Shutdown,
    conns: Arc<Connections>,
    /// The listener holds the server until it is closed: without this hold,
    /// a triggered server whose last connection ended just before a backlog
    /// connection was registered would count as drained, and that
    /// connection would go untracked. A hold (a child of the server's,
    /// started only when the listener closes) rather than a guard: an open
    /// listener is no work a force abandons, so no report lists it, and
    /// the settle time's last resort after a force does not release it.
    listening: Mutex<Option<Shutdown>>,
    /// Triggered once the listener closed: the moment idle connections end.
    closed: Shutdown,
    config: ServeConfig,
}

impl ServerScope {
    /// The scope of a server listening on `local`, under `parent`.
    pub(crate) fn new(parent: &Shutdown, config: &ServeConfig, local: SocketAddr) -> ServerScope {
        let name = config
            .name
            .clone()
            .unwrap_or_else(|| format!("server {local}"));
        // The listener's hold is made before the child can be triggered: a
        // server started after the stop began (a signal while starting)
        // still serves its backlog and drains its connections.
        let (shutdown, listening) = parent.child_held(name.clone(), format!("listener {local}"));
        let conns = Connections::new();
        conns.attach(&shutdown);
        ServerScope {
            name,
            shutdown,
            conns,
            listening: Mutex::new(Some(listening)),
            closed: Shutdown::new(),
            config: config.clone(),
        }
    }

    /// The server's name in logs and reports (`server ADDR` by default).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The server's child of the shutdown passed to `serve`.
    pub(crate) fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// Its live connections.
    pub(crate) fn conns(&self) -> &Arc<Connections> {
        &self.conns
    }

    /// What the handler of a connection from `peer` to `local` knows of it
    /// and of this server.
    pub(crate) fn conn(&self, peer: SocketAddr, local: SocketAddr) -> Conn {
        Conn::with_listener(peer, local, self.shutdown.clone(), self.closed.clone())
    }

    /// Records that the listener closed, after taking `queued` connections
    /// from its backlog, and winds the idle connections down: those whose
    /// protocol layer marked them [`Idle`](super::Idle) are shut down
    /// first, then HTTP connections see [`Conn::listener_closed`]; with
    /// [`ServeConfig::close_idle`], the reads of the connections accepted
    /// before the trigger end now, and those of the connections accepted
    /// after it (during the pre-drain delay, from the backlog) end after the
    /// first-request grace, timed on `rt`. Until now, during the pre-drain
    /// delay, idle connections stayed open: a pooled client may reuse one
    /// at any moment. Then releases the listener's hold. Calling it again
    /// does nothing more.
    pub(crate) fn listener_closed<R: Runtime>(&self, rt: &R, queued: usize) {
        let Some(hold) = self.listener_gone() else {
            return;
        };
        if self.config.close_idle {
            // The grace is timed from here, before any read ends.
            let (conns, grace, sleep) = (
                self.conns.clone(),
                self.config.first_request_grace,
                rt.sleep(self.config.first_request_grace),
            );
            self.conns.shutdown_reads();
            rt.spawn(async move {
                sleep.await;
                tracing::trace!("first-request grace of {grace:?} over: ending late reads");
                conns.shutdown_late_reads();
            });
        }
        tracing::info!(
            "{}: listener closed ({queued} queued connection(s) taken); {} connection(s) to drain",
            self.name,
            self.conns.len()
        );
        hold.trigger(Reason::requested());
    }

    /// Shuts down the connections marked idle (see
    /// [`Connections::close_idle`]) and tells the connections that the
    /// listener closed, unless that was done already; returns the
    /// listener's hold, for the caller to release (trigger) once done.
    fn listener_gone(&self) -> Option<Shutdown> {
        let hold = self
            .listening
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        // The idle connections' clients see their end first, from here, in
        // a system call each; then every connection's task is woken.
        match self.conns.close_idle() {
            0 => {}
            closed => tracing::debug!("{}: {closed} idle connection(s) closed", self.name),
        }
        self.closed.trigger(Reason::requested());
        Some(hold)
    }

    /// Drains the server's connections with the configured deadline,
    /// progress logs and settle time.
    pub(crate) async fn drain<R: Runtime>(&self, rt: &R) -> Outcome {
        self.shutdown
            .enforce_deadline(rt, self.config.timeout)
            .progress_every(self.config.progress_every)
            .settle(self.config.settle)
            .await
    }
}

impl Drop for ServerScope {
    /// A `serve` dropped before its listener closed (cancelled, say by a
    /// `select!`) dropped its listener too: the connections it leaves
    /// learn that the listener closed, so an idle HTTP/1 keep-alive
    /// connection does not wait for it forever, an HTTP/1 response still
    /// in flight is marked `Connection: close` and an HTTP/2 connection
    /// gets its GOAWAY; with
    /// [`ServeConfig::close_idle`], the reads of its TCP connections end,
    /// so a handler waiting for input does not hold the stop to its
    /// deadline (with no timer left for a late connection's first-request
    /// grace, theirs end now too); and the hold is released.
    fn drop(&mut self) {
        if let Some(hold) = self.listener_gone() {
            if self.config.close_idle {
                self.conns.shutdown_reads();
                self.conns.shutdown_late_reads();
            }
            hold.trigger(Reason::requested());
            tracing::info!(
                "{}: serve dropped before its listener closed; {} connection(s) left to end",
                self.name,
                self.conns.len()
            );
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::net::Shutdown::{Both, Read};
    use std::sync::{Arc, Mutex};

    use super::ServerScope;
    use crate::server::SharedSocket;
    use crate::{ServeConfig, Shutdown};

    /// Where a socket panics, as an adapter's own `SharedSocket` might.
    #[derive(Clone, Copy, PartialEq)]
    enum Panics {
        Never,
        InItsPeek,
        InItsShutdown,
    }

    /// A socket that logs its shutdowns, or panics.
    struct Socket {
        panics: Panics,
        log: Mutex<Vec<std::net::Shutdown>>,
    }

    impl SharedSocket for Socket {
        fn shutdown(&self, how: std::net::Shutdown) -> std::io::Result<()> {
            assert!(self.panics != Panics::InItsShutdown, "this shutdown panics");
            self.log.lock().unwrap().push(how);
            Ok(())
        }
        fn has_pending_input(&self) -> bool {
            assert!(self.panics != Panics::InItsPeek, "this peek panics");
            false
        }
    }

    /// The listener's close shuts down the other idle connections, tells
    /// every connection that it closed and ends their reads, and at the
    /// force cuts the others, even when a socket panics in its peek or its
    /// shutdown.
    #[test]
    fn a_socket_that_panics_in_its_shutdown_costs_its_connection_alone() {
        let parent = Shutdown::new();
        let local = "127.0.0.1:1".parse().unwrap();
        let scope = ServerScope::new(&parent, &ServeConfig::default(), local);
        // Idle, idle, idle, busy, busy.
        let kinds = [
            (Panics::InItsPeek, true),
            (Panics::InItsShutdown, true),
            (Panics::Never, true),
            (Panics::InItsShutdown, false),
            (Panics::Never, false),
        ];
        let (sockets, tracks): (Vec<_>, Vec<_>) = kinds
            .iter()
            .map(|&(panics, idle)| {
                let socket = Arc::new(Socket {
                    panics,
                    log: Mutex::default(),
                });
                let track = scope
                    .conns()
                    .register(scope.shutdown(), socket.clone(), local, "conn");
                if idle {
                    track.idle().set_idle();
                }
                (socket, track)
            })
            .unzip();
        let conn = scope.conn(local, local);
        let shutdown = scope.shutdown().clone();
        // What a `serve` dropped before its listener closed does.
        drop(scope);
        assert!(conn.is_listener_closed(), "the connections were not told");
        let log = |i: usize| sockets[i].log.lock().unwrap().clone();
        assert!(!tracks[0].idle().is_closed(), "its peek panicked");
        assert!(tracks[1].idle().is_closed() && tracks[2].idle().is_closed());
        assert_eq!(
            log(2),
            [Both, Read],
            "the idle one is closed, then its reads ended"
        );
        assert_eq!(log(4), [Read], "the busy one's reads are ended");
        shutdown.force(crate::ForceCause::Requested);
        assert_eq!(log(4), [Read, Both], "the force cut it");
    }
}
