use std::future::Future;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use event_listener::{Event, Listener};
use graceful_core::server::{
    close_signal, is_fatal_accept_error, run_conn, take_backlog, Backoff, Connections,
    HandlerOutput, ServerScope,
};
use graceful_core::{block_on, Conn, Outcome, Reason, ServeConfig, Shutdown};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

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
    // Non-blocking like every adapter's (the flag is shared with every
    // process the listener is handed to); the accept thread polls.
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let scope = Arc::new(ServerScope::new(shutdown, &config, local));
    let closing = Arc::new(Closing::new()?);

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
        exclusive: config.exclusive_listener,
        handler,
    };
    std::thread::Builder::new()
        .name(format!("accept {local}"))
        .spawn(move || {
            accept.run();
            let _ = done_tx.send(());
        })?;

    close_signal(rt, scope.shutdown(), config.pre_drain, scope.name()).await;
    closing.close(scope.conns());
    if done_rx.await.is_err() {
        // The accept thread died (a panic while accepting): the listener is
        // gone with it; release it so the drain does not wait for it.
        tracing::error!("{}: the accept thread ended abnormally", scope.name());
        scope.listener_closed(rt, 0);
    }
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

/// Tells the accept thread to stop: a flag, an event for its timed waits,
/// and a socket pair whose readable end the thread polls next to the
/// listener. (Not a connection to the listener: a listener handed to a
/// successor in a restart shares its accept queue, and the successor
/// could take that connection instead.)
struct Closing {
    flag: AtomicBool,
    event: Event,
    wake_tx: UnixStream,
    wake_rx: UnixStream,
}

impl Closing {
    fn new() -> io::Result<Closing> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        Ok(Closing {
            flag: AtomicBool::new(false),
            event: Event::new(),
            wake_tx,
            wake_rx,
        })
    }

    fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Sets the flag and wakes the accept thread wherever it waits.
    fn close(&self, conns: &Connections) {
        self.flag.store(true, Ordering::SeqCst);
        self.event.notify(usize::MAX);
        conns.wake_waiters();
        // One byte is enough; a full pipe means the thread is woken anyway.
        let _ = (&self.wake_tx).write(&[1]);
    }

    /// Blocks until `listener` has a connection to accept (`true`) or
    /// closing started (`false`).
    fn wait_accept(&self, listener: &TcpListener) -> bool {
        loop {
            if self.is_set() {
                return false;
            }
            let mut fds = [
                PollFd::new(listener.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.wake_rx.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {
                    let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
                    if ready(&fds[1]) || self.is_set() {
                        return false;
                    }
                    if ready(&fds[0]) {
                        return true;
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                // Cannot wait: let `accept` report what is wrong.
                Err(_) => return true,
            }
        }
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
    exclusive: bool,
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
                if !self.ctx.scope.conns().wait_below(max, None) {
                    break 'accepting;
                }
            }
            if !self.ctx.closing.wait_accept(&self.listener) {
                break 'accepting;
            }
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    backoff.reset();
                    self.ctx.serve(&mut self.handler, stream, peer);
                }
                // Taken by another process sharing the listener, or gone.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if is_fatal_accept_error(&e) => {
                    tracing::error!(
                        "{}: accept failed, the listener is unusable: {e}; stopping",
                        self.ctx.scope.name()
                    );
                    self.root.trigger(Reason::error(e));
                    break;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        "{}: accept failed: {e}; retrying in {delay:?}",
                        self.ctx.scope.name()
                    );
                    self.ctx.closing.pause(delay);
                }
            }
        }
        // Serve what the kernel already queued, then close the listener.
        let Self {
            listener,
            ctx,
            handler,
            exclusive,
            ..
        } = self;
        let queued = take_backlog(
            ctx.scope.name(),
            &mut &*listener,
            ctx.scope.shutdown(),
            *exclusive,
            |listener| match listener.accept() {
                Ok(conn) => Ok(Some(conn)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(e),
            },
            |(stream, peer)| ctx.serve(handler, stream, peer),
        );
        ctx.scope.listener_closed(&ctx.rt, queued);
    }
}

impl<R: graceful_core::Runtime> Ctx<R> {
    /// Serves one accepted connection on a thread of its own.
    fn serve<H, Fut>(&self, handler: &mut H, stream: TcpStream, peer: SocketAddr)
    where
        H: FnMut(Stream, Conn) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: HandlerOutput,
    {
        if let Err(e) = stream.set_nonblocking(false) {
            tracing::warn!("{}: dropping connection {peer}: {e}", self.scope.name());
            return;
        }
        let stream = Arc::new(stream);
        let track =
            self.scope
                .conns()
                .register(self.scope.shutdown(), stream.clone(), peer, "conn");
        let conn = self.scope.conn(peer, self.local);
        let work = handler(Stream::new(stream, track), conn);
        let server = self.scope.shutdown().clone();
        let spawned = crate::threads::run(move || block_on(run_conn(work, server, peer)));
        if let Err(e) = spawned {
            tracing::error!(
                "{}: no thread for connection {peer}: {e}",
                self.scope.name()
            );
        }
    }
}
