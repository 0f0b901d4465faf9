//! The HTTP service, written once against the adapter contract
//! (`crate::rt`): HTTP/1.1 and HTTP/2 (h2c) on hyper.
//!
//! - `GET /` waits `--delay-ms` (default 2000), then answers `hello`;
//! - `GET /healthz` is the readiness endpoint: 200 until the stop signal,
//!   503 after it (still 200 after a restart's handover: the successor
//!   serves the same socket).
//!
//! At the stop signal it keeps serving for `--pre-drain-ms` (readiness
//! 503, every response `Connection: close`), closes the listener, lets the
//! requests in flight finish within `--timeout-ms`, and exits 0 (drained),
//! 1 (deadline passed) or 128+signo (a second signal).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};

use crate::common::cli;
use crate::rt;

/// What a request gets: an answer now, or `hello` after a delay.
enum Reply {
    Now(Response<Full<Bytes>>),
    HelloAfter(Duration),
}

/// Reads what the answer needs from `req`, before any wait: hyper keeps
/// one response future per connection for the connection's life, sized
/// for the largest, so a future that held the request would cost every
/// idle connection its size.
fn route(req: &Request<Incoming>, ready: &rt::http::Readiness, delay: Duration) -> Reply {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    tracing::debug!(target: "request", "{} {path}", req.method());
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => Reply::HelloAfter(delay),
        (&Method::GET, "/healthz") => Reply::Now(ready.response()),
        _ => {
            let mut res = Response::new(Full::from("not found\n"));
            *res.status_mut() = StatusCode::NOT_FOUND;
            Reply::Now(res)
        }
    }
}

async fn answer(reply: Reply, runtime: rt::Runtime) -> Response<Full<Bytes>> {
    let mut res = match reply {
        Reply::Now(res) => res,
        Reply::HelloAfter(delay) => {
            runtime.sleep(delay).await;
            Response::new(Full::from("hello\n"))
        }
    };
    // Which program answered (a restart may have replaced the binary).
    res.headers_mut().insert(
        hyper::header::SERVER,
        hyper::header::HeaderValue::from_static(env!("CARGO_CRATE_NAME")),
    );
    res
}

/// The whole program: flags, signals, serve, exit code.
pub(crate) fn main(name: &str) -> ! {
    let started = cli::start(name, 2000, rt::Runtime::new, rt::signals);
    let ready = rt::http::Readiness::new(&started.shutdown);
    let service_rt = started.runtime.clone();
    let delay = started.args.delay;
    let service = service_fn(move |req| {
        let reply = answer(route(&req, &ready, delay), service_rt.clone());
        async move { Ok::<_, Infallible>(reply.await) }
    });
    cli::exit(started.runtime.block_on(rt::http::serve(
        started.listener,
        &started.shutdown,
        started.args.serve_config(),
        service,
    )))
}
