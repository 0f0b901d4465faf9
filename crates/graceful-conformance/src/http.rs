//! HTTP scenarios for the adapters with `http::serve` (every adapter), run
//! through [`http_suite!`](crate::http_suite). The end-to-end tests cover
//! the rest of HTTP against real processes; these are the behaviours that
//! need a service of the test's own: upgrades (B16) and readiness (B14).

use std::convert::Infallible;
use std::future::poll_fn;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::StreamExt;
use graceful_core::{
    Conn, Escalation, ForceCause, Outcome, Reason, Runtime, ServeConfig, Shutdown, Signal,
    SignalConfig,
};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{CONNECTION, UPGRADE};
use hyper::rt::{Read as HRead, ReadBuf, Write as HWrite};
use hyper::service::Service;
use hyper::{Request, Response, StatusCode};

use crate::clock::{ManualClock, TestRuntime};
use crate::h2::H2;
use crate::harness::{delivered, ends_within, eventually, is_timeout, Cancellable, BIG, PATIENCE};
use crate::Adapter;

/// An adapter with `http::serve_on`.
pub trait HttpAdapter: Adapter {
    /// The adapter's `http::serve_on`.
    fn serve_http<R, S>(
        rt: &R,
        listener: TcpListener,
        shutdown: &Shutdown,
        config: ServeConfig,
        service: S,
    ) -> BoxFuture<'static, io::Result<Outcome>>
    where
        R: Runtime,
        S: graceful_http::HttpService;
}

/// The service of these scenarios:
/// - `GET /healthz`: readiness (200, then 503);
/// - `GET /sleep?ms=N`: answers `slept N` after N ms on the runtime's
///   clock (recorded in `seen` once its timer is armed);
/// - `POST /read`: reads the request's body to its end, then answers
///   `read N` (its length) (recorded in `seen` as `/read` once its head
///   is read);
/// - `GET /stream?ms=N`: answers at once with a body whose first line
///   comes at once and its last (`last`) N ms later (recorded in `seen` as
///   `/stream?ms=N` once its timer is armed);
/// - `GET /burst?i=N`: answers `burst N` at once (recorded in `seen`
///   as `/burst?i=N`);
/// - `GET /panic`: panics (recorded in `seen` first); `GET /panic-call`
///   panics in `call` itself, before its future exists;
/// - `GET /big`: answers [`BIG`](crate::harness::BIG) bytes (zeros) at once, more than the
///   socket buffers hold, so its writes block while the client does not
///   read;
/// - `GET /echo` with `Upgrade: echo`: switches protocols, then echoes
///   lines on the raw connection; with `?polite` it watches the shutdown
///   and at the trigger says `bye`, shuts its write side and ends,
///   otherwise it ignores it; with `?polite&half` it goes on reading after
///   its shutdown until the client closes its side, then records what it
///   read in `seen` as `half-closed read TEXT`, and ends;
///   with `?slow` its `101` comes 50 ms after the request.
#[derive(Clone, Debug)]
pub struct TestService<R> {
    rt: R,
    ready: graceful_http::Readiness,
    seen: Seen,
}

/// The requests a [`TestService`] read, by path and query.
pub type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// The body of [`TestService`]'s responses.
pub type TestBody = UnsyncBoxBody<Bytes, Infallible>;

static BIG_BODY: [u8; BIG] = [0; BIG];

fn full(body: impl Into<Bytes>) -> TestBody {
    Full::new(body.into()).boxed_unsync()
}

impl<R: Runtime> Service<Request<Incoming>> for TestService<R> {
    type Response = Response<TestBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<TestBody>, Infallible>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let (rt, ready, seen) = (self.rt.clone(), self.ready.clone(), self.seen.clone());
        if req.uri().path() == "/panic-call" {
            panic!("a service's call panics (a test of it)");
        }
        Box::pin(async move {
            if req.uri().path() == "/healthz" {
                return Ok(ready.response::<Full<Bytes>>().map(BodyExt::boxed_unsync));
            }
            if req.uri().path() == "/big" {
                return Ok(Response::new(full(Bytes::from_static(&BIG_BODY))));
            }
            let ms: u64 = req
                .uri()
                .query()
                .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("ms=")))
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(0);
            if req.uri().path() == "/burst" {
                let query = req.uri().query().unwrap_or_default();
                seen.lock().unwrap().push(format!("/burst?{query}"));
                let i = query.strip_prefix("i=").unwrap_or_default();
                return Ok(Response::new(full(format!("burst {i}"))));
            }
            if req.uri().path() == "/panic" {
                seen.lock().unwrap().push("/panic".to_string());
                panic!("a handler panics (a test of it)");
            }
            if req.uri().path() == "/read" {
                seen.lock().unwrap().push("/read".to_string());
                let body = req.into_body().collect().await;
                let n = body.map_or(0, |body| body.to_bytes().len());
                return Ok(Response::new(full(format!("read {n}"))));
            }
            if req.uri().path() == "/sleep" {
                let sleep = rt.sleep(Duration::from_millis(ms));
                seen.lock().unwrap().push(format!("/sleep?ms={ms}"));
                sleep.await;
                return Ok(Response::new(full(format!("slept {ms}"))));
            }
            if req.uri().path() == "/stream" {
                let sleep = rt.sleep(Duration::from_millis(ms));
                seen.lock().unwrap().push(format!("/stream?ms={ms}"));
                let first = futures::stream::iter([Ok(Frame::data(Bytes::from("first\n")))]);
                let last = futures::stream::once(async move {
                    sleep.await;
                    Ok(Frame::data(Bytes::from("last\n")))
                });
                return Ok(Response::new(
                    StreamBody::new(first.chain(last)).boxed_unsync(),
                ));
            }
            let query = req.uri().query().unwrap_or("");
            let polite = query.contains("polite");
            let half = query.contains("half");
            if query.contains("slow") {
                // The 101 head is produced 50 ms after the request was read.
                let (tx, rx) = futures::channel::oneshot::channel::<()>();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(50));
                    let _ = tx.send(());
                });
                let _ = rx.await;
            }
            let conn = req
                .extensions()
                .get::<Conn>()
                .cloned()
                .expect("Conn in extensions");
            let upgrade = hyper::upgrade::on(&mut req);
            let seen = seen.clone();
            rt.spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    let _ = echo_lines(upgraded, conn, polite, half.then_some(seen)).await;
                }
            });
            let mut res = Response::new(full(Bytes::new()));
            *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            res.headers_mut()
                .insert(CONNECTION, "upgrade".parse().unwrap());
            res.headers_mut().insert(UPGRADE, "echo".parse().unwrap());
            Ok(res)
        })
    }
}

async fn echo_lines<I: HRead + HWrite + Unpin>(
    mut io: I,
    conn: Conn,
    polite: bool,
    half: Option<Seen>,
) -> io::Result<()> {
    let mut buf = [0u8; 256];
    loop {
        let n = if polite {
            let read = read_some(&mut io, &mut buf);
            let triggered = conn.triggered();
            futures::pin_mut!(read, triggered);
            match futures::future::select(read, triggered).await {
                futures::future::Either::Left((n, _)) => Some(n?),
                futures::future::Either::Right(_) => None,
            }
        } else {
            Some(read_some(&mut io, &mut buf).await?)
        };
        let Some(n) = n else {
            write_all(&mut io, b"bye\n").await?;
            // Through the connection's I/O, whose shutdown after a `101`
            // shuts the write side alone (no linger, nothing discarded).
            poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx)).await?;
            let Some(seen) = half else {
                return Ok(());
            };
            let mut read = Vec::new();
            loop {
                match read_some(&mut io, &mut buf).await? {
                    0 => break,
                    n => read.extend_from_slice(&buf[..n]),
                }
            }
            let read = String::from_utf8_lossy(&read);
            seen.lock()
                .unwrap()
                .push(format!("half-closed read {read}"));
            return Ok(());
        };
        if n == 0 {
            return Ok(());
        }
        write_all(&mut io, &buf[..n]).await?;
    }
}

async fn read_some<I: HRead + Unpin>(io: &mut I, buf: &mut [u8]) -> io::Result<usize> {
    poll_fn(|cx| {
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut *io).poll_read(cx, rb.unfilled()) {
            std::task::Poll::Ready(Ok(())) => std::task::Poll::Ready(Ok(rb.filled().len())),
            std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    })
    .await
}

async fn write_all<I: HWrite + Unpin>(io: &mut I, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *io).poll_write(cx, bytes)).await?;
        bytes = &bytes[n..];
    }
    poll_fn(|cx| Pin::new(&mut *io).poll_flush(cx)).await
}

pub(crate) struct HttpServer {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) shutdown: Shutdown,
    pub(crate) clock: Option<ManualClock>,
    pub(crate) seen: Seen,
    done: std::sync::mpsc::Receiver<io::Result<Outcome>>,
    returned: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl HttpServer {
    pub(crate) fn start<A: HttpAdapter>(config: ServeConfig, manual: bool) -> HttpServer {
        HttpServer::start_under::<A>(Shutdown::new(), config, manual)
    }

    /// [`start`](Self::start), serving under `shutdown`.
    pub(crate) fn start_under<A: HttpAdapter>(
        shutdown: Shutdown,
        config: ServeConfig,
        manual: bool,
    ) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let clock = manual.then(ManualClock::new);
        let rt = TestRuntime::new(A::runtime(), clock.clone());
        let (tx, done) = std::sync::mpsc::channel();
        let seen = Seen::default();
        let returned = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, svc_seen, r) = (shutdown.clone(), seen.clone(), returned.clone());
        std::thread::spawn(move || {
            let svc = TestService {
                rt: rt.clone(),
                ready: graceful_http::Readiness::new(&s),
                seen: svc_seen,
            };
            let outcome = rt.block_on(A::serve_http(&rt, listener, &s, config, svc));
            r.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = tx.send(outcome);
        });
        HttpServer {
            addr,
            shutdown,
            clock,
            seen,
            done,
            returned,
        }
    }

    /// Whether `serve` returned (without taking its outcome).
    pub(crate) fn has_returned(&self) -> bool {
        self.returned.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) fn outcome(&self) -> Outcome {
        self.done
            .recv_timeout(PATIENCE)
            .expect("serve returned")
            .expect("serve succeeded")
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shutdown.force(ForceCause::Requested);
        if let Some(c) = &self.clock {
            c.advance(Duration::from_secs(3600));
        }
        let _ = self.done.recv_timeout(PATIENCE);
    }
}

/// Opens an upgraded `echo` connection; returns it past the 101 response.
pub(crate) fn upgrade(addr: std::net::SocketAddr, path: &str) -> BufReader<TcpStream> {
    upgrade_on(TcpStream::connect(addr).unwrap(), path)
}

/// Sends an upgrade request for `path` on `s`; asserts the `101` keeps
/// `Connection: upgrade` alone.
pub(crate) fn upgrade_on(mut s: TcpStream, path: &str) -> BufReader<TcpStream> {
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let lower = head.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 101"), "{head}");
    assert!(
        lower.contains("connection: upgrade"),
        "101 keeps Connection: Upgrade: {head}"
    );
    assert!(!lower.contains("close"), "{head}");
    r
}

pub(crate) fn roundtrip(c: &mut BufReader<TcpStream>, line: &str) -> String {
    c.get_mut()
        .write_all(format!("{line}\n").as_bytes())
        .unwrap();
    let mut got = String::new();
    c.read_line(&mut got).unwrap();
    got
}

/// B16: an upgraded connection is not cut at the trigger; its handler keeps
/// it until it decides, and at the deadline it is forced, named in the
/// report.
pub fn http_b16_upgraded_connection_survives_trigger_and_is_forced_at_deadline<A: HttpAdapter>() {
    let config = ServeConfig::default()
        .timeout(Duration::from_secs(10))
        .progress_every(None);
    let server = HttpServer::start::<A>(config, true);
    let mut ws = upgrade(server.addr, "/echo");
    assert_eq!(roundtrip(&mut ws, "before"), "before\n");
    server.shutdown.trigger(Reason::requested());
    let clock = server.clock.as_ref().unwrap();
    assert!(clock.wait_for_sleep(Duration::from_secs(10), PATIENCE));
    assert_eq!(
        roundtrip(&mut ws, "after the trigger"),
        "after the trigger\n"
    );
    clock.advance(Duration::from_secs(10));
    let t0 = Instant::now();
    let mut rest = Vec::new();
    let _ = ws.read_to_end(&mut rest);
    assert!(rest.is_empty());
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "cut {:?} after the deadline",
        t0.elapsed()
    );
    let outcome = server.outcome();
    assert_eq!(outcome.exit_code(), 1, "{outcome}");
    assert_eq!(outcome.forced_count(), 1);
}

/// A server whose clock stands still (a linger would hold its stop for
/// good), an `echo` connection upgraded at `path` that echoed a line, and
/// the stop triggered.
fn polite_upgrade_then_trigger<A: HttpAdapter>(path: &str) -> (HttpServer, BufReader<TcpStream>) {
    let server = HttpServer::start::<A>(ServeConfig::default().progress_every(None), true);
    let mut ws = upgrade(server.addr, path);
    assert_eq!(roundtrip(&mut ws, "hi"), "hi\n");
    server.shutdown.trigger(Reason::requested());
    (server, ws)
}

/// B16: an upgraded connection whose handler watches the shutdown winds
/// down on its own, and the server then drains in time. Its handler shuts
/// its write side through the connection's I/O, which after the `101`
/// does not linger (the lines after it are no HTTP body) while the client
/// keeps its socket open.
pub fn http_b16_upgraded_handler_sees_the_trigger_and_drains<A: HttpAdapter>() {
    let (server, mut ws) = polite_upgrade_then_trigger::<A>("/echo?polite");
    let mut bye = String::new();
    ws.read_line(&mut bye).unwrap();
    assert_eq!(bye, "bye\n");
    let outcome = server.outcome();
    assert!(outcome.is_drained(), "{outcome}");
}

/// B16 x the staged close: an upgraded handler's shutdown is a
/// half-close. The client reads the end of the stream at once, while the
/// handler still holds it, and what the client sends after reaches the
/// handler (nothing discards it as a close's linger would); the server
/// then drains.
pub fn http_b16_an_upgraded_handlers_shutdown_is_a_half_close<A: HttpAdapter>() {
    let (server, mut ws) = polite_upgrade_then_trigger::<A>("/echo?polite&half");
    let mut rest = String::new();
    ws.read_to_string(&mut rest)
        .expect("the end of the stream while its handler holds it");
    assert_eq!(rest, "bye\n");
    let mut s = ws.into_inner();
    s.write_all(b"after the half-close").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let outcome = server.outcome();
    assert!(outcome.is_drained(), "{outcome}");
    let seen = server.seen.lock().unwrap();
    assert!(
        seen.iter()
            .any(|l| l == "half-closed read after the half-close"),
        "{seen:?}"
    );
}

/// B16 x pre-drain x first-request grace: a `101` whose head is produced
/// after the trigger keeps `Connection: upgrade` alone (no `close`, which
/// hyper appends once its graceful shutdown has begun), both during the
/// pre-drain delay and on a silent connection that sends its upgrade
/// within its grace after the listener closed; both upgrades then work.
pub fn http_b16_upgrade_after_the_trigger_keeps_connection_upgrade_alone<A: HttpAdapter>() {
    let config = ServeConfig::default()
        .pre_drain(Duration::from_secs(5))
        .progress_every(None);
    let server = HttpServer::start::<A>(config, true);
    let silent = TcpStream::connect(server.addr).unwrap();
    server.shutdown.trigger(Reason::requested());
    let clock = server.clock.as_ref().unwrap();
    assert!(clock.wait_for_sleep_ending_at(Duration::from_secs(5), PATIENCE));
    let mut during = upgrade(server.addr, "/echo?polite");
    let mut bye = String::new();
    during.read_line(&mut bye).unwrap();
    assert_eq!(bye, "bye\n", "the upgraded handler sees the trigger");
    clock.advance(Duration::from_secs(5));
    assert!(crate::harness::refused_within(server.addr, PATIENCE));
    // Its 101 comes while the connection is being wound down.
    let mut late = upgrade_on(silent, "/echo?polite&slow");
    let mut bye = String::new();
    late.read_line(&mut bye).unwrap();
    assert_eq!(bye, "bye\n");
    let outcome = server.outcome();
    assert!(outcome.is_drained(), "{outcome}");
}

/// B6 x HTTP/1 pipelining: a request pipelined behind a response whose
/// head went out before the stop, and whose body is still being produced
/// when the listener closes, is served too (with `Connection: close`),
/// not dropped unparsed from hyper's buffer when that response ends. (The
/// same with the end of that body still unflushed is a unit test of
/// `graceful-http`'s connection, where a flush can be held.)
pub fn http_b6_request_pipelined_behind_a_response_in_progress_is_served<A: HttpAdapter>() {
    let config = ServeConfig::default().progress_every(None);
    let server = HttpServer::start::<A>(config, true);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(
        b"GET /stream?ms=1000 HTTP/1.1\r\nHost: t\r\n\r\nGET /sleep?ms=0 HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let (status, head) = head(&mut r).expect("a response head");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(!head.contains("connection: close"), "{head}");
    let clock = server.clock.as_ref().unwrap();
    assert!(clock.wait_for_sleep(Duration::from_millis(1000), PATIENCE));
    // The listener closes with the response's body half sent.
    server.shutdown.trigger(Reason::requested());
    assert!(crate::harness::refused_within(server.addr, PATIENCE));
    // No event says the connection saw the close: this pause lets it, so
    // that the body ends while it winds down (the case that failed). It
    // makes the test able to fail; nothing waits on it for correctness.
    std::thread::sleep(Duration::from_millis(200));
    clock.advance(Duration::from_millis(1000));
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("last\n"), "the first response ends: {rest}");
    assert_eq!(
        rest.matches("HTTP/1.1 200").count(),
        1,
        "the pipelined request is answered: {rest}"
    );
    assert!(rest.contains("slept 0"), "{rest}");
    assert!(
        rest.to_ascii_lowercase().contains("connection: close"),
        "{rest}"
    );
    // The client pipelines: the close lingers until it closes its side.
    drop(r);
    let outcome = server.outcome();
    assert!(outcome.is_drained(), "{outcome}");
}

/// B6 x HTTP/1 pipelining after the trigger: requests a client pipelined
/// behind one whose response is produced after the trigger (without a
/// pre-drain delay, and during one) are answered too. That response does
/// not carry `Connection: close` while a request read whole waits behind
/// it (hyper would close after it and drop those); the last one's does,
/// and the connection closes after it.
pub fn http_b6_requests_pipelined_behind_a_response_after_the_trigger_are_served<A: HttpAdapter>() {
    for pre_drain in [Duration::ZERO, Duration::from_secs(5)] {
        let config = ServeConfig::default()
            .pre_drain(pre_drain)
            .progress_every(None);
        let server = HttpServer::start::<A>(config, true);
        let s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut r = BufReader::new(s);
        r.get_mut()
            .write_all(
                b"GET /sleep?ms=1000 HTTP/1.1\r\nHost: t\r\n\r\n\
                  GET /sleep?ms=0 HTTP/1.1\r\nHost: t\r\n\r\n\
                  GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
            )
            .unwrap();
        let clock = server.clock.as_ref().unwrap();
        assert!(clock.wait_for_sleep_ending_at(Duration::from_millis(1000), PATIENCE));
        server.shutdown.trigger(Reason::requested());
        if pre_drain.is_zero() {
            assert!(crate::harness::refused_within(server.addr, PATIENCE));
        } else {
            assert!(clock.wait_for_sleep_ending_at(pre_drain, PATIENCE));
        }
        clock.advance(Duration::from_millis(1000));
        let what = format!("pre-drain {pre_drain:?}");
        // The last is the readiness endpoint's 503.
        let mut heads = Vec::new();
        for (i, body) in [Some("slept 1000"), Some("slept 0"), None]
            .iter()
            .enumerate()
        {
            let (status, head) = head(&mut r).unwrap_or_else(|e| {
                panic!("{what}: response {i} of 3 never came (dropped unanswered): {e}")
            });
            assert!(status.starts_with("HTTP/1.1 "), "{what}: {status}");
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("{what}: {head}"));
            let mut got = vec![0u8; length];
            r.read_exact(&mut got).unwrap();
            if let Some(body) = body {
                assert_eq!(String::from_utf8_lossy(&got), *body, "{what}");
            }
            heads.push(head);
        }
        let closes: Vec<bool> = heads
            .iter()
            .map(|h| h.contains("connection: close"))
            .collect();
        assert_eq!(closes, [false, false, true], "{what}: {heads:?}");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{what}: {rest:?}");
        // The client pipelined: the close lingers until it closes its side.
        drop(r);
        clock.advance(pre_drain);
        let outcome = server.outcome();
        assert!(outcome.is_drained(), "{what}: {outcome}");
    }
}

/// B10 over HTTP: a handler that panics, over HTTP/1 and on an HTTP/2
/// stream (a task of its own), costs its own request alone: its
/// connection's other streams and the other connections are served,
/// nothing it held is left held, and the stop drains. Also when it is the
/// service's `call` that panics, before the request's future exists (hyper
/// calls it on the HTTP/2 connection's task): a stream in flight on the
/// same connection still gets its response.
pub fn http_b10_a_panicking_handler_costs_its_request_alone<A: HttpAdapter>() {
    let config = ServeConfig::default().progress_every(None);
    let server = HttpServer::start::<A>(config, true);
    let burst = |i: usize| {
        let mut c = BufReader::new(TcpStream::connect(server.addr).unwrap());
        c.get_ref().set_read_timeout(Some(PATIENCE)).unwrap();
        let get = format!("GET /burst?i={i} HTTP/1.1\r\nHost: t\r\n\r\n");
        c.get_mut().write_all(get.as_bytes()).unwrap();
        let (status, _) = head(&mut c).expect("a response");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        c
    };
    let before = burst(1);
    let mut h1 = TcpStream::connect(server.addr).unwrap();
    h1.set_read_timeout(Some(PATIENCE)).unwrap();
    h1.write_all(b"GET /panic HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let ended = h1.read_to_end(&mut got);
    assert!(
        ended.is_ok() || ended.as_ref().is_err_and(|e| !is_timeout(e)),
        "the panicking request's connection was left open"
    );
    assert!(
        !got.starts_with(b"HTTP/1.1 2"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    let after = burst(2);
    let mut h2 = H2::connect(server.addr);
    let panics = h2.get("/panic");
    let served = h2.get("/burst?i=3");
    let r = h2.finish(served, PATIENCE);
    assert!(r.ended && r.body == "burst 3", "{r:?}");
    let r = h2.finish(panics, PATIENCE);
    assert!(r.reset && !r.ended, "the panicking stream: {r:?}");
    let later = h2.get("/burst?i=4");
    let r = h2.finish(later, PATIENCE);
    assert!(
        r.ended && r.body == "burst 4",
        "a stream after the panic: {r:?}"
    );
    let slow = h2.get("/sleep?ms=200");
    let clock = server.clock.as_ref().unwrap();
    assert!(clock.wait_for_sleep(Duration::from_millis(200), PATIENCE));
    let panics = h2.get("/panic-call");
    let r = h2.finish(panics, PATIENCE);
    assert!(r.reset && !r.ended, "the stream whose call panicked: {r:?}");
    clock.advance(Duration::from_millis(200));
    let r = h2.finish(slow, PATIENCE);
    assert!(
        r.ended && r.body == "slept 200",
        "a stream in flight as a call panicked: {r:?}"
    );
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().filter(|p| *p == "/panic").count(),
        2,
        "{seen:?}"
    );
    server.shutdown.trigger(Reason::requested());
    assert!(h2.closed_within(PATIENCE), "HTTP/2 open after the trigger");
    drop((before, after));
    let outcome = server.outcome();
    assert!(outcome.is_drained(), "{outcome}");
}

/// B12: after its last response a connection closes at once when every
/// request it read has ended (its body, sized or chunked, read to its
/// end), so the stop need not wait for a client slow to close; and it
/// lingers while a body is not all read, discarding what the client still
/// sends until it closes its side, so the client reads its response rather
/// than a reset, also after a request that asked for an upgrade it did
/// not get. The clock never moves, so no linger ends by its limit:
/// one that should not have begun holds the stop for good.
pub fn http_b12_the_close_lingers_only_while_a_body_is_not_all_read<A: HttpAdapter>() {
    let config = ServeConfig::default().progress_every(None);
    let server = HttpServer::start::<A>(config, true);
    let connect = || {
        let c = TcpStream::connect(server.addr).unwrap();
        c.set_read_timeout(Some(PATIENCE)).unwrap();
        c
    };
    // Bodies read to their end, sent after their heads. The clients keep
    // their sockets open.
    let mut open = Vec::new();
    for (framing, body) in [
        ("content-length: 5", "hello"),
        (
            "transfer-encoding: chunked",
            "2\r\nhe\r\n3;x=y\r\nllo\r\n0\r\n\r\n",
        ),
    ] {
        let mut c = connect();
        let head =
            format!("POST /read HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{framing}\r\n\r\n");
        c.write_all(head.as_bytes()).unwrap();
        c.write_all(body.as_bytes()).unwrap();
        let mut all = String::new();
        c.read_to_string(&mut all).unwrap();
        assert!(all.starts_with("HTTP/1.1 200"), "{all}");
        assert!(all.ends_with("read 5"), "{all}");
        open.push(c);
    }
    // A body the handler does not read, 4 of its 10 bytes sent; again in
    // a request that asks for an upgrade it does not get (hyper hands such
    // a connection to the upgrade at its end, unshut).
    for upgrade in ["", "Upgrade: h2c\r\n"] {
        let mut c = connect();
        let head = format!(
            "POST /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{upgrade}content-length: 10\r\n\r\nabcd"
        );
        c.write_all(head.as_bytes()).unwrap();
        let mut all = String::new();
        // To the server's end of stream: its close has begun.
        c.read_to_string(&mut all).unwrap();
        assert!(all.starts_with("HTTP/1.1 200"), "{all}");
        // The rest is read and discarded; the close follows the client's.
        let hold = Duration::from_millis(300);
        let what = format!("unread body {upgrade:?}");
        assert_lingers_until_closed(&server.shutdown, &mut c, b"efghij", hold, &what);
    }
    // Nothing else lingers.
    server.shutdown.trigger(Reason::requested());
    let outcome = server.outcome();
    assert!(outcome.is_drained(), "{outcome}");
    drop(open);
}

/// B12 over HTTP/2: an upload the handler answered without reading it to
/// its end may still be arriving when the connection closes, so the close
/// lingers, discarding what the client still sends until it closes its
/// side; also when a later stream came without a body (HTTP/2's streams
/// overlap: a later request says nothing of an earlier upload). The clock
/// never moves, so no linger ends by its limit.
pub fn http_b12_an_http2_upload_left_unread_lingers_past_later_streams<A: HttpAdapter>() {
    let config = ServeConfig::default().progress_every(None);
    let server = HttpServer::start::<A>(config, true);
    let mut h2 = H2::connect(server.addr);
    // 4 bytes of a body the handler does not read, sent unended.
    let upload = h2.post_begun("/healthz", b"abcd");
    let r = h2.finish(upload, PATIENCE);
    assert!(r.ended && r.first_header_byte == Some(0x88), "{r:?}");
    let get = h2.get("/healthz");
    let r = h2.finish(get, PATIENCE);
    assert!(r.ended && r.first_header_byte == Some(0x88), "{r:?}");
    h2.sync();
    server.shutdown.trigger(Reason::requested());
    // GOAWAY, the PING answered, the final GOAWAY, the server's end.
    assert!(h2.closed_within(PATIENCE), "still open after the trigger");
    assert_eq!(h2.goaways.last(), Some(&get), "{:?}", h2.goaways);
    let rest = crate::h2::last_data(upload, b"efghij");
    let hold = Duration::from_millis(300);
    assert_lingers_until_closed(&server.shutdown, h2.socket(), &rest, hold, "HTTP/2 upload");
    let outcome = server.outcome();
    assert!(outcome.is_drained(), "{outcome}");
}

/// B6, B7: a keep-alive connection whose next request's head has begun
/// to arrive when the listener closes (a pooled client reusing it just
/// before the stop, its head split across packets) is not idle: it gets
/// the first request's grace to send the rest, and that request is served
/// whole, with `Connection: close`. Once the grace is over with the head
/// still unfinished, the connection closes, unanswered (its close lingers
/// while the client may still send); the stop drains.
pub fn http_b6_a_request_whose_head_began_before_the_close_is_served<A: HttpAdapter>() {
    let config = ServeConfig::default().progress_every(None);
    let grace = config.first_request_grace;
    let server = HttpServer::start::<A>(config, true);
    // Two pooled connections, one request answered on each, then the
    // start of the next request's head.
    let mut pooled = [1, 2].map(|i| {
        let mut c = BufReader::new(TcpStream::connect(server.addr).unwrap());
        c.get_ref().set_read_timeout(Some(PATIENCE)).unwrap();
        c.get_mut()
            .write_all(format!("GET /burst?i={i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let (status, head) = head(&mut c).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(!head.contains("connection: close"), "{head}");
        let mut body = vec![0; format!("burst {i}").len()];
        c.read_exact(&mut body).unwrap();
        c.get_mut()
            .write_all(format!("GET /burst?i={} HTTP/1.1\r\nHo", i + 10).as_bytes())
            .unwrap();
        delivered(c.get_ref());
        c
    });
    server.shutdown.trigger(Reason::requested());
    // The first sends the rest of its head: served.
    let [first, second] = &mut pooled;
    first.get_mut().write_all(b"st: t\r\n\r\n").unwrap();
    let (status, head) = head(first).expect("the request whose head began was dropped");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(head.contains("connection: close"), "{head}");
    let mut rest = String::new();
    first.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "burst 11");
    // The second sends nothing more: open through the grace, then closed.
    let clock = server.clock.as_ref().unwrap();
    assert!(
        clock.wait_for_sleep_ending_at(grace, PATIENCE),
        "no grace for the rest of the head"
    );
    second
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut byte = [0u8];
    let early = second.read(&mut byte);
    assert!(
        early.as_ref().is_err_and(is_timeout),
        "closed before its grace was over: {early:?}"
    );
    clock.advance(grace);
    second.get_ref().set_read_timeout(Some(PATIENCE)).unwrap();
    let mut after = Vec::new();
    second.read_to_end(&mut after).unwrap();
    assert!(after.is_empty(), "{:?}", String::from_utf8_lossy(&after));
    // Its close lingers (the client may still be sending its head) until
    // the client closes its side.
    drop(pooled);
    let outcome = server.outcome();
    assert!(outcome.is_drained(), "{outcome}");
}

/// B7: the first-request grace bounds the wait for a first request. A
/// connection whose first head is still unfinished when the grace ends
/// (a slow client, or one that never finishes) is closed then, unanswered,
/// and does not hold the stop to the deadline; nor does one that sent too
/// little to tell HTTP/1 from HTTP/2.
pub fn http_b7_a_first_request_unfinished_when_its_grace_ends_is_closed<A: HttpAdapter>() {
    let config = ServeConfig::default().progress_every(None);
    let grace = config.first_request_grace;
    let server = HttpServer::start::<A>(config, true);
    let slow: [&[u8]; 2] = [
        b"GET /burst?i=1 HTTP/1.1\r\nHost: t\r\nX-Slow: ",
        // The start of HTTP/2's preface: hyper-util is still reading it.
        b"PRI * HTTP/2.0\r\n",
    ];
    let mut slow = slow.map(|sent| {
        let mut c = TcpStream::connect(server.addr).unwrap();
        c.write_all(sent).unwrap();
        c
    });
    server.shutdown.trigger(Reason::requested());
    let clock = server.clock.as_ref().unwrap();
    assert!(
        clock.wait_for_sleeps_ending_at(grace, slow.len(), PATIENCE),
        "no first-request grace"
    );
    for c in &mut slow {
        c.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let early = c.read(&mut [0u8]);
        assert!(
            early.as_ref().is_err_and(is_timeout),
            "closed before its grace was over: {early:?}"
        );
    }
    clock.advance(grace);
    for c in &mut slow {
        c.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut after = Vec::new();
        c.read_to_end(&mut after)
            .expect("still open after the grace, its first head unfinished");
        assert!(after.is_empty(), "{:?}", String::from_utf8_lossy(&after));
    }
    // The first one's close lingers (it may still be sending its head)
    // until the client closes its side.
    drop(slow);
    let outcome = server.outcome();
    assert!(outcome.is_drained(), "{outcome}");
}

/// B9 x B16 x hooks: a force of the whole tree cuts an upgraded
/// connection whose handler ignores the stop at once, even while a forced
/// hook elsewhere in the tree still runs: here one of a stage made before
/// the server's (flushing something slowly, say), whose hooks run before
/// the server's. Only the server's cut ends such a connection: its handler
/// is not the server's to drop. The force comes from a second signal (the
/// operator's second Ctrl+C), and from code.
pub fn http_b9_a_slow_forced_hook_elsewhere_does_not_delay_the_cut_of_an_upgrade<A: HttpAdapter>() {
    for by_signal in [true, false] {
        let root = Shutdown::new();
        let early = root.stage("early");
        let (release, blocked) = std::sync::mpsc::channel::<()>();
        let blocked = std::sync::Mutex::new(blocked);
        early.on_forced(move |_| {
            let _ = blocked.lock().unwrap().recv_timeout(PATIENCE);
        });
        let config = ServeConfig::default().progress_every(None);
        let server = HttpServer::start_under::<A>(root.stage("http"), config, true);
        let mut rude = upgrade(server.addr, "/echo");
        assert_eq!(roundtrip(&mut rude, "before"), "before\n");
        let rt = A::runtime();
        let (script, source) = crate::scripted();
        let signals = SignalConfig::default().on_exit(|code| panic!("exited with {code}"));
        rt.spawn(Escalation::new(root.clone(), signals).run(source));
        script.send(Signal::Terminate);
        assert!(root.wait_triggered_until(Instant::now() + PATIENCE));
        assert_eq!(roundtrip(&mut rude, "still"), "still\n");
        let forcer = root.clone();
        let forcing = std::thread::spawn(move || match by_signal {
            true => script.send(Signal::Terminate),
            false => assert!(forcer.force(ForceCause::Requested)),
        });
        let cut = ends_within(&mut rude, Duration::from_secs(2)).is_some();
        release.send(()).unwrap();
        let how = if by_signal { "a second signal" } else { "code" };
        assert!(cut, "forced by {how}: the cut waited for a hook elsewhere");
        forcing.join().unwrap();
        assert!(root.is_forced());
        assert!(!server.outcome().is_drained());
    }
}

/// B13: at the trigger an HTTP/2 connection gets a first GOAWAY (naming
/// no stream yet, 2^31-1) and a PING; a stream the client opens before it
/// answers the PING is served, and the final GOAWAY, sent once it did,
/// names it. A stream opened after the final GOAWAY is not processed
/// (h2 ignores it: its handler never sees it, and it gets no response).
/// The stream in flight at the trigger finishes, then the connection
/// closes and the stop drains.
pub fn http_b13_a_stream_above_the_final_goaway_is_refused_unprocessed<A: HttpAdapter>() {
    let config = ServeConfig::default().progress_every(None);
    let server = HttpServer::start::<A>(config, true);
    let clock = server.clock.as_ref().unwrap();
    let mut h2 = H2::connect(server.addr);
    let slow = h2.get("/sleep?ms=1000");
    assert!(clock.wait_for_sleep_ending_at(Duration::from_millis(1000), PATIENCE));
    server.shutdown.trigger(Reason::requested());
    // Read up to the first GOAWAY, the PING behind it not answered yet.
    assert!(h2.read_until(PATIENCE, |h2| !h2.goaways.is_empty()));
    assert_eq!(
        h2.goaways,
        [(1 << 31) - 1],
        "the first GOAWAY names no stream"
    );
    let between = h2.get("/burst?i=3");
    assert!(
        h2.read_until(PATIENCE, |h2| h2.goaways.len() == 2),
        "no final GOAWAY: {:?}",
        h2.goaways
    );
    assert_eq!(
        h2.goaways[1], between,
        "the final GOAWAY names the last stream served"
    );
    let r = h2.finish(between, PATIENCE);
    assert!(
        r.ended && r.body == "burst 3",
        "the stream between the GOAWAYs: {r:?}"
    );
    let above = h2.get("/burst?i=5");
    // The server answers a PING sent after it once it read it.
    h2.sync();
    clock.advance(Duration::from_millis(1000));
    let r = h2.finish(slow, PATIENCE);
    assert!(
        r.ended && r.body == "slept 1000",
        "the stream in flight: {r:?}"
    );
    assert!(h2.closed_within(PATIENCE), "open after its last stream");
    assert!(!h2.response(above).ended, "{:?}", h2.response(above));
    let seen = server.seen.lock().unwrap().clone();
    assert!(
        !seen.contains(&"/burst?i=5".to_string()),
        "processed: {seen:?}"
    );
    let outcome = server.outcome();
    assert!(outcome.is_drained(), "{outcome}");
}

/// B13 x a client gone quiet: an idle HTTP/2 connection gets GOAWAY at the
/// trigger, and its final GOAWAY (and close) waits for the answer to a
/// PING. A client that never answers (gone behind a NAT, stopped) does not
/// hold the stop to the deadline: the connection closes once the first
/// request's grace has passed with nothing heard from its client and no
/// stream in flight, and the stop drains. One that answers is closed at once; one that answers while its
/// response waits for it to open its flow-control window is alive: it is
/// left alone past the grace, and its response is then sent whole.
pub fn http_b13_an_idle_http2_client_that_never_answers_the_ping_is_closed_after_the_grace<
    A: HttpAdapter,
>() {
    let config = ServeConfig::default().progress_every(None);
    let grace = config.first_request_grace;
    let server = HttpServer::start::<A>(config, true);
    let [mut quiet, mut answering] = [0, 1].map(|_| {
        let mut h2 = H2::connect(server.addr);
        let id = h2.get("/healthz");
        let r = h2.finish(id, PATIENCE);
        assert!(r.ended && r.first_header_byte == Some(0x88), "{r:?}");
        h2
    });
    // All it sent read: nothing more comes from it.
    quiet.sync();
    quiet.answers_pings = false;
    // The first 64 KiB (its window) of a larger response, the rest held.
    let mut slow = H2::connect(server.addr);
    let big = slow.get("/big");
    let window = 65_535;
    let started = slow.read_until(PATIENCE, |h2| h2.response(big).body.len() >= window);
    assert!(started, "{:?}", slow.response(big).body.len());
    server.shutdown.trigger(Reason::requested());
    assert!(
        answering.closed_within(PATIENCE),
        "the client that answers the PING is still open"
    );
    assert!(
        quiet.read_until(PATIENCE, |h2| !h2.goaways.is_empty()),
        "no GOAWAY"
    );
    let clock = server.clock.as_ref().unwrap();
    // It answers the server's PING as it reads; its own PING's answer then
    // says the server read that. (Its GOAWAY may follow an answer to a
    // PING sent before the server saw the trigger: wait for the GOAWAY
    // first.)
    assert!(
        slow.read_until(PATIENCE, |h2| !h2.goaways.is_empty()),
        "no GOAWAY"
    );
    slow.sync();
    assert!(
        clock.wait_for_sleep_ending_at(grace, PATIENCE),
        "no wait bounded by the grace"
    );
    assert!(
        !quiet.closed_within(Duration::from_millis(100)),
        "closed before its grace was over"
    );
    clock.advance(grace);
    assert!(
        quiet.closed_within(PATIENCE),
        "still open after the grace, its PING unanswered"
    );
    assert!(
        !slow.closed_within(Duration::from_millis(100)),
        "a client that answered, its response held for its window, was cut"
    );
    let more = (1 << 31) - 1 - window as u32;
    slow.window_update(0, more);
    slow.window_update(big, more);
    let r = slow.finish(big, PATIENCE);
    assert!(r.ended && r.body.len() == BIG, "{} of {BIG}", r.body.len());
    assert!(slow.closed_within(PATIENCE), "open after its last stream");
    let outcome = server.outcome();
    assert!(outcome.is_drained(), "{outcome}");
}

/// B12, and bad input loses nothing: a request hyper rejects itself (a
/// malformed head: `400`; a head over its size limit: `431`) followed by
/// more bytes than the socket buffers hold gets its answer whole, then
/// the close: the server reads and discards what the client still sends,
/// to its end, so the client's writes all go through and no reset cuts
/// the answer short. Then the stop drains.
pub fn http_b12_a_request_hyper_rejects_gets_its_answer_before_the_close<A: HttpAdapter>() {
    let config = ServeConfig::default().progress_every(None);
    let server = HttpServer::start::<A>(config, true);
    let junk = vec![b'x'; 1 << 20];
    let cases: [(&str, Vec<u8>); 3] = [
        (
            "400",
            b"GET / HTTP/1.1\r\nHost: t\r\nbad header\r\n\r\n".to_vec(),
        ),
        ("400", b"GET /\x01 HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()),
        // Over hyper's limit for a head (about 400 KiB): it is cut short.
        ("431", b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: ".to_vec()),
    ];
    for (status, head) in cases {
        let mut c = TcpStream::connect(server.addr).unwrap();
        c.set_read_timeout(Some(PATIENCE)).unwrap();
        c.set_write_timeout(Some(PATIENCE)).unwrap();
        let mut writer = c.try_clone().unwrap();
        let what = format!("{status} to {:?}", String::from_utf8_lossy(&head));
        let (sent, all) = std::thread::scope(|s| {
            let sender = s.spawn(|| {
                writer.write_all(&head)?;
                writer.write_all(&junk)?;
                // The client is done: the server's linger ends with it.
                writer.shutdown(std::net::Shutdown::Write)
            });
            let mut all = Vec::new();
            let read = c.read_to_end(&mut all).map(|_| all);
            (sender.join().unwrap(), read)
        });
        let all = all.unwrap_or_else(|e| panic!("{what}: the answer was cut: {e}"));
        let all = String::from_utf8_lossy(&all);
        assert!(
            all.starts_with(&format!("HTTP/1.1 {status}")),
            "{what}: answered {all:?}"
        );
        sent.unwrap_or_else(|e| panic!("{what}: the client's sending failed: {e}"));
    }
    server.shutdown.trigger(Reason::requested());
    let outcome = server.outcome();
    assert!(outcome.is_drained(), "{outcome}");
}

/// B12 x B7: a first request hyper rejects (`400`) during the first
/// request's grace gets its answer, and its close lingers while the client
/// may still send. The grace ending meanwhile (the connection, with no
/// request read, is then dropped) does not cut that linger short: the
/// client's writes all go through, and the close ends with the client's.
pub fn http_b12_a_first_request_rejected_in_its_grace_lingers_past_it<A: HttpAdapter>() {
    // A linger longer than the grace, which the clock moves past.
    let config = ServeConfig::default()
        .linger(Duration::from_secs(60))
        .progress_every(None);
    let grace = config.first_request_grace;
    let server = HttpServer::start::<A>(config, true);
    let mut c = TcpStream::connect(server.addr).unwrap();
    c.set_write_timeout(Some(PATIENCE)).unwrap();
    server.shutdown.trigger(Reason::requested());
    let clock = server.clock.as_ref().unwrap();
    assert!(
        clock.wait_for_sleep_ending_at(grace, PATIENCE),
        "no first-request grace"
    );
    // More behind it: the close lingers for what the client still sends.
    let junk = vec![b'x'; 64 << 10];
    c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nbad header\r\n\r\n")
        .unwrap();
    c.write_all(&junk).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    r.get_ref().set_read_timeout(Some(PATIENCE)).unwrap();
    let (status, _) = head(&mut r).expect("an answer");
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");
    // To the server's end of stream: its close has begun, and lingers.
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    clock.advance(grace);
    // Cut short, the connection would end and the server drain at once.
    let hold = Duration::from_millis(200);
    assert!(
        !eventually(hold, || server.has_returned()),
        "the linger ended with the grace"
    );
    let sent = c.write_all(&vec![b'x'; 1 << 20]);
    sent.unwrap_or_else(|e| panic!("the client's sending failed: {e}"));
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let outcome = server.outcome();
    assert!(outcome.is_drained(), "{outcome}");
}

/// B12 x B9: a close that lingers during the stop ends before the stop's
/// deadline, however long its limit: a response already written to a
/// client slow to close its side is no work to force, and the stop ends
/// clean (exit code 0, nothing named). The linger after a response that
/// left its request's body unread ends 25 ms before the deadline; also
/// when it begins during the pre-drain delay, before the drain that
/// enforces the deadline has begun.
pub fn http_b12_a_linger_ends_before_the_stops_deadline<A: HttpAdapter>() {
    let timeout = Duration::from_secs(1);
    for pre_drain in [Duration::ZERO, Duration::from_secs(5)] {
        let config = ServeConfig::default()
            .timeout(timeout)
            .pre_drain(pre_drain)
            .linger(Duration::from_secs(60))
            .progress_every(None);
        let server = HttpServer::start::<A>(config, true);
        let clock = server.clock.as_ref().unwrap();
        let what = format!("pre-drain {pre_drain:?}");
        // Answered after the trigger: before the delay ends, if any.
        let answered = match pre_drain.is_zero() {
            true => Duration::from_millis(500),
            false => pre_drain - Duration::from_millis(500),
        };
        let mut c = TcpStream::connect(server.addr).unwrap();
        c.set_read_timeout(Some(PATIENCE)).unwrap();
        // 4 bytes of a 10-byte body the handler does not read.
        let ms = answered.as_millis();
        let request =
            format!("POST /sleep?ms={ms} HTTP/1.1\r\nHost: t\r\ncontent-length: 10\r\n\r\nabcd");
        c.write_all(request.as_bytes()).unwrap();
        assert!(clock.wait_for_sleep_ending_at(answered, PATIENCE), "{what}");
        server.shutdown.trigger(Reason::requested());
        // The drain's deadline, or the delay before it.
        let armed = if pre_drain.is_zero() {
            timeout
        } else {
            pre_drain
        };
        assert!(clock.wait_for_sleep_ending_at(armed, PATIENCE), "{what}");
        clock.advance(answered);
        let mut all = String::new();
        // To the server's end of stream: its close has begun.
        c.read_to_string(&mut all).unwrap();
        assert!(all.starts_with("HTTP/1.1 200"), "{what}: {all}");
        assert!(all.ends_with(&format!("slept {ms}")), "{what}: {all}");
        let deadline = pre_drain + timeout;
        let end = deadline - Duration::from_millis(25);
        assert!(
            clock.wait_for_sleep_ending_at(end, PATIENCE),
            "{what}: the linger does not end before the deadline"
        );
        if !pre_drain.is_zero() {
            // The delay ends: the listener closes, the drain begins.
            clock.advance(pre_drain - answered);
            assert!(clock.wait_for_sleep_ending_at(deadline, PATIENCE), "{what}");
        }
        assert!(!server.has_returned(), "{what}: no linger");
        clock.advance(end - clock.elapsed());
        let outcome = server.outcome();
        assert!(outcome.is_drained(), "{what}: {outcome}");
        assert_eq!(outcome.exit_code(), 0, "{what}");
        drop(c);
    }
}

/// B6: a response to a request that asked for an upgrade it did not get
/// (`Upgrade: h2c`, answered `200`) reaches its client whole, also when
/// the client reads it slowly and the handler left the request's body
/// unread (hyper then closes the reading side early); so does a later
/// response on the same keep-alive connection, to a request that asked for
/// nothing. hyper keeps that upgrade prepared and hands the connection to
/// it as soon as both sides are done, and what it holds unwritten then is
/// lost unless it was written out first.
pub fn http_b6_a_response_to_a_request_that_asked_for_an_upgrade_is_sent_whole<A: HttpAdapter>() {
    let config = ServeConfig::default().progress_every(None);
    let server = HttpServer::start::<A>(config, true);
    for earlier in [false, true] {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let upgrade = match earlier {
            // Asked for on an earlier request of the connection.
            true => {
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\n\r\n")
                    .unwrap();
                let (status, head) = head(&mut r).expect("a response head");
                assert!(status.starts_with("HTTP/1.1 200"), "{status}");
                assert!(!head.contains("connection: close"), "{head}");
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                r.read_exact(&mut vec![0; len]).unwrap();
                ""
            }
            false => "Upgrade: h2c\r\n",
        };
        // `/big` never reads the body, of which 4 of 10 bytes are sent.
        let big = format!(
            "POST /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{upgrade}content-length: 10\r\n\r\nabcd"
        );
        s.write_all(big.as_bytes()).unwrap();
        // Read slowly: the response keeps the sockets' buffers full, and
        // the server holds the rest of it, its end included.
        let (status, head) = head(&mut r).expect("a response head");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert!(head.contains(&format!("content-length: {BIG}")), "{head}");
        let (mut got, mut buf) = (0, vec![0u8; 64 << 10]);
        loop {
            std::thread::sleep(Duration::from_millis(1));
            match r.read(&mut buf).unwrap() {
                0 => break,
                n => got += n,
            }
        }
        assert_eq!(got, BIG, "the response was cut (asked earlier: {earlier})");
        // The close lingers for the rest of the body; the client closes.
    }
    server.shutdown.trigger(Reason::requested());
    let outcome = server.outcome();
    assert!(outcome.is_drained(), "{outcome}");
}

/// Reads a response head: its status line, and its header lines in lower
/// case, up to the empty line.
pub(crate) fn head(c: &mut BufReader<TcpStream>) -> io::Result<(String, String)> {
    let mut status = String::new();
    if c.read_line(&mut status)? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if c.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            return Ok((status, head));
        }
        head.push_str(&line.to_ascii_lowercase());
    }
}

/// Whether `shutdown` (a server's, or above one) still holds the guard of
/// the connection from `peer` (named `conn PEER`).
pub(crate) fn holds_connection_from(shutdown: &Shutdown, peer: std::net::SocketAddr) -> bool {
    let name = format!(" {peer}");
    let report = shutdown.report();
    let held = report.all_named().iter().any(|g| g.name.ends_with(&name));
    held
}

/// Asserts that `shutdown`'s server keeps the connection of `client`
/// lingering, its end of stream already read: its guard is still held
/// for `hold` (the clock standing still, no linger ends by its limit).
/// Then the client sends `rest` and closes its side, and the linger must
/// end with it.
pub(crate) fn assert_lingers_until_closed(
    shutdown: &Shutdown,
    client: &mut TcpStream,
    rest: &[u8],
    hold: Duration,
    what: &str,
) {
    let addr = client.local_addr().unwrap();
    let held = || holds_connection_from(shutdown, addr);
    assert!(!eventually(hold, || !held()), "{what}: no linger");
    client
        .write_all(rest)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let shut = client.shutdown(std::net::Shutdown::Write);
    shut.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        eventually(PATIENCE, || !held()),
        "{what}: the linger outlived the client's close"
    );
}

/// A `serve` cancelled (dropped, as a `select!` does) before its stop:
/// its listener is gone, and an idle HTTP/1 keep-alive connection it left
/// is closed rather than kept waiting for a listener close that cannot
/// come; a response in flight is marked `Connection: close` (a pooled
/// client does not reuse a connection about to close); an HTTP/2
/// connection gets its GOAWAY and closes, rather than serving on; a
/// later stop of the shutdown then finds nothing waiting.
pub fn http_a_cancelled_serve_closes_its_idle_keep_alive_connections<A: HttpAdapter>() {
    let shutdown = Shutdown::new();
    let s = shutdown.clone();
    let mut server = Cancellable::start(move |listener, cancelled| {
        let rt = TestRuntime::new(A::runtime(), None);
        let svc = TestService {
            rt: rt.clone(),
            ready: graceful_http::Readiness::new(&s),
            seen: Seen::default(),
        };
        let config = ServeConfig::default().progress_every(None);
        let serve = A::serve_http(&rt, listener, &s, config, svc);
        rt.block_on(futures::future::select(serve, cancelled));
        rt
    });
    let mut c = TcpStream::connect(server.addr).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    c.write_all(b"GET /sleep?ms=0 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(c);
    let (status, _) = head(&mut r).expect("a response head");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    // A connection served once (so accepted), then a request in flight
    // across the cancel.
    let mut busy = BufReader::new(TcpStream::connect(server.addr).unwrap());
    busy.get_ref().set_read_timeout(Some(PATIENCE)).unwrap();
    // 2 s: still in flight at the cancel on a loaded machine.
    for path in ["/sleep?ms=0", "/sleep?ms=2000"] {
        let get = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
        busy.get_mut().write_all(get.as_bytes()).unwrap();
        if path == "/sleep?ms=0" {
            let (status, _) = head(&mut busy).expect("a response head");
            assert!(status.starts_with("HTTP/1.1 200"), "{status}");
            let mut body = [0; 7];
            busy.read_exact(&mut body).unwrap();
        }
    }
    delivered(busy.get_ref());
    let mut h2 = H2::connect(server.addr);
    let served = h2.get("/burst?i=1");
    let got = h2.finish(served, PATIENCE);
    assert!(got.ended && got.body == "burst 1", "{got:?}");
    // Read or not yet, the request in flight is answered after the cancel:
    // whether to mark it `close` is read as its response ends.
    server.cancel();
    let mut rest = String::new();
    r.read_to_string(&mut rest)
        .expect("the idle connection is closed, not left waiting");
    assert_eq!(rest, "slept 0");
    let (status, fields) = head(&mut busy).expect("the response in flight");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(fields.contains("connection: close"), "{fields}");
    let mut rest = String::new();
    busy.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "slept 2000");
    assert!(
        h2.closed_within(PATIENCE),
        "HTTP/2 served on after the cancel"
    );
    assert!(
        TcpStream::connect(server.addr).is_err(),
        "the listener is closed"
    );
    shutdown.trigger(Reason::requested());
    assert!(shutdown.wait_drained_until(Instant::now() + PATIENCE));
}

/// B14: the readiness endpoint answers 200 before the trigger and 503
/// during the pre-drain delay, marked `Connection: close`; neither is
/// cacheable (`Cache-Control: no-store`).
pub fn http_b14_readiness_200_then_503<A: HttpAdapter>() {
    let config = ServeConfig::default()
        .pre_drain(Duration::from_secs(5))
        .progress_every(None);
    let server = HttpServer::start::<A>(config, true);
    let get = || {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut r = BufReader::new(s);
        let mut status = String::new();
        r.read_line(&mut status).unwrap();
        let mut head = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        (status, head)
    };
    let (status, head) = get();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(!head.contains("connection: close"), "{head}");
    // Never cached: a probe must see the state of now.
    assert!(head.contains("cache-control: no-store"), "{head}");
    assert!(head.contains("content-type: text/plain"), "{head}");
    server.shutdown.trigger(Reason::requested());
    let (status, head) = get();
    assert!(status.starts_with("HTTP/1.1 503"), "{status}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(head.contains("cache-control: no-store"), "{head}");
    // The 503 comes from the trigger alone: the delay's timer may not be
    // armed yet, and moving the clock before it is would leave it 5 s
    // ahead of a clock that never moves again.
    let clock = server.clock.as_ref().unwrap();
    assert!(clock.wait_for_sleep_ending_at(Duration::from_secs(5), PATIENCE));
    clock.advance(Duration::from_secs(5));
    assert!(server.outcome().is_drained());
}

/// HTTP combinations no single scenario covers, drawn from seeds: see
/// [`crate::random_http`]. The same seeds as the TCP randomized stop.
pub fn http_randomized_stop_over_fixed_seeds<A: HttpAdapter>() {
    crate::random::assert_fixed_coverage(&crate::random_http::run_http_seeds::<A>());
}

#[doc(hidden)]
#[macro_export]
macro_rules! __http_scenario_tests {
    (($adapter:ty) $($name:ident,)*) => {
        $(
            #[test]
            fn $name() {
                $crate::http::$name::<$adapter>();
            }
        )*
    };
}

/// The core suite ([`suite!`](crate::suite)) plus the HTTP scenarios, for
/// an adapter crate with `http::serve_on`.
#[macro_export]
macro_rules! http_suite {
    ($rt:ident) => {
        $crate::suite!($rt);

        impl $crate::http::HttpAdapter for ContractAdapter {
            fn serve_http<R, S>(
                rt: &R,
                listener: ::std::net::TcpListener,
                shutdown: &$crate::__private::graceful_core::Shutdown,
                config: $crate::__private::graceful_core::ServeConfig,
                service: S,
            ) -> $crate::__private::futures::future::BoxFuture<
                'static,
                ::std::io::Result<$crate::__private::graceful_core::Outcome>,
            >
            where
                R: $crate::__private::graceful_core::Runtime,
                S: $crate::__private::graceful_http::HttpService,
            {
                let rt = rt.clone();
                let shutdown = shutdown.clone();
                Box::pin(async move {
                    $rt::http::serve_on(&rt, listener, &shutdown, config, service).await
                })
            }
        }

        $crate::__for_each_http_scenario!(__http_scenario_tests!(ContractAdapter));
    };
}
