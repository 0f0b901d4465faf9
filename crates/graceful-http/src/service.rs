use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use event_listener::Event;
use graceful_core::Conn;
use http::header::{HeaderValue, CONNECTION};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::service::Service;
use pin_project_lite::pin_project;

/// What one connection has done so far, shared by its service wrapper and
/// its driver.
#[derive(Default)]
pub(crate) struct Activity {
    requests: AtomicUsize,
    first: Event,
}

impl Activity {
    pub(crate) fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
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

    fn request(&self) {
        if self.requests.fetch_add(1, Ordering::SeqCst) == 0 {
            self.first.notify(usize::MAX);
        }
    }
}

/// Wraps the user's service for one connection:
///
/// - puts the connection's [`Conn`] in each request's extensions (peer
///   address, the server's shutdown for long-lived handlers);
/// - counts requests, for the first-request grace (B7);
/// - marks an HTTP/1 response whose head is produced after the trigger with
///   `Connection: close` (B12, B15), except a `101 Switching Protocols`,
///   which keeps its `Connection: Upgrade`.
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
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = MarkClose<S::Future>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        self.activity.request();
        let http1 = req.version() <= Version::HTTP_11;
        req.extensions_mut().insert(self.conn.clone());
        MarkClose {
            inner: self.inner.call(req),
            conn: http1.then(|| self.conn.clone()),
        }
    }
}

pin_project! {
    /// The response future of [`GracefulService`].
    pub(crate) struct MarkClose<F> {
        #[pin]
        inner: F,
        // Set for HTTP/1 requests only: HTTP/2 has no `Connection` header
        // (its GOAWAY does the job).
        conn: Option<Conn>,
    }
}

impl<F, B, E> Future for MarkClose<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = match this.inner.poll(cx) {
            Poll::Ready(Ok(res)) => res,
            other => return other,
        };
        if let Some(conn) = this.conn {
            if conn.is_triggered() && res.status() != StatusCode::SWITCHING_PROTOCOLS {
                res.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
        }
        Poll::Ready(Ok(res))
    }
}
