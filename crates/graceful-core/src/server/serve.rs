use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::future::{select, CatchUnwind, Either, FutureExt};
use pin_project_lite::pin_project;

use super::{Backoff, Conn, ConnTrack, HandlerOutput, ServeConfig, ServerScope};
use crate::drain::Outcome;
use crate::phase::Forced;
use crate::reason::Reason;
use crate::runtime::Runtime;
use crate::shutdown::Shutdown;

/// A listening socket the core's accept loop can drive. Each adapter
/// implements it for its listener.
#[cfg(unix)]
pub trait Accept: std::os::fd::AsFd + Send + 'static {
    /// An accepted connection's socket. It is shared (an `Arc`, one
    /// descriptor) between the connection and the registry that ends its
    /// reads at the close and cuts it at the force.
    type Socket: super::SharedSocket;

    /// Accepts the next connection, waiting for one.
    fn poll_accept(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(Arc<Self::Socket>, SocketAddr)>>;

    /// Accepts a connection the kernel already completed, without waiting:
    /// `Ok(None)` when the backlog is empty. Used to serve the backlog before
    /// the listener closes: closing a listener resets the connections
    /// queued in it, whose clients have already sent their requests. Once
    /// it was called, `poll_accept` is not called again (an adapter may
    /// stop what wakes its accepts; std's listener debug-asserts it).
    fn accept_queued(&mut self) -> io::Result<Option<(Arc<Self::Socket>, SocketAddr)>>;

    /// The address the listener is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// The most queued connections served at close; a bound so a flood cannot
/// keep a closing listener open.
const MAX_QUEUED: usize = 4096;

/// The accept loop of every async adapter's `serve` and `http::serve`,
/// written once:
///
/// 1. serves a child of `shutdown` named after the listener, accepting
///    connections and spawning `handler(stream, track, conn)` for each, with
///    a named guard and a registry entry in `track`;
/// 2. backs off on accept errors; a fatal one triggers `shutdown` with
///    [`Reason::Error`];
/// 3. at the trigger, keeps accepting for `config.pre_drain`, then
///    serves the connections already queued and closes the listener, once;
/// 4. drains with `config.timeout` as the deadline, logging progress;
///    when forced, every connection is shut down and every handler future
///    dropped; a handler that panics only loses its own connection.
///
/// Returns only once the connections drained or were forced.
#[cfg(unix)]
pub async fn serve<R, A, H, Fut>(
    rt: &R,
    listener: A,
    shutdown: &Shutdown,
    config: ServeConfig,
    mut handler: H,
) -> io::Result<Outcome>
where
    R: Runtime,
    A: Accept,
    H: FnMut(Arc<A::Socket>, ConnTrack, Conn) -> Fut + Send,
    Fut: Future + Send + 'static,
    Fut::Output: HandlerOutput,
{
    let local = listener.local_addr()?;
    if config.exclusive_listener {
        super::handshakes::declare_exclusive(&listener);
    }
    let scope = ServerScope::new(shutdown, &config, local);
    let (name, server, conns) = (scope.name(), scope.shutdown(), scope.conns());

    let mut spawn_conn = |stream: Arc<A::Socket>, peer: SocketAddr| {
        let track = conns.register(server, stream.clone(), peer, "conn");
        let conn = scope.conn(peer, local);
        // A handler that panics before it returns its future costs its
        // connection alone, as one whose future panics does (B10): the
        // unwinding drops the stream and the registration it was given,
        // which releases the connection's guard and closes its socket.
        match catch_unwind(AssertUnwindSafe(|| handler(stream, track, conn))) {
            Ok(work) => rt.spawn(run_conn(work, server, peer)),
            Err(_) => tracing::error!(
                "{name}: the handler for {peer} panicked before its work began; connection closed"
            ),
        }
    };

    // A descriptor kept for the close: out of descriptors while taking the
    // backlog, it is let go so that what is left can be counted.
    let spare = std::fs::File::open("/dev/null").ok();
    let mut listener = listener;
    let mut closing = pin!(close_signal(
        rt,
        server,
        config.pre_drain,
        config.timeout,
        name
    ));
    let mut backoff = Backoff::new();
    let mut pause: Option<Pin<Box<R::Sleep>>> = None;
    loop {
        if let Some(max) = config.max_connections.map(|m| m.max(1)) {
            if conns.len() >= max {
                tracing::debug!("{name}: {max} connections open, waiting for one to end");
                let room = pin!(conns.below(max));
                if let Either::Right(_) = select(room, closing.as_mut()).await {
                    break;
                }
            }
        }
        let step = poll_fn(|cx| {
            if closing.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            if let Some(p) = pause.as_mut() {
                if p.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                pause = None;
            }
            listener.poll_accept(cx).map(Some)
        })
        .await;
        match step {
            None => break,
            Some(Ok((stream, peer))) => {
                backoff.reset();
                spawn_conn(stream, peer);
            }
            Some(Err(e)) if super::is_fatal_accept_error(&e) => {
                tracing::error!("{name}: accept failed, the listener is unusable: {e}; stopping");
                shutdown.trigger(Reason::error(e));
                break;
            }
            Some(Err(e)) => {
                let delay = backoff.next_delay();
                tracing::warn!("{name}: accept failed: {e}; retrying in {delay:?}");
                pause = Some(Box::pin(rt.sleep(delay)));
            }
        }
    }

    // Serve what the kernel already queued, then close the listener: it is
    // owned here and dropped exactly once.
    let closing = Closing {
        name,
        exclusive: config.exclusive_listener,
        spare,
    };
    let queued = take_backlog(
        rt,
        &mut listener,
        server,
        closing,
        |listener: &mut A| listener.accept_queued(),
        |(stream, peer)| spawn_conn(stream, peer),
    )
    .await;
    drop(listener);
    scope.listener_closed(rt, queued);
    Ok(scope.drain(rt).await)
}

/// The most failed attempts while taking the backlog at close.
const MAX_BACKLOG_ERRORS: usize = 16;
/// The longest the backlog may take at close.
const MAX_BACKLOG_TIME: Duration = Duration::from_millis(200);

/// Takes the connections already queued in the backlog of `listener`, the
/// closing listener of `server` (`accept` returns `Ok(None)` when it is
/// empty) and hands each to `serve`; returns how many it took. First, if
/// the listener is `exclusive` (see [`ServeConfig::exclusive_listener`])
/// and no other process holds it (a successor it was handed to, while that
/// one holds it), the kernel is asked to start no more
/// handshakes on it; the handshakes already started complete within a
/// round trip, so the backlog is looked at again 2 ms later (on `rt`'s
/// timer), and again after every look that took connections: a
/// connection whose handshake ends within 2 ms of a look is taken, one
/// whose last packet comes later still (a slow network, an ACK dropped on
/// a full queue) is reset by the close. Bounded: at most 4096
/// connections, 16 failed attempts per look, no look after 200 ms nor
/// once the server is forced (nor any if it was forced before); it gives
/// up at once when out of descriptors
/// (EMFILE, ENFILE: no accept can succeed until a connection ends, and
/// waiting would hold the stop), and logs what it left: on an exclusive
/// listener no other process holds, with a `spare` descriptor, which it
/// then lets go, how many, each accepted and closed at once (as the
/// listener's close would have reset it); on a listener another process
/// may hold, none is taken, so that one (a successor, the service
/// manager) serves them. Never spins: every failure counts.
pub(crate) async fn take_backlog<R: Runtime, L: std::os::fd::AsFd, C>(
    rt: &R,
    listener: &mut L,
    server: &Shutdown,
    closing: Closing<'_>,
    mut accept: impl FnMut(&mut L) -> io::Result<Option<C>>,
    mut serve: impl FnMut(C),
) -> usize {
    let Closing {
        name,
        exclusive,
        mut spare,
    } = closing;
    // Forced before its listener closed (a second signal, or a force from
    // code, during the pre-drain delay): the work is abandoned, so is what
    // waits in the backlog. Taken, each would be cut at once, its handler
    // run after the force, and missing from the force's report; the
    // listener's close resets them instead.
    if server.is_forced() {
        tracing::warn!("{name}: forced before its listener closed: its backlog is not taken");
        return 0;
    }
    // Held by this process alone: no other holder of the socket (a
    // successor it was handed to, while that one holds it; the service
    // manager that passed it) is there to take what is left in its queue.
    let alone = super::handshakes::is_alone(listener, exclusive);
    let stopped = super::handshakes::stop_handshakes(listener, alone);
    if stopped {
        tracing::info!("{name}: new handshakes stopped; taking the backlog to its end");
    }
    let start = std::time::Instant::now();
    let mut taken = 0;
    if !alone {
        spare = None;
    }
    let mut look = |listener: &mut L, taken: &mut usize| {
        let backlog = Backlog {
            name,
            start,
            spare: &mut spare,
        };
        backlog.take(listener, taken, &mut accept, &mut serve)
    };
    let mut open = look(listener, &mut taken);
    // Handshakes the stop caught half done: look again, until a look finds
    // none.
    while stopped && open && start.elapsed() < MAX_BACKLOG_TIME && !server.is_forced() {
        rt.sleep(super::handshakes::SETTLE).await;
        let before = taken;
        open = look(listener, &mut taken) && taken > before;
    }
    taken
}

/// How [`take_backlog`] closes a server's listener: the server's name (for
/// the log), whether the listener is exclusive, and a spare descriptor.
pub(crate) struct Closing<'a> {
    pub(crate) name: &'a str,
    pub(crate) exclusive: bool,
    pub(crate) spare: Option<std::fs::File>,
}

/// What one look at the backlog for [`take_backlog`] needs besides the
/// listener and what it takes.
struct Backlog<'a> {
    name: &'a str,
    start: std::time::Instant,
    spare: &'a mut Option<std::fs::File>,
}

impl Backlog<'_> {
    /// Takes connections until the backlog is empty, adding them to
    /// `taken`; returns whether it found it empty (rather than stopping at a
    /// bound). Makes at least one accept.
    fn take<L, C>(
        self,
        listener: &mut L,
        taken: &mut usize,
        accept: &mut impl FnMut(&mut L) -> io::Result<Option<C>>,
        serve: &mut impl FnMut(C),
    ) -> bool {
        let name = self.name;
        let mut errors = 0;
        loop {
            match accept(listener) {
                Ok(Some(conn)) => {
                    *taken += 1;
                    serve(conn);
                    if *taken >= MAX_QUEUED {
                        tracing::warn!(
                            "{name}: took {taken} queued connections at close; closing on the rest"
                        );
                        return false;
                    }
                    if self.start.elapsed() > MAX_BACKLOG_TIME {
                        tracing::warn!(
                            "{name}: taking the backlog at close took over {MAX_BACKLOG_TIME:?}; \
                             closing on the rest"
                        );
                        return false;
                    }
                }
                Ok(None) => return true,
                Err(e) if super::is_out_of_descriptors(&e) => {
                    let left = match self.spare.take() {
                        Some(spare) => {
                            drop(spare);
                            let left = self.count_left(listener, accept);
                            format!("could not take {left}, closed")
                        }
                        // Not alone, or no spare: left queued, for another
                        // holder of the socket or the close to reset.
                        None => "the connections still queued are left to the socket's \
                                 other holders, if any, or reset by its close"
                            .to_string(),
                    };
                    tracing::warn!(
                        "{name}: out of descriptors while taking the backlog at close ({e}); \
                         took {taken}, {left}"
                    );
                    return false;
                }
                Err(e) if super::is_fatal_accept_error(&e) => return false,
                Err(e) => {
                    errors += 1;
                    if errors >= MAX_BACKLOG_ERRORS {
                        tracing::warn!(
                            "{name}: {errors} failed accepts while taking the backlog at close \
                             ({e}); took {taken}, the connections still queued are reset"
                        );
                        return false;
                    }
                }
            }
        }
    }

    /// Out of descriptors, the spare let go: accepts each connection left
    /// in the backlog and closes it at once, within the backlog's bounds;
    /// says how many (at least, if a bound or a failure stopped it).
    fn count_left<L, C>(
        &self,
        listener: &mut L,
        accept: &mut impl FnMut(&mut L) -> io::Result<Option<C>>,
    ) -> String {
        let mut left = 0;
        loop {
            match accept(listener) {
                Ok(Some(conn)) => {
                    drop(conn);
                    left += 1;
                    if left < MAX_QUEUED && self.start.elapsed() <= MAX_BACKLOG_TIME {
                        continue;
                    }
                }
                Ok(None) => return left.to_string(),
                Err(_) => {}
            }
            return format!("at least {left}");
        }
    }
}

/// The least pre-drain delay of a server whose process handed its listeners
/// to a successor (a zero-downtime restart): both processes accept from the
/// same queue meanwhile, and the clients busy on the old one's keep-alive
/// connections move (every response says `Connection: close`) before its
/// idle connections close.
pub(crate) const RESTART_PRE_DRAIN: Duration = Duration::from_secs(1);

/// Resolves when a server's listener should close: at the trigger plus the
/// pre-drain delay (at least [`RESTART_PRE_DRAIN`] after a restart),
/// or at once if the server is forced. At the trigger, records the
/// server's deadline as the drain after the delay will have it, `timeout`
/// later (a little earlier: the drain begins once the backlog is taken),
/// so that work may end itself before it from then on (see
/// [`Shutdown::deadline`]).
pub(crate) async fn close_signal<R: Runtime>(
    rt: &R,
    server: &Shutdown,
    pre_drain: Duration,
    timeout: Duration,
    name: &str,
) {
    server.triggered().await;
    let pre_drain = match server.is_restarted() {
        true => pre_drain.max(RESTART_PRE_DRAIN),
        false => pre_drain,
    };
    // No deadline to record if it is beyond what an `Instant` can say (a
    // timeout of `Duration::MAX`: no deadline at all).
    let at = pre_drain
        .checked_add(timeout)
        .and_then(|budget| rt.now().checked_add(budget));
    if let Some(at) = at {
        server.set_deadline(at);
    }
    if pre_drain.is_zero() || server.is_forced() {
        return;
    }
    tracing::info!(
        "{name}: pre-drain: still serving for {pre_drain:?} before closing the listener"
    );
    let wait = pin!(rt.sleep(pre_drain));
    let forced = pin!(server.forced());
    select(wait, forced).await;
}

pin_project! {
    /// One connection's task: the handler, isolated from panics, cut
    /// short when the server is forced, its result logged.
    ///
    /// A future of its own rather than an `async fn`: an `async fn` keeps
    /// its argument in its state beside the pinned copy it polls, so every
    /// connection's task would hold its handler's future twice (2.5 KiB
    /// more per idle HTTP connection).
    pub(crate) struct RunConn<F> {
        // `None` once it ended or was cut: dropped then, in the poll that
        // saw it, whatever the runtime does with a finished task.
        #[pin]
        work: Option<CatchUnwind<AssertUnwindSafe<F>>>,
        #[pin]
        forced: Forced,
        // Keeps the server's shutdown alive while the handler runs (the
        // connection's guard, which holds it too, may be gone with the
        // stream): a shutdown reaches its children through weak
        // references, so a force of the user's shutdown still drops a
        // handler its cancelled `serve` left behind.
        _server: Shutdown,
        peer: SocketAddr,
    }
}

/// The task that runs `work`, the handler of the connection from `peer`,
/// until it ends or `server` is forced.
pub(crate) fn run_conn<F: Future>(work: F, server: &Shutdown, peer: SocketAddr) -> RunConn<F> {
    RunConn {
        work: Some(AssertUnwindSafe(work).catch_unwind()),
        forced: server.forced(),
        _server: server.clone(),
        peer,
    }
}

impl<F> Future for RunConn<F>
where
    F: Future,
    F::Output: HandlerOutput,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let peer = *this.peer;
        let Some(work) = this.work.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        match work.poll(cx) {
            Poll::Ready(Ok(out)) => out.log(peer),
            Poll::Ready(Err(panic)) => {
                let msg = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string payload".into());
                tracing::error!("handler of connection {peer} panicked: {msg}");
            }
            Poll::Pending => {
                ready!(this.forced.poll(cx));
                tracing::debug!("connection {peer} cut: the drain was forced");
            }
        }
        // A handler whose drop panics loses only its own connection, here
        // too: the panic does not unwind into the runtime's worker.
        if catch_unwind(AssertUnwindSafe(|| this.work.set(None))).is_err() {
            tracing::error!("handler of connection {peer} panicked as it was dropped");
        }
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_on;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Sets its flag when dropped.
    struct Flag(Arc<AtomicBool>);

    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// The task of a connection from a made-up peer.
    fn task<F: Future>(handler: F, server: &Shutdown) -> Pin<Box<RunConn<F>>> {
        Box::pin(run_conn(handler, server, "127.0.0.1:1".parse().unwrap()))
    }

    /// Polls `task` once, with a waker that does nothing.
    fn poll<F>(task: &mut Pin<Box<RunConn<F>>>) -> Poll<()>
    where
        F: Future,
        F::Output: HandlerOutput,
    {
        task.as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    /// A runtime whose sleep blocks the thread, for `take_backlog`'s looks.
    #[derive(Clone)]
    struct BlockingRt;

    impl Runtime for BlockingRt {
        type Sleep = std::future::Ready<()>;
        fn sleep(&self, duration: Duration) -> Self::Sleep {
            std::thread::sleep(duration);
            std::future::ready(())
        }
        fn spawn<F: Future<Output = ()> + Send + 'static>(&self, _: F) {
            unreachable!("take_backlog spawns nothing")
        }
        fn block_on<F: Future>(&self, future: F) -> F::Output {
            block_on(future)
        }
    }

    /// At the trigger a server records its deadline, its pre-drain delay
    /// plus its timeout later; none for a timeout too long to say (no
    /// deadline at all), rather than a panic.
    #[test]
    fn a_servers_deadline_is_recorded_at_the_trigger() {
        let ms = Duration::from_millis;
        for (pre_drain, timeout, recorded) in [
            (ms(1), ms(1000), Some(ms(1001))),
            (ms(1), Duration::MAX, None),
        ] {
            let server = Shutdown::new();
            server.trigger(crate::Reason::requested());
            let before = std::time::Instant::now();
            block_on(close_signal(&BlockingRt, &server, pre_drain, timeout, "t"));
            let after = std::time::Instant::now();
            let deadline = server.deadline();
            match recorded {
                Some(budget) => {
                    let at = deadline.expect("no deadline recorded");
                    assert!(at >= before + budget && at <= after + budget, "{budget:?}");
                }
                None => assert_eq!(deadline, None),
            }
        }
    }

    #[test]
    fn a_connections_task_holds_its_handlers_future_once() {
        let handler = async {
            let state = [1u8; 2048];
            std::future::pending::<()>().await;
            std::hint::black_box(&state);
        };
        let handler_size = std::mem::size_of_val(&handler);
        let peer = "127.0.0.1:1".parse().unwrap();
        let task = run_conn(handler, &Shutdown::new(), peer);
        let overhead = std::mem::size_of_val(&task) - handler_size;
        assert!(
            overhead <= 128,
            "a {handler_size}-byte handler's task takes {overhead} bytes more"
        );
    }

    #[test]
    fn a_connections_task_ends_at_the_force_not_the_trigger() {
        let server = Shutdown::new();
        let handler = std::future::pending::<()>();
        let mut task = task(handler, &server);
        assert!(poll(&mut task).is_pending());
        server.trigger(Reason::requested());
        assert!(poll(&mut task).is_pending(), "cut at the trigger");
        server.force(crate::ForceCause::Requested);
        assert!(poll(&mut task).is_ready(), "not cut at the force");
    }

    #[test]
    fn a_cut_connections_handler_is_dropped_before_its_task_ends() {
        let server = Shutdown::new();
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = Flag(dropped.clone());
        let handler = async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        };
        let mut task = task(handler, &server);
        assert!(poll(&mut task).is_pending());
        server.force(crate::ForceCause::Requested);
        assert!(poll(&mut task).is_ready());
        assert!(
            dropped.load(Ordering::SeqCst),
            "the handler outlived its cut"
        );
        assert!(poll(&mut task).is_ready(), "a poll after the end");
    }

    #[test]
    fn a_handler_whose_drop_panics_at_the_cut_does_not_unwind_out_of_its_task() {
        struct PanicsOnDrop;
        impl Drop for PanicsOnDrop {
            fn drop(&mut self) {
                panic!("a handler's drop panicked");
            }
        }
        let server = Shutdown::new();
        let dropped = Arc::new(AtomicBool::new(false));
        let (flag, bomb) = (Flag(dropped.clone()), PanicsOnDrop);
        let handler = async move {
            let _bomb = bomb;
            let _flag = flag;
            std::future::pending::<()>().await;
        };
        let mut task = task(handler, &server);
        assert!(poll(&mut task).is_pending());
        server.force(crate::ForceCause::Requested);
        let cut = catch_unwind(AssertUnwindSafe(|| poll(&mut task)));
        assert!(
            matches!(cut, Ok(Poll::Ready(()))),
            "the panic unwound out of the task"
        );
        assert!(
            dropped.load(Ordering::SeqCst),
            "the rest of the handler was not dropped"
        );
    }

    #[test]
    fn an_ended_handler_is_dropped_and_never_polled_again() {
        let dropped = Arc::new(AtomicBool::new(false));
        let polls = Arc::new(AtomicUsize::new(0));
        let handler = {
            let (flag, polls) = (Flag(dropped.clone()), polls.clone());
            poll_fn(move |_| {
                let _ = &flag;
                polls.fetch_add(1, Ordering::SeqCst);
                Poll::Ready(())
            })
        };
        let server = Shutdown::new();
        let mut task = task(handler, &server);
        assert!(poll(&mut task).is_ready());
        assert!(
            dropped.load(Ordering::SeqCst),
            "the handler outlived its end"
        );
        assert!(poll(&mut task).is_ready(), "a poll after the end");
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "the ended handler was polled again"
        );
    }

    #[test]
    fn a_connections_task_is_cut_by_its_servers_parent_once_the_server_is_gone() {
        let parent = Shutdown::new();
        let server = parent.child();
        let handler = std::future::pending::<()>();
        let mut task = task(handler, &server);
        drop(server);
        assert!(poll(&mut task).is_pending());
        parent.force(crate::ForceCause::Requested);
        assert!(poll(&mut task).is_ready(), "the force did not reach it");
    }

    fn listener() -> std::net::TcpListener {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap()
    }

    fn closing(exclusive: bool, spare: Option<std::fs::File>) -> Closing<'static> {
        Closing {
            name: "test",
            exclusive,
            spare,
        }
    }

    // The bounds hold whether the listener's handshakes were stopped or not.

    #[test]
    fn the_backlog_stops_at_once_when_out_of_descriptors() {
        for exclusive in [false, true] {
            the_backlog_stops_at_once_when_out_of_descriptors_(exclusive);
        }
    }

    fn the_backlog_stops_at_once_when_out_of_descriptors_(exclusive: bool) {
        let mut calls = 0;
        let taken = block_on(take_backlog(
            &BlockingRt,
            &mut listener(),
            &Shutdown::new(),
            closing(exclusive, None),
            |_| {
                calls += 1;
                match calls {
                    1 | 2 => Ok(Some(calls)),
                    _ => Err(io::Error::from_raw_os_error(24)),
                }
            },
            |_| {},
        ));
        assert_eq!((taken, calls), (2, 3), "one EMFILE ends it");
    }

    /// Out of descriptors with a spare descriptor: the spare is let go,
    /// and the connections left are accepted and closed at once (counted
    /// for the log), none of them served; then the look ends. Only on a
    /// listener this process holds alone: see
    /// `out_of_descriptors_a_shared_listener_keeps_what_is_left_queued`.
    #[test]
    fn out_of_descriptors_the_spare_is_let_go_and_what_is_left_closed() {
        use std::os::fd::AsRawFd;
        let (mut calls, mut served, closed) = (0, 0, Arc::new(()));
        // A file of its own: a descriptor number reused meanwhile by
        // another test's file does not point to it.
        let path = std::env::temp_dir().join(format!("graceful-spare-{}", std::process::id()));
        let spare = std::fs::File::create(&path).unwrap();
        let spare_fd = spare.as_raw_fd();
        let closes = closed.clone();
        let taken = block_on(take_backlog(
            &BlockingRt,
            &mut listener(),
            &Shutdown::new(),
            closing(true, Some(spare)),
            |_| {
                calls += 1;
                match calls {
                    1 | 2 => Ok(Some(closes.clone())),
                    // The spare is closed before the next accept.
                    3 => Err(io::Error::from_raw_os_error(24)),
                    4 => {
                        let fd = std::fs::read_link(format!("/proc/self/fd/{spare_fd}"));
                        let spare_open = fd.is_ok_and(|p| p == path);
                        assert!(!spare_open, "the spare was not let go");
                        Ok(Some(closes.clone()))
                    }
                    5 | 6 => Ok(Some(closes.clone())),
                    _ => Ok(None),
                }
            },
            |conn| {
                served += 1;
                std::mem::forget(conn);
            },
        ));
        assert_eq!((taken, served, calls), (2, 2, 7));
        // Those left were dropped (closed) at once; the served were kept.
        drop(closes);
        assert_eq!(Arc::strong_count(&closed), 3);
        let _ = std::fs::remove_file(&path);
    }

    /// Out of descriptors on a listener another process may hold (not
    /// exclusive; inherited from the service manager, or handed to a
    /// successor by a restart, marked shared either way, even if called
    /// exclusive), nothing more is accepted: what is left in the queue is
    /// the other holder's to serve, not to be closed here.
    #[test]
    fn out_of_descriptors_a_shared_listener_keeps_what_is_left_queued() {
        let restarted = Shutdown::new();
        restarted.trigger(crate::Reason::Restarted { successor: 4242 });
        let cases = [
            (false, Shutdown::new(), false),
            (true, restarted, true),
            (true, Shutdown::new(), true),
        ];
        for (exclusive, server, shared) in cases {
            let mut listener = listener();
            let marked = shared.then(|| super::super::handshakes::mark_shared(&listener));
            let mut calls = 0;
            let spare = std::fs::File::open("/dev/null").ok();
            let taken = block_on(take_backlog(
                &BlockingRt,
                &mut listener,
                &server,
                closing(exclusive, spare),
                |_| {
                    calls += 1;
                    match calls {
                        1 | 2 => Ok(Some(())),
                        3 => Err(io::Error::from_raw_os_error(24)),
                        _ => Ok(Some(())),
                    }
                },
                |()| {},
            ));
            let restarted = server.is_restarted();
            let what =
                format!("exclusive {exclusive}, restarted {restarted}, marked shared {shared}");
            assert_eq!((taken, calls), (2, 3), "{what}: accepted after EMFILE");
            if let Some(marked) = marked.flatten() {
                super::super::handshakes::unmark_shared(marked);
            }
        }
    }

    /// What is left is counted exactly when the backlog empties, and as a
    /// lower bound when a failed accept (the freed descriptor taken
    /// elsewhere) stops the count.
    #[test]
    fn what_is_left_is_counted_or_bounded_below() {
        let count = |results: Vec<io::Result<Option<()>>>| {
            let mut results = results.into_iter();
            let mut spare = None;
            let backlog = Backlog {
                name: "test",
                start: std::time::Instant::now(),
                spare: &mut spare,
            };
            backlog.count_left(&mut listener(), &mut |_| results.next().unwrap())
        };
        let emfile = || Err(io::Error::from_raw_os_error(24));
        assert_eq!(count(vec![Ok(Some(())), Ok(Some(())), Ok(None)]), "2");
        assert_eq!(count(vec![Ok(Some(())), emfile()]), "at least 1");
    }

    #[test]
    fn the_backlog_counts_transient_failures_instead_of_spinning() {
        for exclusive in [false, true] {
            the_backlog_counts_transient_failures_instead_of_spinning_(exclusive);
        }
    }

    fn the_backlog_counts_transient_failures_instead_of_spinning_(exclusive: bool) {
        let mut calls = 0;
        let taken = block_on(take_backlog::<_, _, ()>(
            &BlockingRt,
            &mut listener(),
            &Shutdown::new(),
            closing(exclusive, None),
            |_| {
                calls += 1;
                Err(io::Error::from_raw_os_error(103))
            },
            |_| {},
        ));
        assert_eq!(taken, 0);
        assert_eq!(calls, MAX_BACKLOG_ERRORS);
    }

    #[test]
    fn the_backlog_is_bounded_in_time() {
        for exclusive in [false, true] {
            the_backlog_is_bounded_in_time_(exclusive);
        }
    }

    fn the_backlog_is_bounded_in_time_(exclusive: bool) {
        let start = std::time::Instant::now();
        let taken = block_on(take_backlog(
            &BlockingRt,
            &mut listener(),
            &Shutdown::new(),
            closing(exclusive, None),
            |_| {
                std::thread::sleep(Duration::from_millis(20));
                Ok(Some(()))
            },
            |()| {},
        ));
        assert!(taken < MAX_QUEUED, "took {taken}");
        let took = start.elapsed();
        assert!(
            took >= MAX_BACKLOG_TIME && took < MAX_BACKLOG_TIME + Duration::from_secs(1),
            "{took:?}"
        );
    }

    /// An accept that finds the backlog empty until 1 ms after its first
    /// call, then one connection, then none; counts its calls.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn one_connection_after_1ms(
        calls: &mut usize,
    ) -> impl FnMut(&mut std::net::TcpListener) -> io::Result<Option<()>> + '_ {
        let (mut first, mut given) = (None, false);
        move |_| {
            *calls += 1;
            let first = *first.get_or_insert_with(std::time::Instant::now);
            if !given && first.elapsed() >= Duration::from_millis(1) {
                given = true;
                return Ok(Some(()));
            }
            Ok(None)
        }
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn a_listener_whose_handshakes_stopped_is_looked_at_again_until_a_look_finds_none() {
        let take = |exclusive: bool, server: &Shutdown| {
            let mut calls = 0;
            let start = std::time::Instant::now();
            let taken = block_on(take_backlog(
                &BlockingRt,
                &mut listener(),
                server,
                closing(exclusive, None),
                one_connection_after_1ms(&mut calls),
                |()| {},
            ));
            (taken, calls, start.elapsed())
        };
        // Empty; 2 ms later one, then empty; 2 ms later empty: done.
        let (taken, calls, took) = take(true, &Shutdown::new());
        assert_eq!(taken, 1, "a connection completed after the stop was left");
        assert_eq!(calls, 4, "looks: empty, one then empty, empty");
        let settle = super::super::handshakes::SETTLE;
        assert!(
            took >= 2 * settle && took < Duration::from_millis(100),
            "{took:?}"
        );
        // Without the stop an empty backlog ends it at once; a server
        // forced before does not look at all.
        assert_eq!(take(false, &Shutdown::new()).0, 0);
        let forced = Shutdown::new();
        forced.force(crate::ForceCause::Requested);
        assert_eq!(take(true, &forced).1, 0, "a forced server took its backlog");
    }

    #[test]
    fn the_backlog_is_bounded_in_connections() {
        for exclusive in [false, true] {
            the_backlog_is_bounded_in_connections_(exclusive);
        }
    }

    fn the_backlog_is_bounded_in_connections_(exclusive: bool) {
        let mut served = 0;
        let taken = block_on(take_backlog(
            &BlockingRt,
            &mut listener(),
            &Shutdown::new(),
            closing(exclusive, None),
            |_| Ok(Some(())),
            |()| served += 1,
        ));
        assert_eq!((taken, served), (MAX_QUEUED, MAX_QUEUED));
    }
}
