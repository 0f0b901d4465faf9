use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::future::{select, Either};
use graceful_core::server::{Idle, SharedSocket};
use graceful_core::{Conn, Runtime, ServeConfig};
use hyper::rt::{Read, Write};
use hyper_util::server::conn::auto;

use crate::exec::Exec;
use crate::io::{Io, Orphanable};
use crate::service::{Activity, GracefulService};
use crate::{BoxError, HttpService};

/// Serves one accepted connection over HTTP/1.1 or HTTP/2 (prior knowledge,
/// detected from the first bytes), and winds it down when `conn`'s server
/// stops:
///
/// - at the trigger, an HTTP/2 connection gets GOAWAY and its open streams
///   finish (one opened later gets it once its preface is read and it
///   sent a first request, or its first-request grace is over); an idle
///   one whose client sends nothing at all after the GOAWAY (not even the
///   answer to the PING sent with it) is closed
///   `config.first_request_grace` after it; an
///   HTTP/1 connection keeps serving, each response marked
///   `Connection: close` (so pooled clients move elsewhere, and the
///   connection closes after it), but for one followed by requests the
///   client pipelined, read whole by the first response after the
///   trigger: the last of them carries it;
/// - when the listener closes (at the trigger, or after the pre-drain
///   delay), an idle HTTP/1 keep-alive connection closes; until then a
///   pooled client may still reuse it. One whose next request's head has
///   begun to arrive is not idle: it gets `config.first_request_grace` to
///   send the rest, and the request is served with `Connection: close`
///   (through [`serve`](crate::serve), which knows the socket, bytes that
///   arrived but were not read yet count too), or the connection is
///   closed when the grace ends first;
/// - a connection that has not sent a request yet gets
///   `config.first_request_grace` to send one, which is served with
///   `Connection: close`; when the grace ends first, the connection is
///   closed, whether it sent nothing or part of a head. The grace bounds
///   only that wait: a request read is served to its end, however long it
///   takes;
/// - upgraded connections (WebSocket) are handed to their handler and not
///   cut here (through [`serve`](crate::serve), their stream keeps the
///   connection's guard); a `101` response keeps `Connection: upgrade`
///   alone;
/// - a close lingers only when the client may still be sending (write
///   side first, then what it sends is discarded), so clients read their
///   response rather than a reset.
///
/// Forcing is the caller's: the core's `run_conn` drops this future when
/// the server is forced, and the connection registry shuts the socket.
pub async fn serve_connection<R, I, S>(
    rt: R,
    io: I,
    conn: Conn,
    service: S,
    options: HttpOptions,
) -> Result<(), BoxError>
where
    R: Runtime,
    I: Read + Write + Unpin + Send + 'static,
    S: HttpService,
{
    let builder = Arc::new(options.builder(rt.clone()));
    serve_with(rt, builder, io, Watched::default(), conn, service, options).await
}

/// [`serve_connection`] with a hyper builder shared by every connection of
/// a server (made by [`HttpOptions::builder`]), so a connection does not
/// carry a builder of its own; and what its server's registry `watched`
/// of it, if any.
pub(crate) async fn serve_with<R, I, S>(
    rt: R,
    builder: Arc<auto::Builder<Exec<R>>>,
    io: I,
    watched: Watched,
    conn: Conn,
    service: S,
    options: HttpOptions,
) -> Result<(), BoxError>
where
    R: Runtime,
    I: Read + Write + Unpin + Send + 'static,
    S: HttpService,
{
    let activity = Arc::new(Activity::default());
    let service = GracefulService::new(service, conn.clone(), activity.clone());
    let Watched { socket, idle } = watched;
    let io = Io::with_activity(io, rt.clone(), options.linger, activity.clone())
        .drop_closes(options.drop_closes)
        .linger_within(conn.shutdown().clone())
        .idle(idle);
    let io = Orphanable::new(io);
    // In an `Option`, to be dropped early: a first request still unfinished
    // when its grace ends, an HTTP/2 client gone quiet (see below).
    let mut connection = pin!(Some(builder.serve_connection_with_upgrades(io, service)));
    // Dropped before `connection` when this future is (a forced stop): an
    // I/O that hyper drops then is closed at once, not kept.
    let abandon = Abandon(&activity);
    let done = async {
        // Serve until the server starts to stop: HTTP/2 at the trigger (its
        // GOAWAY), HTTP/1 when the listener closes (until then its responses
        // carry `Connection: close`, which needs no wake-up at the trigger).
        // A listener closed with no trigger (a cancelled `serve`) stops
        // HTTP/2 too.
        {
            let (mut triggered, mut closed) = (conn.triggered(), conn.listener_closed());
            let stop = poll_fn(|cx| {
                if activity.is_http2() && Pin::new(&mut triggered).poll(cx).is_ready() {
                    return Poll::Ready(());
                }
                Pin::new(&mut closed).poll(cx)
            });
            if let Either::Left((done, _)) = select(live(connection.as_mut()), stop).await {
                return done;
            }
        }

        // Nothing sent yet: the grace to send a first request.
        let mut grace_spent = false;
        if activity.requests() == 0 {
            let grace = options.first_request_grace;
            let first = pin!(activity.first_request());
            let timer = pin!(rt.sleep(grace));
            let waited = select(first, timer);
            match select(live(connection.as_mut()), waited).await {
                Either::Left((done, _)) => return done,
                Either::Right((Either::Right(_), _)) => grace_spent = true,
                Either::Right((Either::Left(_), _)) => {}
            }
        }
        // HTTP/1: first the responses in progress end (head and body, written
        // out). One marked `Connection: close` ends the connection by itself
        // (none is while a pipelined request waits behind it, see `MarkClose`);
        // one begun before the stop is followed by the requests the client
        // pipelined behind it, which hyper holds read: its graceful shutdown of
        // a busy connection would close after the response and drop them (and
        // append `close` to a `101` upgrade's `Connection: upgrade`). Then an
        // idle connection is closed. Idle is seen twice, with hyper polled in
        // between and no request read meanwhile: going idle, it parses a
        // request already in its buffer (and it may yield first). Both looks
        // are taken in one poll of this task, with hyper polled again in
        // between, rather than by waking the task for the second: a stop
        // closing thousands of idle connections then polls each once.
        // A connection whose next request has begun to arrive (a client
        // reusing it just before the stop, its head split across packets,
        // or its bytes not yet reported by the reactor when idle is seen
        // the second time) is not idle: it gets the first request's grace
        // to send the rest, and the request is then served.
        if !activity.is_http2() {
            let mut quiet_since: Option<usize> = None;
            let mut rest: Option<Pin<Box<R::Sleep>>> = None;
            let ended = poll_fn(|cx| loop {
                if let Poll::Ready(done) = live(connection.as_mut()).poll(cx) {
                    return Poll::Ready(Some(done));
                }
                if !activity.is_quiet() {
                    quiet_since = None;
                    return Poll::Pending;
                }
                let requests = activity.requests();
                let begun = activity.head_begun()
                    || (quiet_since == Some(requests)
                        && socket.as_ref().is_some_and(|s| s.has_pending_input()));
                if begun && !grace_spent {
                    let grace = options.first_request_grace;
                    let timer = rest.get_or_insert_with(|| Box::pin(rt.sleep(grace)));
                    if timer.as_mut().poll(cx).is_pending() {
                        quiet_since = None;
                        return Poll::Pending;
                    }
                    // The grace is over, the request still unfinished.
                    return Poll::Ready(None);
                }
                if quiet_since == Some(requests) {
                    return Poll::Ready(None);
                }
                quiet_since = Some(requests);
            })
            .await;
            if let Some(done) = ended {
                return done;
            }
            // No request read, and its grace is over. hyper's graceful
            // shutdown keeps a connection whose first head it is reading
            // (it is not idle before a first response) until its
            // header-read timeout (30 s) or the deadline: the connection is
            // dropped here instead, and its I/O, left unclosed, is closed
            // below.
            if activity.requests() == 0 {
                connection.set(None);
                return Ok(());
            }
        }
        live(connection.as_mut()).graceful_shutdown();
        if !activity.is_http2() {
            return live(connection.as_mut()).await;
        }
        // HTTP/2: the graceful shutdown sends GOAWAY and a PING, and names
        // the last stream (closing an idle connection) only once the PING
        // is answered. A client that sends nothing at all after the GOAWAY,
        // not even that answer (gone behind a NAT, stopped), would hold the
        // connection to the deadline: once the grace has passed with
        // nothing heard from it, and no stream in flight, the connection
        // is dropped, and its I/O closed below. A client heard from is
        // alive (a tunnel's traffic, say): h2 closes its connection once
        // it is done.
        // The bound is armed at the GOAWAY, before hyper reads on: whatever
        // it reads then, every HTTP/2 connection arms it alike.
        let heard = activity.heard();
        let (mut alive, mut due) = (false, false);
        let mut timer = pin!(rt.sleep(options.first_request_grace));
        let ended = poll_fn(|cx| {
            due = due || (!alive && timer.as_mut().poll(cx).is_ready());
            if let Poll::Ready(done) = live(connection.as_mut()).poll(cx) {
                return Poll::Ready(Some(done));
            }
            alive |= activity.heard() != heard;
            let gone = due && !alive && activity.is_quiet() && !activity.is_upgraded();
            match gone {
                true => Poll::Ready(None),
                false => Poll::Pending,
            }
        })
        .await;
        if let Some(done) = ended {
            return done;
        }
        connection.set(None);
        Ok(())
    }
    .await;
    // The I/O hyper dropped unclosed, if it did (see `Orphanable`): its
    // close, which may linger, is done here.
    let orphan = activity.take_orphan().map(|io| io.downcast::<Io<I, R>>());
    if let Some(Ok(io)) = orphan {
        let mut io = io.adopted(activity.clone());
        let _ = poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx)).await;
    }
    drop(abandon);
    done
}

/// What a server's registry holds of a connection, for its driver.
#[derive(Default)]
pub(crate) struct Watched {
    /// The connection's socket under its I/O, asked for bytes not yet read
    /// before an idle connection is closed (see
    /// [`SharedSocket::has_pending_input`]).
    pub(crate) socket: Option<Arc<dyn SharedSocket>>,
    /// Its idleness, which the I/O tells, so that the server shuts it
    /// down when its listener closes (see [`Io::idle`]).
    pub(crate) idle: Option<Arc<Idle>>,
}

/// The connection being served, while it is not dropped.
fn live<F>(connection: Pin<&mut Option<F>>) -> Pin<&mut F> {
    connection.as_pin_mut().expect("dropped only at the end")
}

/// While alive, the connection's driver is there to close an I/O that
/// hyper drops unclosed (see `Orphanable`).
struct Abandon<'a>(&'a Activity);

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        self.0.abandon();
    }
}

/// What a connection needs from the server's configuration, cheap to clone
/// per connection.
#[derive(Clone)]
pub struct HttpOptions {
    first_request_grace: Duration,
    linger: Duration,
    timer: Option<Arc<dyn hyper::rt::Timer + Send + Sync>>,
    /// The connections' I/O is their socket itself (see `Io::drop_closes`).
    drop_closes: bool,
}

impl HttpOptions {
    /// The grace and linger of `config`, and no hyper timer.
    pub fn new(config: &ServeConfig) -> Self {
        HttpOptions {
            first_request_grace: config.first_request_grace,
            linger: config.linger,
            timer: None,
            drop_closes: false,
        }
    }

    /// For connections whose I/O is their socket itself, which closes when
    /// dropped: a close that does not linger leaves the FIN to the drop.
    pub(crate) fn drop_closes(mut self) -> Self {
        self.drop_closes = true;
        self
    }

    /// The hyper connection builder these options ask for, executing on
    /// `rt`.
    pub(crate) fn builder<R: Runtime>(&self, rt: R) -> auto::Builder<Exec<R>> {
        let mut builder = auto::Builder::new(Exec(rt));
        if let Some(timer) = &self.timer {
            builder.http1().timer(SharedTimer(timer.clone()));
            builder.http2().timer(SharedTimer(timer.clone()));
        }
        builder
    }

    /// Gives hyper a timer, which enables its HTTP/1 header read timeout
    /// (30 s): a client stuck in the middle of a request head (slowloris)
    /// is closed then, stop or no stop. hyper runs that timeout whenever it
    /// waits for a head, so it is also an idle timeout: a connection that
    /// sends no request for 30 s, a new one or a keep-alive one after its
    /// last response, is closed too (a pooled client that keeps idle
    /// connections longer may reuse one just as it closes).
    /// [`serve`](crate::serve) always gives one.
    pub fn timer<T: hyper::rt::Timer + Send + Sync + 'static>(mut self, timer: T) -> Self {
        self.timer = Some(Arc::new(timer));
        self
    }
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("first_request_grace", &self.first_request_grace)
            .field("linger", &self.linger)
            .field("timer", &self.timer.is_some())
            .field("drop_closes", &self.drop_closes)
            .finish()
    }
}

/// hyper's `Timer` is implemented for concrete types; this shares one.
#[derive(Clone)]
struct SharedTimer(Arc<dyn hyper::rt::Timer + Send + Sync>);

impl hyper::rt::Timer for SharedTimer {
    fn sleep(&self, duration: std::time::Duration) -> std::pin::Pin<Box<dyn hyper::rt::Sleep>> {
        self.0.sleep(duration)
    }
    fn sleep_until(
        &self,
        deadline: std::time::Instant,
    ) -> std::pin::Pin<Box<dyn hyper::rt::Sleep>> {
        self.0.sleep_until(deadline)
    }
    fn reset(
        &self,
        sleep: &mut std::pin::Pin<Box<dyn hyper::rt::Sleep>>,
        new_deadline: std::time::Instant,
    ) {
        self.0.reset(sleep, new_deadline)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::Future;
    use std::net::SocketAddr;
    use std::pin::{pin, Pin};
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Waker};

    use futures_util::StreamExt;
    use graceful_core::{Conn, Reason, Runtime, ServeConfig, Shutdown};
    use http::{Request, Response, StatusCode};
    use http_body_util::StreamBody;
    use hyper::body::{Bytes, Frame, Incoming};

    use super::{serve_connection, HttpOptions};
    use crate::test_support::{
        assert_second_served_with_close, path_service, DueTimers, NoTimers, Stream,
    };

    /// `serve_connection` over `wire` for a connection of `shutdown`'s
    /// server, driven by hand, with timers that never fire.
    fn serve_on_wire<S: crate::HttpService>(
        wire: &Stream,
        service: S,
        shutdown: &Shutdown,
        config: &ServeConfig,
    ) -> impl Future<Output = Result<(), crate::BoxError>> {
        serve_on_wire_with(NoTimers, wire, service, shutdown, config)
    }

    /// [`serve_on_wire`] on the runtime `rt`.
    fn serve_on_wire_with<R: Runtime, S: crate::HttpService>(
        rt: R,
        wire: &Stream,
        service: S,
        shutdown: &Shutdown,
        config: &ServeConfig,
    ) -> impl Future<Output = Result<(), crate::BoxError>> {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let conn = Conn::new(addr, addr, shutdown.clone());
        serve_connection(rt, wire.clone(), conn, service, HttpOptions::new(config))
    }

    type Frames = futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;
    type Body =
        StreamBody<futures_util::stream::Chain<Frames, futures_util::stream::Once<Pending>>>;

    /// The last frame of the streaming response, once `last` holds it.
    #[derive(Clone, Default)]
    struct Last(Arc<Mutex<Option<Bytes>>>);

    struct Pending(Last);

    impl std::future::Future for Pending {
        type Output = Result<Frame<Bytes>, Infallible>;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            match self.0 .0.lock().unwrap().take() {
                Some(last) => Poll::Ready(Ok(Frame::data(last))),
                None => Poll::Pending,
            }
        }
    }

    /// HTTP/1 over a stream whose flush blocks once it took the end of a
    /// response begun before the stop, with a request pipelined behind it:
    /// the connection waits until that end is flushed (hyper goes idle,
    /// and parses the pipelined request, only then), so the request is
    /// answered, rather than winding down as soon as the body ended.
    #[test]
    fn a_flush_still_blocked_holds_the_wind_down_of_a_pipelined_connection() {
        let wire = Stream::sent(
            b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n",
        );
        let last = Last::default();
        let service = {
            let last = last.clone();
            hyper::service::service_fn(move |req: Request<Incoming>| {
                let last = last.clone();
                async move {
                    let first: Frames = futures_util::stream::iter(vec![Ok(Frame::data(
                        Bytes::from_static(b"first\n"),
                    ))]);
                    let frames = match req.uri().path() {
                        "/stream" => first.chain(futures_util::stream::once(Pending(last))),
                        _ => {
                            *last.0.lock().unwrap() = Some(Bytes::from_static(b"b\n"));
                            first.chain(futures_util::stream::once(Pending(last)))
                        }
                    };
                    Ok::<_, Infallible>(Response::new(StreamBody::new(frames) as Body))
                }
            })
        };
        let shutdown = Shutdown::new();
        let config = ServeConfig::default().linger(std::time::Duration::ZERO);
        let mut served = pin!(serve_on_wire(&wire, service, &shutdown, &config));
        let mut cx = Context::from_waker(Waker::noop());
        let mut poll = |times: usize| {
            for _ in 0..times {
                if served.as_mut().poll(&mut cx).is_ready() {
                    return true;
                }
            }
            false
        };
        let written = |wire: &Stream| String::from_utf8_lossy(&wire.wire().written).into_owned();

        // The first response's head and first line go out before the stop.
        assert!(!poll(3));
        assert!(written(&wire).contains("first\n"), "{}", written(&wire));
        assert!(!written(&wire)
            .to_ascii_lowercase()
            .contains("connection: close"));
        // The stop: the listener closes with that body unfinished.
        shutdown.trigger(Reason::requested());
        assert!(!poll(3));
        // Its end is produced and taken by the stream, whose flush blocks.
        wire.wire().flush_blocks = true;
        *last.0.lock().unwrap() = Some(Bytes::from_static(b"last\n"));
        assert!(!poll(5), "the connection ended with a flush blocked");
        // The flush goes through: the pipelined request is read and
        // answered (marked close), and the connection ends.
        wire.wire().flush_blocks = false;
        assert!(poll(20), "the connection did not end: {}", written(&wire));
        let out = written(&wire);
        assert!(out.contains("last\n"), "{out}");
        assert_eq!(
            out.matches("HTTP/1.1 200").count(),
            2,
            "the pipelined request is answered: {out}"
        );
        assert!(
            out.to_ascii_lowercase().contains("connection: close"),
            "{out}"
        );
    }

    /// Serves `sent` (there at once) with a service that answers `status`
    /// without reading the body, with a long linger and no timer that
    /// fires, its server's stop triggered first if `triggered`: whether
    /// the connection ended at once (rather than lingering, which nothing
    /// ends here), and what it wrote, in lower case.
    fn serve_by_hand(sent: &[u8], status: StatusCode, triggered: bool) -> (bool, String) {
        let wire = Stream::sent(sent);
        let service = hyper::service::service_fn(move |_: Request<Incoming>| async move {
            let mut res = Response::new(http_body_util::Empty::<Bytes>::new());
            *res.status_mut() = status;
            Ok::<_, Infallible>(res)
        });
        let shutdown = Shutdown::new();
        if triggered {
            shutdown.trigger(Reason::requested());
        }
        let config = ServeConfig::default().linger(std::time::Duration::from_secs(1));
        let served = serve_on_wire(&wire, service, &shutdown, &config);
        let mut served = pin!(served);
        let mut cx = Context::from_waker(Waker::noop());
        let ended = (0..50).any(|_| served.as_mut().poll(&mut cx).is_ready());
        let written = String::from_utf8_lossy(&wire.wire().written).to_ascii_lowercase();
        (ended, written)
    }

    fn ends_at_once(sent: &[u8], status: StatusCode) -> bool {
        serve_by_hand(sent, status, false).0
    }

    /// The close lingers for what hyper read but did not serve, and where
    /// a `101` switched nothing; it does not linger after a request served
    /// whole.
    #[test]
    fn the_close_lingers_for_requests_not_served_and_for_a_101_that_switched_nothing() {
        let ok = StatusCode::OK;
        assert!(ends_at_once(
            b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
            ok
        ));
        // A request pipelined behind one that closes the connection: read,
        // never answered; the client may be sending more.
        let pipelined = b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        assert!(!ends_at_once(pipelined, ok));
        // hyper prepares no upgrade for HTTP/1.0: a `101` then switches
        // nothing, and the close lingers for the body not all read.
        let switching = StatusCode::SWITCHING_PROTOCOLS;
        let start = b"POST / HTTP/1.0\r\nUpgrade: foo\r\nContent-Length: 10\r\n\r\nabcd";
        assert!(!ends_at_once(start, switching));
        assert!(!ends_at_once(start, ok));
        let whole = b"POST / HTTP/1.0\r\nUpgrade: foo\r\nContent-Length: 4\r\n\r\nabcd";
        assert!(ends_at_once(whole, switching));
    }

    /// hyper ends an HTTP/1.1 connection whose request asked for an
    /// upgrade by handing its I/O to that upgrade, unshut, even when the
    /// answer switched nothing: its close is still staged, lingering for a
    /// body not all read and not for one read whole.
    #[test]
    fn a_request_that_asked_for_an_upgrade_answered_without_one_still_gets_its_close() {
        let ok = StatusCode::OK;
        let start = b"POST / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: close\r\nContent-Length: 10\r\n\r\nabcd";
        assert!(
            !ends_at_once(start, ok),
            "no linger for the body not all read"
        );
        let whole = b"POST / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: close\r\nContent-Length: 4\r\n\r\nabcd";
        assert!(ends_at_once(whole, ok));
    }

    /// How the response of [`unwritten_then_handed_over`] ends.
    #[derive(Clone)]
    enum End {
        /// Chunked, its end signalled by the body's end.
        Chunked,
        /// Chunked, ending with these trailers, after which hyper polls
        /// the body no further.
        Trailers(http::HeaderMap),
        /// Its length announced by a header alone: hyper ends it at that
        /// length, without polling for the body's end.
        Length,
        /// A `204`: no body, its head is all.
        NoContent,
    }

    /// Serves a response of two frames, ending as `end` says, to a request
    /// that asked for an upgrade it did not get, its body left unread, with
    /// a socket that takes nothing until the response ended: hyper then
    /// hands the connection to the upgrade with all of it unwritten.
    /// Returns what was written once the socket takes bytes again, and how
    /// often the write side was shut.
    fn unwritten_then_handed_over(end: End) -> (String, usize) {
        let wire = Stream::sent(b"POST / HTTP/1.1\r\nHost: t\r\nTE: trailers\r\nUpgrade: h2c\r\nContent-Length: 10\r\n\r\nabcd");
        wire.wire().write_blocks = true;
        let service = hyper::service::service_fn(move |_: Request<Incoming>| {
            let end = end.clone();
            async move {
                let mut frames: Vec<_> = ["first\n", "last\n"]
                    .map(|s| Ok::<_, Infallible>(Frame::data(Bytes::from_static(s.as_bytes()))))
                    .into();
                let mut response = Response::builder();
                match end {
                    End::Chunked => {}
                    End::Trailers(trailers) => {
                        for name in trailers.keys() {
                            response = response.header("trailer", name.as_str());
                        }
                        frames.push(Ok(Frame::trailers(trailers)));
                    }
                    End::Length => response = response.header("content-length", "11"),
                    End::NoContent => {
                        response = response.status(StatusCode::NO_CONTENT);
                        frames.clear();
                    }
                }
                let body = StreamBody::new(futures_util::stream::iter(frames));
                Ok::<_, Infallible>(response.body(body).unwrap())
            }
        });
        let shutdown = Shutdown::new();
        let config = ServeConfig::default().linger(std::time::Duration::from_secs(1));
        let mut served = pin!(serve_on_wire(&wire, service, &shutdown, &config));
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..20 {
            assert!(served.as_mut().poll(&mut cx).is_pending());
        }
        assert!(wire.wire().written.is_empty());
        wire.wire().write_blocks = false;
        // Written out, then the close lingers for the body not all read.
        for _ in 0..20 {
            assert!(served.as_mut().poll(&mut cx).is_pending());
        }
        let out = String::from_utf8_lossy(&wire.wire().written).into_owned();
        let shutdowns = wire.wire().shutdowns;
        (out, shutdowns)
    }

    /// A response not yet written when hyper hands its connection to an
    /// upgrade that was not granted is written out whole before the close:
    /// its last chunk included, its end signalled by the body's end or by
    /// trailers (after which hyper polls no further), or reached at the
    /// length a header announced; and a response with no body, its head.
    #[test]
    fn an_unwritten_response_is_not_lost_when_hyper_hands_the_connection_to_an_upgrade() {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-sum", http::HeaderValue::from_static("7"));
        for (end, head, ending) in [
            (
                End::Chunked,
                "200 OK",
                "6\r\nfirst\n\r\n5\r\nlast\n\r\n0\r\n\r\n",
            ),
            (
                End::Trailers(trailers),
                "200 OK",
                "5\r\nlast\n\r\n0\r\nx-sum: 7\r\n\r\n",
            ),
            (End::Length, "200 OK", "content-length: 11\r\n"),
            (End::NoContent, "204 No Content", "\r\n\r\n"),
        ] {
            let (out, shutdowns) = unwritten_then_handed_over(end);
            assert!(out.starts_with(&format!("HTTP/1.1 {head}")), "{out}");
            let ending = match head {
                "200 OK" if ending.starts_with("content-length") => {
                    assert!(out.contains(ending), "{out}");
                    "\r\n\r\nfirst\nlast\n"
                }
                _ => ending,
            };
            assert!(out.ends_with(ending), "{out}");
            assert_eq!(shutdowns, 1, "the write side was not shut: {out}");
        }
    }

    /// A 2xx to CONNECT opens a tunnel: after the trigger it is not marked
    /// `Connection: close` (as a `101` is not), while other responses are.
    #[test]
    fn a_tunnel_opened_after_the_trigger_is_not_marked_close() {
        let head = |request: &[u8]| serve_by_hand(request, StatusCode::OK, true).1;
        let tunnel = head(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
        assert!(tunnel.starts_with("http/1.1 200"), "{tunnel}");
        assert!(!tunnel.contains("connection: close"), "{tunnel}");
        let plain = head(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(plain.starts_with("http/1.1 200"), "{plain}");
        assert!(plain.contains("connection: close"), "{plain}");
    }

    /// An idle keep-alive connection ends in the first poll after the
    /// listener closes: both looks at its idleness are taken in that poll,
    /// hyper polled in between, with no wake-up of its own task needed
    /// for the second (a stop closes thousands of idle connections).
    #[test]
    fn an_idle_connection_ends_in_the_first_poll_after_the_listener_closes() {
        let wire = Stream::sent(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let service = hyper::service::service_fn(|_: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(
                Bytes::from_static(b"hi\n"),
            )))
        });
        let shutdown = Shutdown::new();
        let config = ServeConfig::default();
        let mut served = pin!(serve_on_wire(&wire, service, &shutdown, &config));
        let mut cx = Context::from_waker(Waker::noop());
        // Served, then idle: polling changes nothing more.
        for _ in 0..10 {
            assert!(served.as_mut().poll(&mut cx).is_pending());
        }
        let out = String::from_utf8_lossy(&wire.wire().written).into_owned();
        assert!(
            out.starts_with("HTTP/1.1 200") && out.ends_with("hi\n"),
            "{out}"
        );
        // The listener closes with the stop (no pre-drain delay).
        shutdown.trigger(Reason::requested());
        assert!(
            served.as_mut().poll(&mut cx).is_ready(),
            "the idle connection did not end in one poll"
        );
    }

    /// A connection whose first request's head is half read when its
    /// first-request grace ends is closed then, unanswered: hyper's
    /// graceful shutdown alone keeps a connection reading its first head
    /// until its header-read timeout (none here), and so past the grace.
    #[test]
    fn a_first_head_unfinished_when_its_grace_ends_is_closed() {
        let wire = Stream::sent(b"GET /first HTTP/1.1\r\nHost: t\r\nX-Slow: ");
        let shutdown = Shutdown::new();
        let config = ServeConfig::default();
        let mut served = pin!(serve_on_wire_with(
            DueTimers::now(),
            &wire,
            path_service(),
            &shutdown,
            &config
        ));
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..10 {
            assert!(served.as_mut().poll(&mut cx).is_pending());
        }
        // The grace (due at once here) begins with the stop.
        shutdown.trigger(Reason::requested());
        let ended = (0..10).any(|_| served.as_mut().poll(&mut cx).is_ready());
        assert!(ended, "kept past its grace with its first head unfinished");
        let wire = wire.wire();
        assert!(wire.written.is_empty(), "{:?}", wire.written);
        assert_eq!(wire.shutdowns, 1, "its I/O was not closed");
    }

    /// A keep-alive connection whose next request's head was half read
    /// when the listener closes is not closed under its client: the rest
    /// comes, and the request is served with `Connection: close`. Through
    /// `serve_connection`, which has no socket to peek at: hyper read the
    /// start of the head, and the connection's I/O saw it.
    #[test]
    fn a_head_half_read_when_the_listener_closes_is_waited_for_and_served() {
        let wire =
            Stream::sent(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\nGET /second HTTP/1.1\r\nHo");
        let service = path_service();
        let shutdown = Shutdown::new();
        let config = ServeConfig::default();
        let mut served = pin!(serve_on_wire(&wire, service, &shutdown, &config));
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..10 {
            assert!(served.as_mut().poll(&mut cx).is_pending());
        }
        shutdown.trigger(Reason::requested());
        for _ in 0..10 {
            assert!(
                served.as_mut().poll(&mut cx).is_pending(),
                "closed with a head half read"
            );
        }
        wire.wire().to_read.extend(b"st: t\r\n\r\n");
        let ended = (0..10).any(|_| served.as_mut().poll(&mut cx).is_ready());
        assert_second_served_with_close(&wire, ended);
    }

    /// A hyper timer whose every sleep is over at once.
    #[derive(Clone)]
    struct Elapsed;

    struct Over;

    impl Future for Over {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            Poll::Ready(())
        }
    }

    impl hyper::rt::Sleep for Over {}

    impl hyper::rt::Timer for Elapsed {
        fn sleep(&self, _: std::time::Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
            Box::pin(Over)
        }
        fn sleep_until(&self, _: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
            Box::pin(Over)
        }
    }

    /// With a timer (as `serve` always gives one), hyper's header read
    /// timeout ends a client stuck in the middle of its head outside any
    /// stop (slowloris); with none, nothing does.
    #[test]
    fn a_timer_enables_the_header_read_timeout() {
        let sent = b"GET /first HTTP/1.1\r\nHost: t\r\nX-Slow: ";
        let config = ServeConfig::default();
        assert!(ends_after(sent, HttpOptions::new(&config).timer(Elapsed)).0);
        assert!(!ends_after(sent, HttpOptions::new(&config)).0);
    }

    /// Whether a connection that got `sent` and then nothing ends (polled
    /// a few times, its timers all elapsed with `Elapsed`), and what it
    /// wrote.
    fn ends_after(sent: &[u8], options: HttpOptions) -> (bool, String) {
        let wire = Stream::sent(sent);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let conn = Conn::new(addr, addr, Shutdown::new());
        let served = serve_connection(NoTimers, wire.clone(), conn, path_service(), options);
        let mut served = pin!(served);
        let mut cx = Context::from_waker(Waker::noop());
        let ended = (0..10).any(|_| served.as_mut().poll(&mut cx).is_ready());
        let written = String::from_utf8_lossy(&wire.wire().written).to_string();
        (ended, written)
    }

    /// The header read timeout is an idle timeout too: a keep-alive
    /// connection that sends nothing after its response is closed when
    /// it passes (here at once), and kept without a timer.
    #[test]
    fn the_header_read_timeout_also_closes_an_idle_keep_alive_connection() {
        let sent = b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n";
        let config = ServeConfig::default();
        for (options, ends) in [
            (HttpOptions::new(&config).timer(Elapsed), true),
            (HttpOptions::new(&config), false),
        ] {
            let (ended, written) = ends_after(sent, options);
            assert!(written.starts_with("HTTP/1.1 200"), "{written}");
            assert_eq!(ended, ends, "{written}");
        }
    }
}
