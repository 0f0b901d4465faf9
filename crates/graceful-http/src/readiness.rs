use graceful_core::Shutdown;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Response, StatusCode};

/// A readiness endpoint: `200 ok` before the trigger, `503 stopping`
/// after it, so load balancers and Kubernetes stop routing to the process
/// while it drains. Mount it on any route.
///
/// A restart is no stop of the service: a process that handed its
/// listeners over to a successor ([`Reason::Restarted`]) stays ready. Its
/// address goes on serving, and a probe its listener still takes during
/// the handover must not take that address out of rotation.
///
/// [`Reason::Restarted`]: graceful_core::Reason::Restarted
///
/// ```
/// use graceful_core::{Reason, Shutdown};
/// use graceful_http::Readiness;
///
/// let shutdown = Shutdown::new();
/// let ready = Readiness::new(&shutdown);
/// assert_eq!(ready.response::<String>().status(), 200);
/// shutdown.trigger(Reason::requested());
/// assert_eq!(ready.response::<String>().status(), 503);
///
/// let restarted = Shutdown::new();
/// let ready = Readiness::new(&restarted);
/// restarted.trigger(Reason::Restarted { successor: 4242 });
/// assert_eq!(ready.response::<String>().status(), 200);
/// ```
#[derive(Clone, Debug)]
pub struct Readiness {
    shutdown: Shutdown,
}

impl Readiness {
    /// Readiness of the process stopped by `shutdown`.
    pub fn new(shutdown: &Shutdown) -> Readiness {
        Readiness {
            shutdown: shutdown.clone(),
        }
    }

    /// Whether the process should get traffic: not once it stops, unless
    /// for a restart.
    pub fn is_ready(&self) -> bool {
        !stopping(&self.shutdown)
    }

    /// 200 or 503.
    pub fn status(&self) -> StatusCode {
        if self.is_ready() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }

    /// The response, with a body of any type that can be made from a
    /// string (hyper's `Full<Bytes>`, axum's `Body`, `String`...).
    pub fn response<B: From<&'static str>>(&self) -> Response<B> {
        let body = if self.is_ready() {
            "ok\n"
        } else {
            "stopping\n"
        };
        let mut res = Response::new(B::from(body));
        *res.status_mut() = self.status();
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

/// Whether `shutdown` stops the service: triggered, and not by a restart
/// (whose successor serves the same socket). What readiness and gRPC
/// health report.
pub(crate) fn stopping(shutdown: &Shutdown) -> bool {
    shutdown.is_triggered() && !shutdown.is_restarted()
}
