use std::io;

use graceful_core::server::{self, Accept, ConnTrack};
use graceful_core::{Outcome, Runtime, ServeConfig, Shutdown};
use hyper::rt::{Read, Write};

use crate::connection::{serve_with, Watched};
use crate::{HttpOptions, HttpService};

/// Serves `service` over HTTP/1.1 and HTTP/2 (prior knowledge) on
/// `listener` until `shutdown` is triggered, then drains. Each adapter's
/// `http::serve` is this with its runtime's listener, I/O wrapper (`io`
/// turns an accepted stream and its tracking into hyper I/O) and hyper
/// `timer`:
///
/// - responses produced after the trigger carry `Connection: close` and
///   their connection closes after them (requests a client pipelined,
///   read whole by the first of them, are answered first, the last one
///   carrying it); idle keep-alive connections close
///   when the listener closes (one whose next request has begun to arrive,
///   its head split across packets or its bytes not read yet, gets the
///   first-request grace for the rest, and is served); HTTP/2 connections
///   get GOAWAY and their open streams finish (an idle one whose client
///   sends nothing after it, not even the answer to its PING, closes after
///   the first-request grace);
/// - a connection that has not sent a whole request yet gets
///   [`ServeConfig::first_request_grace`] to send its first request, and
///   is closed when the grace ends first;
/// - during [`ServeConfig::pre_drain`] the listener keeps accepting and
///   serving (mount [`Readiness`](crate::Readiness) so load balancers see
///   503);
/// - upgraded connections are left to their handlers (each request carries
///   the connection's [`Conn`](graceful_core::Conn) in its extensions, with
///   the server's shutdown to watch) and cut at the deadline;
/// - at the deadline every remaining connection is cut and the report of
///   what was left is logged and returned in the [`Outcome`].
///
/// `io` gives hyper the accepted socket itself, with no layer of its own
/// between: a close that does not linger then drops the socket, whose
/// close sends the FIN, without shutting its write side first. A layer
/// whose shutdown sends something (TLS's `close_notify`) goes through
/// [`serve_connection`](crate::serve_connection), which always shuts it.
#[allow(clippy::too_many_arguments)]
pub async fn serve<R, A, S, I, F, T>(
    rt: &R,
    listener: A,
    shutdown: &Shutdown,
    config: ServeConfig,
    service: S,
    timer: T,
    mut io: F,
) -> io::Result<Outcome>
where
    R: Runtime,
    A: Accept,
    F: FnMut(std::sync::Arc<A::Socket>, ConnTrack) -> I + Send,
    I: Read + Write + Unpin + Send + 'static,
    T: hyper::rt::Timer + Send + Sync + 'static,
    S: HttpService,
{
    let options = HttpOptions::new(&config).timer(timer).drop_closes();
    let conn_rt = rt.clone();
    let builder = std::sync::Arc::new(options.builder(rt.clone()));
    // hyper closes idle connections itself; reads must not be cut under it.
    let config = config.close_idle(false);
    server::serve(
        rt,
        listener,
        shutdown,
        config,
        move |stream, track, conn| {
            let watched = Watched {
                socket: Some(stream.clone()),
                idle: Some(track.idle().clone()),
            };
            serve_with(
                conn_rt.clone(),
                builder.clone(),
                io(stream, track),
                watched,
                conn,
                service.clone(),
                options.clone(),
            )
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::net::{SocketAddr, TcpListener};
    use std::os::fd::{AsFd, BorrowedFd};
    use std::pin::Pin;
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};
    use std::time::{Duration, Instant};

    use graceful_core::server::{Accept, ConnTrack};
    use graceful_core::{Reason, ServeConfig, Shutdown};

    use crate::test_support::{assert_second_served_with_close, path_service, Stream};

    type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

    /// A runtime driven by hand: spawned tasks wait in a list for the test
    /// to poll them; timers never fire.
    #[derive(Clone, Default)]
    struct ByHand(Arc<Mutex<Vec<Task>>>);

    impl ByHand {
        /// Polls every spawned task `times` times; returns how many are left.
        fn run(&self, times: usize) -> usize {
            let mut tasks = std::mem::take(&mut *self.0.lock().unwrap());
            let mut cx = Context::from_waker(Waker::noop());
            for _ in 0..times {
                tasks.retain_mut(|t| t.as_mut().poll(&mut cx).is_pending());
            }
            let left = tasks.len();
            self.0.lock().unwrap().extend(tasks);
            left
        }
    }

    impl graceful_core::Runtime for ByHand {
        type Sleep = std::future::Pending<()>;
        fn sleep(&self, _: Duration) -> Self::Sleep {
            std::future::pending()
        }
        fn spawn<F: Future<Output = ()> + Send + 'static>(&self, future: F) {
            self.0.lock().unwrap().push(Box::pin(future));
        }
        fn block_on<F: Future>(&self, _: F) -> F::Output {
            unreachable!("driven by hand")
        }
    }

    /// hyper's timer, whose sleeps never end.
    struct NoTimer;

    struct Never;

    impl Future for Never {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            Poll::Pending
        }
    }

    impl hyper::rt::Sleep for Never {}

    impl hyper::rt::Timer for NoTimer {
        fn sleep(&self, _: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
            Box::pin(Never)
        }
        fn sleep_until(&self, _: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
            Box::pin(Never)
        }
    }

    /// A listener that accepts one connection, `wire`, then waits (a real
    /// listening socket lends it a descriptor).
    struct OneConnection {
        socket: TcpListener,
        wire: Option<Arc<Stream>>,
    }

    impl AsFd for OneConnection {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.socket.as_fd()
        }
    }

    impl Accept for OneConnection {
        type Socket = Stream;

        fn poll_accept(
            &mut self,
            _: &mut Context<'_>,
        ) -> Poll<std::io::Result<(Arc<Stream>, SocketAddr)>> {
            match self.wire.take() {
                Some(wire) => Poll::Ready(Ok((wire, "127.0.0.1:1".parse().unwrap()))),
                None => Poll::Pending,
            }
        }

        fn accept_queued(&mut self) -> std::io::Result<Option<(Arc<Stream>, SocketAddr)>> {
            Ok(None)
        }

        fn local_addr(&self) -> std::io::Result<SocketAddr> {
            self.socket.local_addr()
        }
    }

    /// A `serve` in progress.
    type Served = Pin<Box<dyn Future<Output = std::io::Result<graceful_core::Outcome>> + Send>>;

    /// Serves one request on `wire` through `serve` and its connection's
    /// task; returns the pending `serve`, and the connection's guards.
    fn served_once(
        rt: &ByHand,
        shutdown: &Shutdown,
        wire: &Stream,
    ) -> (Served, Arc<Mutex<Vec<ConnTrack>>>) {
        let listener = OneConnection {
            socket: TcpListener::bind("127.0.0.1:0").unwrap(),
            wire: Some(Arc::new(wire.clone())),
        };
        let tracks: Arc<Mutex<Vec<ConnTrack>>> = Arc::default();
        let keep = tracks.clone();
        let io = move |socket: Arc<Stream>, track| {
            keep.lock().unwrap().push(track);
            (*socket).clone()
        };
        let config = ServeConfig::default().progress_every(None);
        let (rt2, shutdown) = (rt.clone(), shutdown.clone());
        let mut served = Box::pin(async move {
            super::serve(
                &rt2,
                listener,
                &shutdown,
                config,
                path_service(),
                NoTimer,
                io,
            )
            .await
        });
        let mut cx = Context::from_waker(Waker::noop());
        assert!(served.as_mut().poll(&mut cx).is_pending());
        assert_eq!(rt.run(10), 1, "the connection's task");
        let out = String::from_utf8_lossy(&wire.wire().written).into_owned();
        assert!(out.ends_with("/first\n"), "{out}");
        (served, tracks)
    }

    /// An idle keep-alive connection is shut down from the server's
    /// registry as the listener closes, before its task runs (a stop then
    /// closes thousands at the speed of their system calls); its task then
    /// ends it at once, without reading: a request sent after the close is
    /// not served on the connection shut down.
    #[test]
    fn an_idle_connection_is_shut_down_before_its_task_runs_and_serves_no_more() {
        let wire = Stream::sent(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n");
        let (rt, shutdown) = (ByHand::default(), Shutdown::new());
        let (mut served, tracks) = served_once(&rt, &shutdown, &wire);
        assert!(wire.wire().cut.is_empty(), "shut down before the stop");
        shutdown.trigger(Reason::requested());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(served.as_mut().poll(&mut cx).is_pending());
        assert_eq!(wire.wire().cut, [std::net::Shutdown::Both]);
        let written = wire.wire().written.len();
        let second = b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n";
        wire.wire().to_read.extend(second);
        // It ends at once, without a linger: its client was sent the end
        // after its response, and what came after is not read.
        assert_eq!(rt.run(10), 0, "the connection's task did not end");
        assert_eq!(
            wire.wire().written.len(),
            written,
            "answered after the close"
        );
        assert_eq!(
            wire.wire().to_read.len(),
            second.len(),
            "read after the close"
        );
        tracks.lock().unwrap().clear();
        match served.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(outcome)) => assert!(outcome.is_drained(), "{outcome}"),
            other => panic!("serve did not return drained: {other:?}"),
        }
    }

    /// `serve` hands each connection's socket to its driver, which peeks at
    /// it before closing the connection as idle: a request that arrived as
    /// the listener closed, which the reactor has not reported yet (reads
    /// see nothing, the peek sees it), is waited for and served with
    /// `Connection: close`, not closed on.
    #[test]
    fn a_request_the_reactor_has_not_reported_is_served_not_closed_on() {
        let wire = Stream::sent(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n");
        let (rt, shutdown) = (ByHand::default(), Shutdown::new());
        let (mut served, tracks) = served_once(&rt, &shutdown, &wire);
        let mut cx = Context::from_waker(Waker::noop());
        wire.wire()
            .unreported
            .extend(b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n");
        shutdown.trigger(Reason::requested());
        assert!(served.as_mut().poll(&mut cx).is_pending());
        assert_eq!(rt.run(10), 1, "closed on a request that had arrived");
        // The reactor reports it.
        let arrived = std::mem::take(&mut wire.wire().unreported);
        wire.wire().to_read.extend(arrived);
        let ended = rt.run(10) == 0;
        assert_second_served_with_close(&wire, ended);
        // The connection's guard goes with its track: the server drains.
        tracks.lock().unwrap().clear();
        match served.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(outcome)) => assert!(outcome.is_drained(), "{outcome}"),
            other => panic!("serve did not return drained: {other:?}"),
        }
    }
}
