use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_listener::{Event, Listener};
use graceful_core::server::{
    close_signal, is_fatal_accept_error, run_conn, take_backlog, Backoff, Connections,
    HandlerOutput, ServerScope,
};
use graceful_core::{block_on, Conn, Outcome, Reason, ServeConfig, Shutdown};

use crate::{Runtime, Stream};

/// Serves TCP connections on `listener`, a thread per connection, until
/// `shutdown` is triggered, then drains them with the core's policy
/// (pre-drain, backlog, deadline, forced close, panics, back-off).
///
/// No polling: the accept thread blocks in `accept` and is woken at close
/// time by a connection of the server's own (which keeps the kernel's
/// backlog, unlike shutting the listener down); a read waiting for input
/// is ended at the trigger and every socket is shut down at the force,
/// through the registry of live connections.
///
/// `handler` builds each connection's work; it runs on the connection's
/// own thread. For a plain blocking closure see [`serve_blocking`].
pub async fn serve<H, Fut>(
    listener: TcpListener,
    shutdown: &Shutdown,
    config: ServeConfig,
    handler: H,
) -> io::Result<Outcome>
where
    H: FnMut(Stream, Conn) -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerOutput,
{
    serve_on(&Runtime::new()?, listener, shutdown, config, handler).await
}

/// [`serve`] with timers from `rt` (tests pass a runtime with a manual
/// clock).
pub async fn serve_on<R, H, Fut>(
    rt: &R,
    listener: TcpListener,
    shutdown: &Shutdown,
    config: ServeConfig,
    handler: H,
) -> io::Result<Outcome>
where
    R: graceful_core::Runtime,
    H: FnMut(Stream, Conn) -> Fut + Send + 'static,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerOutput,
{
    listener.set_nonblocking(false)?;
    let local = listener.local_addr()?;
    let scope = Arc::new(ServerScope::new(shutdown, &config, local));
    let closing = Arc::new(Closing::default());

    let (done_tx, done_rx) = futures_channel::oneshot::channel();
    let mut accept = AcceptLoop {
        ctx: Ctx {
            rt: rt.clone(),
            local,
            scope: scope.clone(),
            closing: closing.clone(),
        },
        listener,
        root: shutdown.clone(),
        max: config.max_connections,
        handler,
    };
    std::thread::Builder::new()
        .name(format!("accept {local}"))
        .spawn(move || {
            accept.run();
            let _ = done_tx.send(());
        })?;

    close_signal(rt, &scope.shutdown, config.pre_drain, &scope.name).await;
    let wake = closing.close(local, &scope.conns);
    if done_rx.await.is_err() {
        // The accept thread died (a panic while accepting): the listener is
        // gone with it; release it so the drain does not wait for it.
        tracing::error!("{}: the accept thread ended abnormally", scope.name);
        scope.listener_closed(rt, 0);
    }
    drop(wake);
    Ok(scope.drain(rt).await)
}

/// [`serve`] with a blocking handler, run to completion on this thread.
pub fn serve_blocking<H, O>(
    listener: TcpListener,
    shutdown: &Shutdown,
    config: ServeConfig,
    handler: H,
) -> io::Result<Outcome>
where
    H: Fn(Stream, Conn) -> O + Send + Sync + 'static,
    O: HandlerOutput + Send + 'static,
{
    let handler = Arc::new(handler);
    block_on(serve(listener, shutdown, config, move |stream, conn| {
        let handler = handler.clone();
        async move { handler(stream, conn) }
    }))
}

/// Tells the accept thread to stop: a flag, an event for its waits, and the
/// address of the connection that wakes a blocked `accept`.
#[derive(Default)]
struct Closing {
    flag: AtomicBool,
    event: Event,
    wake_addr: Mutex<Option<SocketAddr>>,
}

impl Closing {
    fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Sets the flag, wakes the waits, and connects to the listener so a
    /// blocked `accept` returns. Returns the waking connection, to be kept
    /// until the accept thread is done (so its address is not reused).
    fn close(&self, local: SocketAddr, conns: &Connections) -> Option<TcpStream> {
        self.flag.store(true, Ordering::SeqCst);
        self.event.notify(usize::MAX);
        conns.wake_waiters();
        let target = match local {
            SocketAddr::V4(a) if a.ip().is_unspecified() => {
                SocketAddr::from(([127, 0, 0, 1], a.port()))
            }
            SocketAddr::V6(a) if a.ip().is_unspecified() => {
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
            }
            other => other,
        };
        // If the backlog is full the connect may time out; `accept` is not
        // blocked then, and sees the flag on its next turn.
        match crate::wake::connect_from_known_port(target, &self.wake_addr) {
            Ok(stream) => Some(stream),
            Err(e) => {
                tracing::debug!("waking the accept thread by connecting failed: {e}");
                None
            }
        }
    }

    fn is_wake(&self, peer: SocketAddr) -> bool {
        *self.wake_addr.lock().unwrap_or_else(|p| p.into_inner()) == Some(peer)
    }

    /// Sleeps `delay`, or less if closing starts.
    fn pause(&self, delay: Duration) {
        let l = self.event.listen();
        if !self.is_set() {
            l.wait_timeout(delay);
        }
    }
}

struct AcceptLoop<R, H> {
    ctx: Ctx<R>,
    listener: TcpListener,
    root: Shutdown,
    max: Option<usize>,
    handler: H,
}

/// What serving one connection needs, apart from the handler.
struct Ctx<R> {
    rt: R,
    local: SocketAddr,
    scope: Arc<ServerScope>,
    closing: Arc<Closing>,
}

impl<R, H, Fut> AcceptLoop<R, H>
where
    R: graceful_core::Runtime,
    H: FnMut(Stream, Conn) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerOutput,
{
    fn run(&mut self) {
        let mut backoff = Backoff::new();
        'accepting: while !self.ctx.closing.is_set() {
            if let Some(max) = self.max {
                // `wait_below` returns false once closing started, also when
                // it started between the loop's check and this wait.
                if !self.ctx.scope.conns.wait_below(max, None) {
                    break 'accepting;
                }
            }
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    backoff.reset();
                    self.ctx.serve(&mut self.handler, stream, peer);
                }
                Err(e) if is_fatal_accept_error(&e) => {
                    tracing::error!(
                        "{}: accept failed, the listener is unusable: {e}; stopping",
                        self.ctx.scope.name
                    );
                    self.root.trigger(Reason::error(e));
                    break;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        "{}: accept failed: {e}; retrying in {delay:?}",
                        self.ctx.scope.name
                    );
                    self.ctx.closing.pause(delay);
                }
            }
        }
        // Serve what the kernel already queued, then close the listener.
        let mut queued = 0;
        if self.listener.set_nonblocking(true).is_ok() {
            let Self {
                listener,
                ctx,
                handler,
                ..
            } = self;
            let mut wakes = 0;
            queued = take_backlog(
                &ctx.scope.name,
                || match listener.accept() {
                    Ok(conn) => Ok(Some(conn)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                    Err(e) => Err(e),
                },
                |(stream, peer)| {
                    if !ctx.serve(handler, stream, peer) {
                        wakes += 1;
                    }
                },
            );
            queued -= wakes;
        }
        self.ctx.scope.listener_closed(&self.ctx.rt, queued);
    }
}

impl<R: graceful_core::Runtime> Ctx<R> {
    /// Serves one accepted connection on a thread of its own; returns false
    /// for the server's own waking connection, which is not served.
    fn serve<H, Fut>(&self, handler: &mut H, stream: TcpStream, peer: SocketAddr) -> bool
    where
        H: FnMut(Stream, Conn) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerOutput,
    {
        if self.closing.is_wake(peer) {
            return false;
        }
        if let Err(e) = stream.set_nonblocking(false) {
            tracing::warn!("{}: dropping connection {peer}: {e}", self.scope.name);
            return true;
        }
        let stream = Arc::new(stream);
        let track = self
            .scope
            .conns
            .register(&self.scope.shutdown, stream.clone(), peer, "conn");
        let conn = self.scope.conn(peer, self.local);
        let work = handler(Stream::new(stream, track), conn);
        let server = self.scope.shutdown.clone();
        let spawned = crate::threads::run(move || block_on(run_conn(work, server, peer)));
        if let Err(e) = spawned {
            tracing::error!("{}: no thread for connection {peer}: {e}", self.scope.name);
        }
        true
    }
}
