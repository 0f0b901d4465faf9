use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use event_listener::Event;
use graceful_core::Conn;
use http::header::{HeaderValue, CONNECTION, CONTENT_LENGTH};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Buf;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper::upgrade::OnUpgrade;
use pin_project_lite::pin_project;

/// What one connection has done so far, shared by its service wrapper and
/// its driver.
#[derive(Default)]
pub(crate) struct Activity {
    requests: AtomicUsize,
    /// Requests whose response is not produced to its end yet (head and
    /// body).
    in_flight: AtomicUsize,
    /// The last write or flush would have blocked, and no flush went
    /// through since: hyper, or the stream, still holds bytes of a
    /// response.
    write_blocked: AtomicBool,
    http2: AtomicBool,
    /// A response switched protocols (a `101`, or a 2xx to CONNECT, where
    /// hyper prepared the upgrade): what follows is not HTTP.
    upgraded: AtomicBool,
    /// A request on the connection came with a body, which the handler
    /// may not have read to its end (HTTP/2: the close lingers after it;
    /// HTTP/1's close knows from the bytes read). Never cleared: HTTP/2's
    /// streams overlap, and a later request without a body says nothing of
    /// an upload still arriving on another stream.
    body: AtomicBool,
    /// An HTTP/1 request asked for an upgrade that its response did not
    /// grant: hyper keeps that upgrade prepared, and hands the connection
    /// to it at its end, whichever response comes last (see [`Tracked`]).
    to_upgrade: AtomicBool,
    /// The last bytes of a response on such a connection are being
    /// written: what the socket does not take is taken from hyper (see
    /// [`Tracked`] and `Io`), until hyper's next flush.
    ending: AtomicBool,
    /// HTTP/1: the start of a request's head was read, not yet its end (a
    /// client reusing the connection, its head split across packets).
    head_begun: AtomicBool,
    /// HTTP/1: how many requests' heads were read whole.
    heads: AtomicUsize,
    /// HTTP/1: how many heads were read whole when the first response
    /// after the trigger was produced (0 until then): the responses up to
    /// that request's leave the connection open for the next.
    close_after: AtomicUsize,
    /// HTTP/2 (and whatever is read without following requests): how many
    /// reads found bytes, or the client's end.
    heard: AtomicUsize,
    first: Event,
    /// The connection's I/O, if hyper dropped it before its close (see
    /// `Orphanable`): an `Io` of the connection's types.
    orphan: Mutex<Option<Box<dyn Any + Send>>>,
    /// The connection's driver is gone (ended, or dropped by a forced
    /// stop): an I/O dropped from now on is not kept.
    abandoned: AtomicBool,
}

impl Activity {
    /// Keeps the connection's I/O, dropped by hyper before its close, for
    /// its driver to close; unless the driver is gone: then the I/O is
    /// dropped at once, closing the connection (it would otherwise wait
    /// for every holder of the activity, HTTP/2 streams' tasks included).
    pub(crate) fn orphan(&self, io: Box<dyn Any + Send>) {
        if !self.abandoned.load(Ordering::SeqCst) {
            *self.orphan.lock().unwrap_or_else(|p| p.into_inner()) = Some(io);
        }
    }

    /// Records that the connection's driver is gone.
    pub(crate) fn abandon(&self) {
        self.abandoned.store(true, Ordering::SeqCst);
    }

    /// The I/O [`Activity::orphan`] kept, if any.
    pub(crate) fn take_orphan(&self) -> Option<Box<dyn Any + Send>> {
        self.orphan.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Requests whose response is not produced to its end yet.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Whether no response is in progress and hyper holds nothing
    /// unwritten: an HTTP/1 connection between requests.
    pub(crate) fn is_quiet(&self) -> bool {
        self.in_flight() == 0 && !self.write_blocked.load(Ordering::SeqCst)
    }

    /// Whether the start of a request's head was read and not yet its end.
    pub(crate) fn head_begun(&self) -> bool {
        self.head_begun.load(Ordering::SeqCst)
    }

    /// Records how many requests' heads the bytes read so far hold whole,
    /// and whether they end inside one.
    pub(crate) fn set_heads(&self, whole: usize, begun: bool) {
        self.heads.store(whole, Ordering::SeqCst);
        self.head_begun.store(begun, Ordering::SeqCst);
    }

    /// Records that a read found bytes, or the client's end (counted where
    /// HTTP/1 requests are not followed: HTTP/2).
    pub(crate) fn hear(&self) {
        self.heard.fetch_add(1, Ordering::Relaxed);
    }

    /// How many reads [`hear`](Self::hear) counted.
    pub(crate) fn heard(&self) -> usize {
        self.heard.load(Ordering::Relaxed)
    }

    /// HTTP/1, for a response produced after the trigger: whether a
    /// request the client pipelined behind it waits, read whole by the time
    /// the first response after the trigger was produced. Fixed then: a
    /// client that keeps pipelining cannot keep the connection open.
    pub(crate) fn request_waits_at_stop(&self) -> bool {
        let heads = self.heads.load(Ordering::SeqCst);
        let limit =
            match self
                .close_after
                .compare_exchange(0, heads, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => heads,
                Err(fixed) => fixed,
            };
        self.requests() < limit
    }

    /// HTTP/1: whether a request the client pipelined was read whole and
    /// not yet handed to the service (hyper holds it, parsed or not).
    pub(crate) fn request_waits(&self) -> bool {
        self.heads.load(Ordering::SeqCst) > self.requests()
    }

    /// Records that a write would block (hyper keeps the bytes), or that a
    /// flush went through (hyper wrote everything).
    pub(crate) fn set_write_blocked(&self, blocked: bool) {
        self.write_blocked.store(blocked, Ordering::SeqCst);
    }

    /// Whether the last bytes of a response whose connection hyper hands
    /// to an upgrade are being written (see [`Tracked`]).
    pub(crate) fn is_ending(&self) -> bool {
        self.ending.load(Ordering::SeqCst)
    }

    /// hyper flushes: it wrote out (into the socket, or the `Io`'s tail)
    /// everything it held, the end of a response included.
    pub(crate) fn end_written(&self) {
        if self.ending.load(Ordering::SeqCst) {
            self.ending.store(false, Ordering::SeqCst);
        }
    }

    /// Marks a response's last bytes as being written, as [`Tracked`]
    /// does.
    #[cfg(test)]
    pub(crate) fn set_ending(&self) {
        self.ending.store(true, Ordering::SeqCst);
    }

    /// Whether the connection has carried an HTTP/2 request.
    pub(crate) fn is_http2(&self) -> bool {
        self.http2.load(Ordering::SeqCst)
    }

    /// Records that the connection speaks HTTP/2.
    pub(crate) fn mark_http2(&self) {
        self.http2.store(true, Ordering::SeqCst);
    }

    /// Whether a request asked for an upgrade that its response did not
    /// grant (hyper keeps it prepared).
    pub(crate) fn is_to_upgrade(&self) -> bool {
        self.to_upgrade.load(Ordering::SeqCst)
    }

    /// Whether a response switched the connection's protocol.
    pub(crate) fn is_upgraded(&self) -> bool {
        self.upgraded.load(Ordering::SeqCst)
    }

    /// Records that a response switched the connection's protocol.
    pub(crate) fn mark_upgraded(&self) {
        self.upgraded.store(true, Ordering::SeqCst);
    }

    /// Whether a request on the connection came with a body.
    pub(crate) fn had_body(&self) -> bool {
        self.body.load(Ordering::SeqCst)
    }

    /// Records that a request came with a body.
    pub(crate) fn mark_body(&self) {
        self.body.store(true, Ordering::SeqCst);
    }

    /// Resolves once a request arrived.
    pub(crate) async fn first_request(&self) {
        loop {
            if self.requests() > 0 {
                return;
            }
            let l = self.first.listen();
            if self.requests() > 0 {
                return;
            }
            l.await;
        }
    }

    /// Counts a request the service was called with.
    pub(crate) fn request(&self) {
        if self.requests.fetch_add(1, Ordering::SeqCst) == 0 {
            self.first.notify(usize::MAX);
        }
    }
}

/// Wraps the user's service for one connection:
///
/// - puts the connection's [`Conn`] in each request's extensions (peer
///   address, the server's shutdown for long-lived handlers);
/// - counts requests, for the first-request grace, and the responses in
///   progress (until their body's end), for the close;
/// - marks an HTTP/1 response whose head is produced after the trigger with
///   `Connection: close`, except a `101 Switching Protocols`, which keeps
///   its `Connection: Upgrade`, and a 2xx that opens a CONNECT tunnel;
/// - records a response that switches the connection to another protocol
///   (where hyper prepared the upgrade).
#[derive(Clone)]
pub(crate) struct GracefulService<S> {
    inner: S,
    conn: Conn,
    activity: Arc<Activity>,
}

impl<S> GracefulService<S> {
    pub(crate) fn new(inner: S, conn: Conn, activity: Arc<Activity>) -> Self {
        GracefulService {
            inner,
            conn,
            activity,
        }
    }
}

impl<S> fmt::Debug for GracefulService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GracefulService")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<Incoming>> for GracefulService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    B: http_body::Body,
{
    type Response = Response<Tracked<B>>;
    type Error = S::Error;
    type Future = MarkClose<S::Future>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let http1 = req.version() <= Version::HTTP_11;
        if !http1 {
            self.activity.mark_http2();
        }
        if !http_body::Body::is_end_stream(req.body()) {
            self.activity.mark_body();
        }
        self.activity.in_flight.fetch_add(1, Ordering::SeqCst);
        self.activity.request();
        // hyper hands the connection over only where it prepared an
        // upgrade (an HTTP/1.1 `Upgrade` request, or CONNECT).
        let req_is_head = req.method() == Method::HEAD;
        let upgrade = (http1 && req.extensions().get::<OnUpgrade>().is_some())
            .then(|| req.method() == Method::CONNECT);
        req.extensions_mut().insert(self.conn.clone());
        let in_flight = Some(InFlight(self.activity.clone()));
        // hyper calls this on the connection's task (HTTP/2 too, where the
        // future then runs on the stream's own task): a panic here is
        // raised again where the future is polled, so that it costs what a
        // panic in the future costs (B10): on HTTP/2 its stream alone, on
        // HTTP/1 its connection (whose task polls the future), with the
        // requests pipelined behind it.
        let (inner, panicked) = match catch_unwind(AssertUnwindSafe(|| self.inner.call(req))) {
            Ok(inner) => (Some(inner), None),
            Err(panic) => (None, Some(panic)),
        };
        MarkClose {
            inner,
            panicked,
            conn: http1.then(|| self.conn.clone()),
            upgrade,
            head: req_is_head,
            in_flight,
        }
    }
}

pin_project! {
    /// The response future of [`GracefulService`].
    pub(crate) struct MarkClose<F> {
        // `None` when the service's `call` panicked: `panicked` holds it.
        #[pin]
        inner: Option<F>,
        panicked: Option<Box<dyn Any + Send>>,
        // Set for HTTP/1 requests only: HTTP/2 has no `Connection` header
        // (its GOAWAY does the job).
        conn: Option<Conn>,
        // Set when hyper prepared an upgrade: whether the request is a
        // CONNECT (switched by a 2xx, others by a `101`).
        upgrade: Option<bool>,
        // A HEAD request: hyper writes no body for it.
        head: bool,
        in_flight: Option<InFlight>,
    }
}

/// One request in flight until its response is produced to its end (or
/// the handler, or the body, is dropped).
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

pin_project! {
    /// A response body that keeps its request in flight until its end.
    ///
    /// With `to_upgrade` (on a connection where an HTTP/1.1 request asked
    /// for an upgrade that was not granted, this request or an earlier
    /// one), it marks its last bytes: hyper hands such a connection to the
    /// upgrade as soon as both its sides are done (the reading side is
    /// closed early when a body is left unread), without the flush of its
    /// normal close, and drops what it still holds unwritten then, however
    /// much of the response that is. From the frame that completes the
    /// body (its length reached, its trailers, or its end signalled), or
    /// from its head for a response hyper asks no body of (HEAD, `204`,
    /// `304`, an empty body), to hyper's next flush, the connection's `Io`
    /// takes what the socket does not, and writes it out first, its close
    /// included (the connection's driver closes an I/O hyper drops, see
    /// `Orphanable`).
    pub(crate) struct Tracked<B> {
        #[pin]
        inner: B,
        in_flight: Option<InFlight>,
        // With `to_upgrade`: the bytes left of a length announced. Boxed:
        // held by every response, used by few.
        to_upgrade: Option<Box<Option<u64>>>,
    }
}

impl<B: http_body::Body> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if let (Some(left), Some(InFlight(activity))) = (this.to_upgrade, &*this.in_flight) {
            let (data, trailers) = match &frame {
                Some(Ok(frame)) => (
                    frame.data_ref().map_or(0, |d| d.remaining() as u64),
                    frame.is_trailers(),
                ),
                _ => (0, false),
            };
            if let Some(left) = left.as_mut() {
                *left = left.saturating_sub(data);
            }
            // hyper polls no further after trailers.
            let last =
                frame.is_none() || trailers || this.inner.is_end_stream() || **left == Some(0);
            if last {
                activity.ending.store(true, Ordering::SeqCst);
            }
        }
        if frame.is_none() {
            this.in_flight.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<F, B, E> Future for MarkClose<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<Tracked<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(panic) = this.panicked.take() {
            resume_unwind(panic);
        }
        let inner = this.inner.as_pin_mut().expect("polled after its panic");
        let result = ready!(inner.poll(cx));
        let in_flight = this.in_flight.take();
        let switches = match (&result, *this.upgrade) {
            (Ok(res), Some(connect)) => {
                let status = res.status();
                status == StatusCode::SWITCHING_PROTOCOLS || (connect && status.is_success())
            }
            _ => false,
        };
        let mut to_upgrade = false;
        let mut request_waits = false;
        // Read once: the pipelining exemption below and the `close` it
        // exempts from must see the same answer, or a trigger landing
        // between two reads would mark this response `close` with a
        // request read whole behind it (which hyper would then drop).
        // The listener closes after the trigger, or without one when the
        // `serve` was cancelled: the connection ends either way.
        let triggered = this
            .conn
            .as_ref()
            .is_some_and(|c| c.is_triggered() || c.is_listener_closed());
        if let Some(InFlight(activity)) = &in_flight {
            request_waits = triggered && activity.request_waits_at_stop();
            activity.end_written();
            if switches {
                activity.mark_upgraded();
            }
            // An upgrade asked for (hyper prepared it) and not granted.
            if this.upgrade.is_some() && !switches {
                activity.to_upgrade.store(true, Ordering::SeqCst);
            }
            to_upgrade = activity.to_upgrade.load(Ordering::SeqCst) && !switches;
        }
        let mut res = match result {
            Ok(res) => {
                let to_upgrade = to_upgrade.then(|| {
                    // The length hyper frames the body by: the body's own,
                    // else the header's.
                    let announced = res
                        .headers()
                        .get(CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok()?.parse().ok());
                    let length = res.body().size_hint().exact().or(announced);
                    // hyper asks no body of these: their end is their head.
                    let bodyless = *this.head
                        || matches!(
                            res.status(),
                            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
                        )
                        || res.body().is_end_stream()
                        || length == Some(0);
                    if let (true, Some(InFlight(activity))) = (bodyless, &in_flight) {
                        activity.ending.store(true, Ordering::SeqCst);
                    }
                    Box::new(length)
                });
                res.map(|inner| Tracked {
                    inner,
                    in_flight,
                    to_upgrade,
                })
            }
            Err(e) => return Poll::Ready(Err(e)),
        };
        if this.conn.is_some() {
            // Not on a `101`, nor on a tunnel CONNECT opens. Nor while a
            // request the client pipelined behind this one waits, read
            // whole by the first response after the trigger: hyper would
            // close after this response and drop it. The last of those
            // carries it.
            let switching = res.status() == StatusCode::SWITCHING_PROTOCOLS || switches;
            if triggered && !switching && !request_waits {
                res.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
        }
        Poll::Ready(Ok(res))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::Activity;

    /// Records its drop.
    struct Dropped(Arc<AtomicBool>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// After the trigger, the responses up to the last request read whole
    /// by the first response after the trigger leave the connection open
    /// for the next; a client that keeps pipelining more meanwhile does not
    /// move that bound: the connection closes after it.
    #[test]
    fn a_client_that_keeps_pipelining_cannot_keep_the_connection_open() {
        let activity = Activity::default();
        activity.set_heads(3, false);
        activity.request();
        assert!(activity.request_waits_at_stop(), "2 more wait behind 1");
        activity.set_heads(10, false);
        activity.request();
        assert!(activity.request_waits_at_stop(), "1 more waits behind 2");
        activity.request();
        assert!(
            !activity.request_waits_at_stop(),
            "3 carries the close: 4 to 10 came after the bound was fixed"
        );
    }

    /// An I/O orphaned while the connection's driver is there is kept for
    /// it; once the driver is gone, it is dropped at once (closing the
    /// connection), not kept for whoever still holds the activity.
    #[test]
    fn an_orphan_is_kept_for_the_driver_and_dropped_once_it_is_gone() {
        let activity = Activity::default();
        let kept = Arc::new(AtomicBool::new(false));
        activity.orphan(Box::new(Dropped(kept.clone())));
        assert!(!kept.load(Ordering::SeqCst));
        assert!(activity.take_orphan().is_some());
        assert!(kept.load(Ordering::SeqCst));
        activity.abandon();
        let late = Arc::new(AtomicBool::new(false));
        activity.orphan(Box::new(Dropped(late.clone())));
        assert!(late.load(Ordering::SeqCst), "kept after the driver left");
        assert!(activity.take_orphan().is_none());
    }
}
