use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::{Connections, ServeConfig};
use crate::drain::Outcome;
use crate::guard::NamedGuard;
use crate::runtime::Runtime;
use crate::shutdown::Shutdown;

/// One server's place in a shutdown, shared by every adapter's server: a
/// child of the shutdown named after the server, the registry of its live
/// connections (reads ended at the trigger when `close_idle`, sockets cut
/// at the force), and its drain with the configured deadline.
#[derive(Debug)]
pub struct ServerScope {
    /// The server's name in logs and reports (`server ADDR` by default).
    pub name: String,
    /// The server's child of the shutdown passed to `serve`.
    pub shutdown: Shutdown,
    /// Its live connections.
    pub conns: Arc<Connections>,
    /// The listener is work in flight until it is closed: without this
    /// guard, a triggered server whose last connection ended just before a
    /// backlog connection was registered would count as drained, and that
    /// connection would go untracked.
    listening: Mutex<Option<NamedGuard>>,
    config: ServeConfig,
}

impl ServerScope {
    /// The scope of a server listening on `local`, under `parent`.
    pub fn new(parent: &Shutdown, config: &ServeConfig, local: SocketAddr) -> ServerScope {
        let name = config
            .name
            .clone()
            .unwrap_or_else(|| format!("server {local}"));
        let shutdown = parent.child_named(name.clone());
        let conns = Connections::new();
        conns.attach(&shutdown, config.close_idle);
        let listening = shutdown.guard_named(format!("listener {local}"));
        ServerScope {
            name,
            shutdown,
            conns,
            listening: Mutex::new(Some(listening)),
            config: config.clone(),
        }
    }

    /// Records that the listener closed, after taking `queued` connections
    /// from its backlog: releases its guard and logs it. Calling it again
    /// releases nothing more.
    pub fn listener_closed(&self, queued: usize) {
        drop(
            self.listening
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        );
        tracing::info!(
            "{}: listener closed ({queued} queued connection(s) taken); {} connection(s) to drain",
            self.name,
            self.conns.len()
        );
    }

    /// Drains the server's connections with the configured deadline,
    /// progress logs and settle time.
    pub async fn drain<R: Runtime>(&self, rt: &R) -> Outcome {
        self.shutdown
            .drain(rt, self.config.timeout)
            .progress_every(self.config.progress_every)
            .settle(self.config.settle)
            .await
    }
}
