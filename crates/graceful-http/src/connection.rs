use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::future::{select, Either};
use graceful_core::{Conn, Runtime, ServeConfig};
use hyper::rt::{Read, Write};
use hyper_util::server::conn::auto;

use crate::exec::Exec;
use crate::io::Io;
use crate::service::{Activity, GracefulService};
use crate::{BoxError, HttpService};

/// Serves one accepted connection over HTTP/1.1 or HTTP/2 (prior knowledge,
/// detected from the first bytes), and winds it down when `conn`'s server
/// stops:
///
/// - at the trigger, an HTTP/2 connection gets GOAWAY and its open streams
///   finish (one opened later gets it once its preface is read and it
///   sent a first request, or its first-request grace is over); an
///   HTTP/1 connection keeps serving, each response marked
///   `Connection: close` (so pooled clients move elsewhere, and the
///   connection closes after it);
/// - when the listener closes (at the trigger, or after the pre-drain
///   delay), an idle HTTP/1 keep-alive connection closes; until then a
///   pooled client may still reuse it;
/// - a connection that has not sent a request yet gets
///   `config.first_request_grace` to send one, which is served with
///   `Connection: close`; after the grace it is closed. The grace bounds
///   only that wait: a request read is served to its end, however long
///   it takes;
/// - upgraded connections (WebSocket) are handed to their handler and not
///   cut here; their stream keeps the connection's guard; a `101` response
///   keeps `Connection: upgrade` alone;
/// - closes are staged (write side first, a linger only when the client
///   may still be sending) so clients read their response rather than a
///   reset.
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
    serve_with(rt, builder, io, conn, service, options).await
}

/// [`serve_connection`] with a hyper builder shared by every connection of
/// a server (made by [`HttpOptions::builder`]), so a connection does not
/// carry a builder of its own.
pub(crate) async fn serve_with<R, I, S>(
    rt: R,
    builder: Arc<auto::Builder<Exec<R>>>,
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
    let activity = Arc::new(Activity::default());
    let service = GracefulService::new(service, conn.clone(), activity.clone());
    let io = Io::with_activity(io, rt.clone(), options.linger, activity.clone());
    let mut connection = pin!(builder.serve_connection_with_upgrades(io, service));

    // Serve until the server starts to stop: HTTP/2 at the trigger (its
    // GOAWAY), HTTP/1 when the listener closes (until then its responses
    // carry `Connection: close`, which needs no wake-up at the trigger).
    {
        let (mut triggered, mut closed) = (conn.triggered(), conn.listener_closed());
        let stop = poll_fn(|cx| match activity.is_http2() {
            true => Pin::new(&mut triggered).poll(cx),
            false => Pin::new(&mut closed).poll(cx),
        });
        if let Either::Left((done, _)) = select(connection.as_mut(), stop).await {
            return done;
        }
    }

    // Nothing sent yet: the grace to send a first request.
    if activity.requests() == 0 {
        let grace = options.first_request_grace;
        let first = pin!(activity.first_request());
        let timer = pin!(rt.sleep(grace));
        let waited = select(first, timer);
        if let Either::Left((done, _)) = select(connection.as_mut(), waited).await {
            return done;
        }
    }
    // HTTP/1: first the responses in progress end (head and body, written
    // out). One marked `Connection: close` ends the connection by itself;
    // one begun before the stop is followed by the requests the client
    // pipelined behind it, which hyper holds read: its graceful shutdown of
    // a busy connection would close after the response and drop them (and
    // append `close` to a `101` upgrade's `Connection: upgrade`). Then an
    // idle connection is closed. Idle is seen twice, with hyper polled in
    // between and no request read meanwhile: going idle, it parses a
    // request already in its buffer (and it may yield first). Every change
    // of it happens in hyper's poll, on this task, after which `select`
    // polls this check again.
    if !activity.is_http2() {
        let mut quiet_since: Option<usize> = None;
        let idle = poll_fn(|cx| {
            if !activity.is_quiet() {
                quiet_since = None;
                return Poll::Pending;
            }
            let requests = activity.requests();
            if quiet_since == Some(requests) {
                return Poll::Ready(());
            }
            quiet_since = Some(requests);
            cx.waker().wake_by_ref();
            Poll::Pending
        });
        if let Either::Left((done, _)) = select(connection.as_mut(), pin!(idle)).await {
            return done;
        }
    }
    connection.as_mut().graceful_shutdown();
    connection.await
}

/// What a connection needs from the server's configuration, cheap to clone
/// per connection.
#[derive(Clone)]
pub struct HttpOptions {
    first_request_grace: Duration,
    linger: Duration,
    timer: Option<Arc<dyn hyper::rt::Timer + Send + Sync>>,
}

impl HttpOptions {
    /// The grace and linger of `config`, and no hyper timer.
    pub fn new(config: &ServeConfig) -> Self {
        HttpOptions {
            first_request_grace: config.first_request_grace,
            linger: config.linger,
            timer: None,
        }
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

    /// Gives hyper a timer, which enables its own timeouts (HTTP/1 header
    /// read timeout, HTTP/2 keep-alive) against slow or stuck clients.
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
