//! The HTTP examples as real processes, driven by hyper's client (HTTP/1.1
//! keep-alive and HTTP/2), raw sockets and curl, with real signals. The same
//! tests run against `tokio_http`, `smol_http` and `std_http`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::load::{read_ids, runtime, Counts, Load};
use common::{refused_within, run_to_exit, Service, PATIENCE};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper::header::{CONNECTION, HOST};
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn closes(&self) -> bool {
        self.headers
            .get(CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
    }
}

type H1 = http1::SendRequest<Empty<Bytes>>;
type H2 = http2::SendRequest<Empty<Bytes>>;

async fn h1(addr: SocketAddr) -> std::io::Result<H1> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn h2(addr: SocketAddr) -> std::io::Result<H2> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn request(addr: SocketAddr, path: &str) -> Request<Empty<Bytes>> {
    Request::get(path)
        .header(HOST, addr.to_string())
        .body(Empty::new())
        .unwrap()
}

async fn collect(res: hyper::Response<hyper::body::Incoming>) -> Result<Reply, hyper::Error> {
    let (parts, body) = res.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// `GET /` on a new connection to `s`, spawned on `rt`; returns once the
/// request is in flight (the example logged it).
fn get_in_flight(
    rt: &tokio::runtime::Runtime,
    s: &Service,
) -> tokio::task::JoinHandle<Result<Reply, hyper::Error>> {
    let addr = s.addr;
    let in_flight = rt.spawn(async move {
        let mut c = h1(addr).await.unwrap();
        get1(&mut c, addr, "/").await
    });
    s.wait_log("GET /\n", 1);
    in_flight
}

async fn get1(sender: &mut H1, addr: SocketAddr, path: &str) -> Result<Reply, hyper::Error> {
    sender.ready().await?;
    let res = sender.send_request(request(addr, path)).await?;
    collect(res).await
}

async fn get2(sender: &mut H2, addr: SocketAddr, path: &str) -> Result<Reply, hyper::Error> {
    sender.ready().await?;
    let uri = format!("http://{addr}{path}");
    let req = Request::get(uri).body(Empty::new()).unwrap();
    let res = sender.send_request(req).await?;
    collect(res).await
}

/// A raw HTTP/1.1 request on a plain socket; returns the response head and
/// body (Content-Length bodies only).
fn raw_get(stream: &mut TcpStream, path: &str) -> (String, String) {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).expect("response head"),
            1,
            "closed early"
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap().to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    (head, String::from_utf8(body).unwrap())
}

/// Whether the server closes `stream` within `within` (end-of-stream or
/// reset, nothing read).
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 1];
    match stream.read(&mut b) {
        Ok(0) => true,
        Ok(_) => panic!("unexpected data"),
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

fn in_flight_request_completes_with_connection_close(example: &str) {
    let mut s = Service::start(example, &["--delay-ms", "1000"]);
    let rt = runtime();
    let reply = rt.block_on(async {
        let mut c = h1(s.addr).await.unwrap();
        let addr = s.addr;
        let req = tokio::spawn(async move { get1(&mut c, addr, "/").await });
        s.wait_log("GET /\n", 1);
        s.signal("TERM");
        req.await.unwrap()
    });
    let reply = reply.expect("the in-flight request is answered");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "hello\n");
    assert!(
        reply.closes(),
        "Connection: close expected: {:?}",
        reply.headers
    );
    assert_eq!(s.exit_code(), 0, "{}", s.stderr());
    // Exactly one line on stdout; the logs went to stderr.
    assert_eq!(s.stdout_after_the_first_line(), Vec::<String>::new());
}

fn new_connects_refused_after_the_signal(example: &str) {
    let mut s = Service::start(example, &["--delay-ms", "1000"]);
    let rt = runtime();
    let in_flight = get_in_flight(&rt, &s);
    s.signal("TERM");
    assert!(
        refused_within(s.addr, Duration::from_millis(500)),
        "still accepting"
    );
    let reply = rt.block_on(in_flight).unwrap().expect("answered");
    assert_eq!(reply.body, "hello\n");
    assert_eq!(s.exit_code(), 0);
}

fn idle_keep_alive_connection_closed_at_once(example: &str) {
    let mut s = Service::start(example, &[]);
    let mut idle = TcpStream::connect(s.addr).unwrap();
    let (head, body) = raw_get(&mut idle, "/healthz");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    assert_eq!(body, "ok\n");
    let t0 = Instant::now();
    s.signal("TERM");
    assert!(closed_within(&mut idle, PATIENCE));
    let took = t0.elapsed();
    assert!(
        took < Duration::from_millis(300),
        "idle close took {took:?}"
    );
    assert_eq!(s.exit_code(), 0);
}

/// The process's open descriptors.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// An idle keep-alive connection costs the server one descriptor, its
/// socket, on every adapter (std_http's connection threads included), and
/// all of them close at the signal.
fn idle_connections_cost_one_descriptor_each(example: &str) {
    const N: usize = 64;
    idle_connections_cost_one_each(
        example,
        N,
        "descriptors",
        descriptors,
        Duration::ZERO,
        |added| (N..N + 4).contains(&added),
    );
}

/// A stop while out of descriptors, with idle keep-alive connections
/// (parked off their threads, on std_http) and more connections queued
/// than the process can accept: the backlog's drain gives up at its
/// EMFILE, every idle connection closes cleanly (an end-of-stream, not a
/// reset), and the process exits 0 at once.
fn stop_while_out_of_descriptors_closes_idle_connections(example: &str) {
    let mut s = Service::start_with_few_descriptors(example, &[]);
    // Idle after one request each. The pause below lets std_http park
    // them (10 ms idle); nothing outside shows a park, which
    // `std_http_idle_connections_give_their_threads_back` checks by the
    // threads it frees.
    let mut idle: Vec<TcpStream> = (0..24)
        .map(|_| {
            let mut c = TcpStream::connect(s.addr).unwrap();
            let (head, _) = raw_get(&mut c, "/healthz");
            assert!(head.starts_with("http/1.1 200"), "{head}");
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    // Each sends a request; those past the descriptors wait in the backlog.
    let flood: Vec<TcpStream> = (0..80)
        .filter_map(|_| {
            let mut c = TcpStream::connect(s.addr).ok()?;
            c.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
                .ok()?;
            Some(c)
        })
        .collect();
    s.wait_log("accept failed", 1);
    let t0 = Instant::now();
    s.signal("TERM");
    for c in &mut idle {
        c.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest)
            .expect("an end-of-stream, not a reset");
        assert!(rest.is_empty(), "{rest:?}");
    }
    let code = s.exit_code();
    let took = t0.elapsed();
    let log = s.stderr();
    assert_eq!(code, 0, "{log}");
    assert!(
        took < Duration::from_secs(2),
        "exited {took:?} after the signal"
    );
    assert!(
        log.contains("out of descriptors while taking the backlog"),
        "{log}"
    );
    // Its spare descriptor let go, it counted what it left.
    let left = common::could_not_take(&log);
    assert!(left.is_some_and(|n| n > 0), "{log}");
    drop(flood);
}

/// std_http: a connection idle past the runtime's parking delay (10 ms)
/// gives its thread back, so connections opened one after another share
/// a few threads instead of one each; a parked connection still serves
/// its next request, and closes at the signal.
#[test]
fn std_http_idle_connections_give_their_threads_back() {
    let threads = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .count()
    };
    // Well past the parking delay: a connection's thread is free for the
    // next one.
    let pause = Duration::from_millis(100);
    const N: usize = 32;
    idle_connections_cost_one_each("std_http", N, "threads", threads, pause, |added| {
        added < N / 2
    });
}

/// Opens `n` idle keep-alive connections one by one, `pause` after each,
/// and checks what they added to the server's `count` with `ok`;
/// then each answers a second request, and all close at the signal.
fn idle_connections_cost_one_each(
    example: &str,
    n: usize,
    what: &str,
    count: impl Fn(u32) -> usize,
    pause: Duration,
    ok: impl Fn(usize) -> bool,
) {
    let mut s = Service::start(example, &[]);
    // Warm up: first-use descriptors and threads (the runtime's).
    let mut first = TcpStream::connect(s.addr).unwrap();
    raw_get(&mut first, "/healthz");
    std::thread::sleep(Duration::from_millis(100));
    let before = count(s.pid());
    let mut idle: Vec<TcpStream> = (0..n)
        .map(|_| {
            let mut c = TcpStream::connect(s.addr).unwrap();
            let (head, _) = raw_get(&mut c, "/healthz");
            assert!(head.starts_with("http/1.1 200"), "{head}");
            std::thread::sleep(pause);
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let added = count(s.pid()).saturating_sub(before);
    assert!(ok(added), "{n} idle connections added {added} {what}");
    for c in &mut idle {
        let (head, _) = raw_get(c, "/healthz");
        assert!(head.starts_with("http/1.1 200"), "again: {head}");
    }
    std::thread::sleep(Duration::from_millis(100));
    s.signal("TERM");
    for c in &mut idle {
        assert!(closed_within(c, PATIENCE));
    }
    assert!(closed_within(&mut first, PATIENCE));
    assert_eq!(s.exit_code(), 0);
}

fn deadline_forces_and_exits_1_near_the_deadline(example: &str) {
    let mut s = Service::start(example, &["--delay-ms", "10000", "--timeout-ms", "700"]);
    let rt = runtime();
    let stuck = get_in_flight(&rt, &s);
    let t0 = Instant::now();
    s.signal("TERM");
    let code = s.exit_code();
    let took = t0.elapsed();
    assert_eq!(code, 1, "{}", s.stderr());
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(2200),
        "exited after {took:?}"
    );
    assert!(
        rt.block_on(stuck).unwrap().is_err(),
        "the forced request is cut"
    );
    let log = s.stderr();
    assert!(log.contains("what was left"), "{log}");
    assert!(
        log.contains("conn 127.0.0.1:"),
        "the report names the connection: {log}"
    );
}

fn second_signal_exits_with_128_plus_signo(example: &str, signal: &str, code: i32) {
    let mut s = Service::start(example, &["--delay-ms", "10000"]);
    let rt = runtime();
    let _stuck = get_in_flight(&rt, &s);
    s.signal(signal);
    // Taken before the second is sent: two pending alike are one.
    s.wait_log(&format!("SIG{signal} received"), 1);
    assert!(
        s.exit_within(Duration::from_millis(300)).is_none(),
        "draining"
    );
    s.signal(signal);
    s.assert_exit_forced_by_a_second(signal, code);
}

/// An operator's second signal during the pre-drain delay (a second
/// `kubectl delete`, Ctrl+C after SIGTERM): the stop is forced at once,
/// without waiting for the delay's end, the request in flight is cut and
/// named, and the process exits 128 + the second signal's number.
fn second_signal_during_pre_drain_forces_at_once(example: &str) {
    let args = ["--delay-ms", "10000", "--pre-drain-ms", "5000"];
    let mut s = Service::start(example, &args);
    let rt = runtime();
    let addr = s.addr;
    let stuck = get_in_flight(&rt, &s);
    s.signal("TERM");
    s.wait_log("SIGTERM received", 1);
    let t0 = Instant::now();
    s.signal("INT");
    s.assert_exit_forced_by_a_second("INT", 130);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(3), "exited after {took:?}");
    assert!(
        rt.block_on(stuck).unwrap().is_err(),
        "the forced request is cut"
    );
    assert!(refused_within(addr, Duration::from_secs(1)));
}

fn http2_stream_completes_after_goaway(example: &str) {
    let mut s = Service::start(example, &["--delay-ms", "1000"]);
    let rt = runtime();
    let addr = s.addr;
    let (reply, after) = rt.block_on(async {
        let c = h2(addr).await.unwrap();
        let mut first = c.clone();
        let in_flight = tokio::spawn(async move { get2(&mut first, addr, "/").await });
        s.wait_log("GET /\n", 1);
        s.signal("TERM");
        let reply = in_flight.await.unwrap();
        // The connection got GOAWAY and ended with its last stream: a new
        // stream on it fails (hyper's client may refuse it itself; the
        // server's refusal of a stream above its final GOAWAY is the
        // conformance scenario `http_b13_a_stream_above_the_final_goaway_…`).
        let mut again = c.clone();
        let after = get2(&mut again, addr, "/healthz").await;
        (reply, after)
    });
    let reply = reply.expect("the open stream finishes");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "hello\n");
    assert!(
        after.is_err(),
        "a stream after the connection ended must fail: {after:?}"
    );
    assert_eq!(s.exit_code(), 0);
}

fn pre_drain_keeps_serving_then_refuses(example: &str) {
    let mut s = Service::start(example, &["--delay-ms", "50", "--pre-drain-ms", "1500"]);
    let rt = runtime();
    let addr = s.addr;
    let before = rt.block_on(async {
        let mut c = h1(addr).await.unwrap();
        get1(&mut c, addr, "/healthz").await.unwrap()
    });
    assert_eq!(before.status, 200);
    let t0 = Instant::now();
    s.signal("TERM");
    s.wait_log("SIGTERM received", 1);
    let (ready, hello) = rt.block_on(async {
        let mut c = h1(addr).await.expect("still accepting during pre-drain");
        let ready = get1(&mut c, addr, "/healthz").await.unwrap();
        let mut c = h1(addr).await.expect("still accepting during pre-drain");
        let hello = get1(&mut c, addr, "/").await.unwrap();
        (ready, hello)
    });
    assert_eq!(ready.status, 503, "readiness fails during pre-drain");
    assert!(ready.closes());
    assert_eq!(hello.status, 200);
    assert_eq!(hello.body, "hello\n");
    assert!(hello.closes(), "every response closes during pre-drain");
    assert!(refused_within(addr, Duration::from_secs(3)));
    let refused_after = t0.elapsed();
    assert!(
        refused_after >= Duration::from_millis(1400),
        "refused after {refused_after:?}, before the pre-drain ended"
    );
    assert_eq!(s.exit_code(), 0);
}

/// The combinations a rollout behind a pooling load balancer makes of the
/// pre-drain delay: a keep-alive connection idle at the signal is reused a
/// moment later, and a connection opened during the delay carries a
/// request slower than the first-request grace. Both get their whole
/// response (marked `Connection: close`).
fn pre_drain_serves_pooled_reuse_and_slow_requests(example: &str) {
    let mut s = Service::start(example, &["--delay-ms", "1500", "--pre-drain-ms", "3000"]);
    let rt = runtime();
    let addr = s.addr;
    let mut pooled = rt.block_on(async {
        let mut c = h1(addr).await.unwrap();
        assert_eq!(get1(&mut c, addr, "/healthz").await.unwrap().status, 200);
        c
    });
    s.signal("TERM");
    s.wait_log("SIGTERM received", 1);
    let (reused, slow) = rt.block_on(async {
        // A pool picks its idle connection up a moment after the signal.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let reused = get1(&mut pooled, addr, "/healthz").await;
        let mut fresh = h1(addr).await.expect("still accepting during pre-drain");
        // 1.5 s to answer: longer than the 1 s first-request grace.
        let slow = get1(&mut fresh, addr, "/").await;
        (reused, slow)
    });
    let reused = reused.expect("the pooled connection was closed during the pre-drain delay");
    assert_eq!(reused.status, 503);
    assert!(reused.closes());
    let slow = slow.expect("a slow request on a connection opened during pre-drain was lost");
    assert_eq!(slow.body, "hello\n");
    assert!(slow.closes());
    assert_eq!(s.exit_code(), 0);
}

/// After its last response the process exits at once, even when the client
/// is slow to close its side: the close lingers only when the client may
/// still be sending.
fn exits_promptly_after_the_last_response(example: &str) {
    exits_promptly_after(example, "\r\n");
}

/// The same after a request whose body came whole with it, which the
/// handler never read (hyper read it): nothing more is on its way, so the
/// close does not linger either.
fn exits_promptly_after_a_request_whose_body_came_whole(example: &str) {
    exits_promptly_after(example, "content-length: 5\r\n\r\nhello");
}

/// Sends `GET /` with `rest` after its `host` header (more headers, the
/// empty line, a body), signals mid-request, reads the response and keeps
/// the socket open: the process must exit at once.
fn exits_promptly_after(example: &str, rest: &str) {
    let mut s = Service::start(example, &["--delay-ms", "300"]);
    let mut client = TcpStream::connect(s.addr).unwrap();
    client
        .write_all(format!("GET / HTTP/1.1\r\nhost: {}\r\n{rest}", s.addr).as_bytes())
        .unwrap();
    s.wait_log("GET /", 1);
    s.signal("TERM");
    let mut response = Vec::new();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 1024];
    while !response.ends_with(b"hello\n") {
        let n = client.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "no complete response: {:?}",
            String::from_utf8_lossy(&response)
        );
        response.extend_from_slice(&buf[..n]);
    }
    let answered = Instant::now();
    // The client keeps its socket open.
    assert_eq!(s.exit_within(PATIENCE), Some(0));
    let exit = answered.elapsed();
    // A needless linger ends no sooner than 500 ms after the response was
    // written; the bound leaves an ordinary exit 400 ms on a busy machine.
    assert!(
        exit < Duration::from_millis(400),
        "exited {exit:?} after its last response (a 500 ms linger it did not need?)"
    );
    drop(client);
}

/// The protective linger still works: a request whose body the handler
/// never read, still arriving when the response (`Connection: close`, the
/// stop began meanwhile) is written. Closing on those unread bytes would
/// reset the connection under the client; the server reads and discards
/// them instead, so the client finishes sending, reads the whole response
/// and sees a clean end.
fn unread_request_body_is_drained_before_the_close(example: &str) {
    const BODY: usize = 4 << 20;
    let mut s = Service::start(example, &["--delay-ms", "300"]);
    let mut client = TcpStream::connect(s.addr).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.set_write_timeout(Some(PATIENCE)).unwrap();
    client
        .write_all(
            format!(
                "GET / HTTP/1.1\r\nhost: {}\r\ncontent-length: {BODY}\r\n\r\n",
                s.addr
            )
            .as_bytes(),
        )
        .unwrap();
    s.wait_log("GET /", 1);
    s.signal("TERM");
    // The handler answers without reading the body: the writes block
    // until the server reads (discards) what is left.
    let mut writer = client.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 << 10];
        for _ in 0..BODY / chunk.len() {
            writer.write_all(&chunk)?;
        }
        Ok::<_, std::io::Error>(())
    });
    let sent = sending.join().unwrap();
    let mut response = Vec::new();
    let end = client.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    assert!(
        sent.is_ok(),
        "sending the body failed: {sent:?}; got {text:?}"
    );
    assert!(
        end.is_ok(),
        "the connection was reset: {end:?}; got {text:?}"
    );
    assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text:?}"
    );
    assert!(text.ends_with("hello\n"), "{text:?}");
    assert_eq!(s.exit_within(PATIENCE), Some(0));
}

/// Reads HTTP/2 frames from `stream` until one of type `kind` arrives;
/// returns whether it did before `within`.
fn h2_frame_within(stream: &mut TcpStream, kind: u8, within: Duration) -> bool {
    let until = Instant::now() + within;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        let mut head = [0u8; 9];
        if stream.read_exact(&mut head).is_err() {
            return false;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        if stream.read_exact(&mut payload).is_err() {
            return false;
        }
        if head[3] == kind {
            return true;
        }
    }
}

/// Sends the HTTP/2 preface and an empty SETTINGS frame on `stream`, and
/// reads until the server's SETTINGS.
fn h2_preface(stream: &mut TcpStream) {
    const SETTINGS: u8 = 0x4;
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    assert!(h2_frame_within(stream, SETTINGS, PATIENCE), "no SETTINGS");
}

/// Asserts that a GOAWAY arrives on `stream` after the 1 s first-request
/// grace that follows `since`, the moment of `what`, and within 1.5 s.
fn assert_goaway_after_the_grace(stream: &mut TcpStream, since: Instant, what: &str) {
    const GOAWAY: u8 = 0x7;
    let within = Duration::from_millis(1500);
    let left = within.saturating_sub(since.elapsed());
    assert!(
        h2_frame_within(stream, GOAWAY, left) && since.elapsed() < within,
        "no GOAWAY within {within:?} of {what}"
    );
    let at = since.elapsed();
    assert!(
        at >= Duration::from_millis(900),
        "GOAWAY {at:?} after {what}, before the grace"
    );
}

/// An HTTP/2 connection that has not sent a request yet is known as one by
/// its preface: from the signal on it gets its GOAWAY as soon as its
/// first-request grace (1 s) is over, even during the pre-drain delay, so
/// its client moves to another instance early.
fn idle_http2_connection_gets_goaway_during_the_pre_drain(example: &str) {
    let mut s = Service::start(example, &["--pre-drain-ms", "3000"]);
    let mut c = TcpStream::connect(s.addr).unwrap();
    h2_preface(&mut c);
    let t0 = Instant::now();
    s.signal("TERM");
    assert_goaway_after_the_grace(&mut c, t0, "the signal (1 s grace; pre-drain is 3 s)");
    // A client with no stream open closes on GOAWAY.
    drop(c);
    assert_eq!(s.exit_within(PATIENCE), Some(0));
}

/// An HTTP/2 connection opened during the pre-drain delay gets its GOAWAY
/// once it is known as HTTP/2 (by its preface) and its first-request grace
/// is over, not when the listener closes: its client moves to another
/// instance, as an HTTP/1 client does after a `Connection: close`
/// response.
fn http2_connection_opened_during_pre_drain_gets_goaway_after_its_grace(example: &str) {
    let mut s = Service::start(example, &["--pre-drain-ms", "3000"]);
    s.signal("TERM");
    s.wait_log("SIGTERM received", 1);
    let mut c = TcpStream::connect(s.addr).unwrap();
    // Its first bytes come after the server first read it (with all
    // likelihood): the protocol is unknown when the stop is first polled.
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    h2_preface(&mut c);
    assert_goaway_after_the_grace(
        &mut c,
        t0,
        "the preface (1 s grace; the pre-drain has 2.9 s left)",
    );
    drop(c);
    assert_eq!(s.exit_within(PATIENCE), Some(0));
}

/// An HTTP/2 connection opened during the pre-drain delay that sends a
/// request gets its GOAWAY with that request in flight: the request is
/// answered, and the connection ends after it, before both its
/// first-request grace and the listener's close.
fn http2_connection_opened_during_pre_drain_ends_after_its_first_request(example: &str) {
    let mut s = Service::start(example, &["--delay-ms", "50", "--pre-drain-ms", "3000"]);
    s.signal("TERM");
    s.wait_log("SIGTERM received", 1);
    let rt = runtime();
    let addr = s.addr;
    let (reply, ended) = rt.block_on(async {
        let t0 = Instant::now();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Its first bytes come after the server first read it (with all
        // likelihood): the protocol is unknown when the stop is first polled.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (mut sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
        let conn = tokio::spawn(conn);
        let reply = get2(&mut sender, addr, "/").await;
        let ended = tokio::time::timeout(PATIENCE, conn).await;
        (reply, ended.map(|_| t0.elapsed()))
    });
    let reply = reply.expect("a request on a connection opened during the pre-drain");
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (StatusCode::OK, "hello\n")
    );
    let ended = ended.expect("the connection was never ended");
    assert!(
        ended < Duration::from_millis(800),
        "ended {ended:?} after its connect (the grace is 1 s, the pre-drain 3 s)"
    );
    assert_eq!(s.exit_code(), 0);
}

fn silent_connection_gets_the_first_request_grace(example: &str) {
    let mut s = Service::start(example, &["--delay-ms", "50"]);
    let mut late = TcpStream::connect(s.addr).unwrap();
    let mut silent = TcpStream::connect(s.addr).unwrap();
    let t0 = Instant::now();
    s.signal("TERM");
    // Sent after the trigger, within the grace.
    s.wait_log("SIGTERM received", 1);
    let (head, body) = raw_get(&mut late, "/");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(body, "hello\n");
    assert!(closed_within(&mut silent, PATIENCE));
    let closed = t0.elapsed();
    assert!(
        closed >= Duration::from_millis(900) && closed < Duration::from_millis(2500),
        "a silent connection is closed after its 1 s grace, not {closed:?}"
    );
    assert_eq!(s.exit_code(), 0);
}

fn curl_http1_and_h2c_complete_across_the_signal(example: &str) {
    let mut s = Service::start(example, &["--delay-ms", "1000"]);
    let url = format!("http://{}/", s.addr);
    let curl = |extra: &[&str]| {
        std::process::Command::new("curl")
            .args(["-sS", "-i", "--max-time", "20"])
            .args(extra)
            .arg(&url)
            .output()
            .expect("curl")
    };
    let (h1_out, h2_out) = std::thread::scope(|scope| {
        let a = scope.spawn(|| curl(&[]));
        let b = scope.spawn(|| curl(&["--http2-prior-knowledge"]));
        s.wait_log("GET /\n", 2);
        s.signal("TERM");
        (a.join().unwrap(), b.join().unwrap())
    });
    let h1_text = String::from_utf8_lossy(&h1_out.stdout).to_ascii_lowercase();
    let h2_text = String::from_utf8_lossy(&h2_out.stdout).to_ascii_lowercase();
    assert!(h1_out.status.success(), "{h1_text}");
    assert!(h1_text.starts_with("http/1.1 200"), "{h1_text}");
    assert!(h1_text.contains("connection: close"), "{h1_text}");
    assert!(h1_text.ends_with("hello\n"), "{h1_text}");
    assert!(h2_out.status.success(), "{h2_text}");
    assert!(h2_text.starts_with("http/2 200"), "{h2_text}");
    assert!(h2_text.ends_with("hello\n"), "{h2_text}");
    assert_eq!(s.exit_code(), 0);
}

fn load_of_32_keep_alive_clients_loses_no_request_the_server_read(example: &str) {
    let mut s = Service::start(example, &["--delay-ms", "20"]);
    let rt = runtime();
    let load = Load::start(&rt, s.addr, 32);
    std::thread::sleep(Duration::from_millis(1000));
    s.signal("TERM");
    assert_eq!(s.exit_code(), 0, "{}", s.stderr());
    // The clients stop on their own once connects are refused.
    let Counts {
        answered, failed, ..
    } = load.stop(&rt);

    // What the server read: the ids it logged when a request reached it.
    let read = read_ids(&s.stderr());
    let sent = answered.len() + failed.len();
    println!(
        "{example} load: sent {sent}, answered {}, failed {} (read by the server: {})",
        answered.len(),
        failed.len(),
        read.len()
    );
    assert!(answered.len() > 200, "too little load: {}", answered.len());
    let lost: Vec<_> = failed.iter().filter(|(id, _)| read.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "requests the server read but did not answer: {lost:?}"
    );
    assert!(
        read.is_subset(&answered),
        "every request the server read was answered"
    );
    assert!(
        answered.is_subset(&read),
        "answers only for requests the server read"
    );
}

/// A rollout's stop with a pre-drain delay under steady keep-alive load:
/// during the delay every response is marked `Connection: close`, so the
/// clients move to new connections (still accepted) before the listener
/// closes, and no request fails, not even a retryable one: no request on a
/// reused connection (the pooled-reuse race a pre-drain exists for), and no
/// first request on a connection the kernel completed in the instant
/// between the server's last accept and its listener's close (the listener
/// completes no handshake once it starts to close; such a client is
/// refused instead, and counted apart).
fn pre_drain_load_of_32_keep_alive_clients_fails_no_request(example: &str) {
    let mut s = Service::start(example, &["--delay-ms", "20", "--pre-drain-ms", "500"]);
    let rt = runtime();
    let load = Load::start(&rt, s.addr, 32);
    std::thread::sleep(Duration::from_millis(700));
    s.signal("TERM");
    assert_eq!(s.exit_code(), 0, "{}", s.stderr());
    let Counts {
        answered,
        failed,
        failed_first,
        refused,
        ..
    } = load.stop(&rt);
    let read = read_ids(&s.stderr());
    println!(
        "{example} pre-drain load: answered {}, failed {} (first on a new connection: {}), \
         connects refused {refused}",
        answered.len(),
        failed.len(),
        failed_first.len()
    );
    assert!(answered.len() > 200, "too little load: {}", answered.len());
    let on_reuse: Vec<_> = failed
        .iter()
        .filter(|(id, _)| !failed_first.contains(id))
        .collect();
    assert!(
        on_reuse.is_empty(),
        "requests on reused connections failed: {on_reuse:?}"
    );
    let lost: Vec<_> = failed.iter().filter(|(id, _)| read.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "requests the server read but did not answer: {lost:?}"
    );
    assert!(failed.is_empty(), "requests failed: {failed:?}");
}

fn malformed_flags_exit_2_with_a_message(example: &str) {
    for args in [
        &["--pre-drain-ms", "-1"][..],
        &["--restart-signal", "SIGTERM"],
        &["--addr", "127.0.0.1"],
        &["extra"],
    ] {
        let (code, err) = run_to_exit(example, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("usage:"), "{args:?}: {err}");
    }
}

macro_rules! http_tests {
    ($($example:ident),*) => {$(
        mod $example {
            #[test]
            fn in_flight_request_completes_with_connection_close() {
                super::in_flight_request_completes_with_connection_close(stringify!($example));
            }
            #[test]
            fn new_connects_refused_after_the_signal() {
                super::new_connects_refused_after_the_signal(stringify!($example));
            }
            #[test]
            fn idle_keep_alive_connection_closed_at_once() {
                super::idle_keep_alive_connection_closed_at_once(stringify!($example));
            }
            #[test]
            fn deadline_forces_and_exits_1_near_the_deadline() {
                super::deadline_forces_and_exits_1_near_the_deadline(stringify!($example));
            }
            #[test]
            fn second_sigterm_exits_143() {
                super::second_signal_exits_with_128_plus_signo(stringify!($example), "TERM", 143);
            }
            #[test]
            fn second_sigint_exits_130() {
                super::second_signal_exits_with_128_plus_signo(stringify!($example), "INT", 130);
            }
            #[test]
            fn second_signal_during_pre_drain_forces_at_once() {
                super::second_signal_during_pre_drain_forces_at_once(stringify!($example));
            }
            #[test]
            fn http2_stream_completes_after_goaway() {
                super::http2_stream_completes_after_goaway(stringify!($example));
            }
            #[test]
            fn pre_drain_keeps_serving_then_refuses() {
                super::pre_drain_keeps_serving_then_refuses(stringify!($example));
            }
            #[test]
            fn pre_drain_serves_pooled_reuse_and_slow_requests() {
                super::pre_drain_serves_pooled_reuse_and_slow_requests(stringify!($example));
            }
            #[test]
            fn exits_promptly_after_the_last_response() {
                super::exits_promptly_after_the_last_response(stringify!($example));
            }
            #[test]
            fn exits_promptly_after_a_request_whose_body_came_whole() {
                super::exits_promptly_after_a_request_whose_body_came_whole(stringify!($example));
            }
            #[test]
            fn unread_request_body_is_drained_before_the_close() {
                super::unread_request_body_is_drained_before_the_close(stringify!($example));
            }
            #[test]
            fn idle_http2_connection_gets_goaway_during_the_pre_drain() {
                super::idle_http2_connection_gets_goaway_during_the_pre_drain(stringify!($example));
            }
            #[test]
            fn http2_connection_opened_during_pre_drain_gets_goaway_after_its_grace() {
                super::http2_connection_opened_during_pre_drain_gets_goaway_after_its_grace(
                    stringify!($example),
                );
            }
            #[test]
            fn http2_connection_opened_during_pre_drain_ends_after_its_first_request() {
                super::http2_connection_opened_during_pre_drain_ends_after_its_first_request(
                    stringify!($example),
                );
            }
            #[test]
            fn silent_connection_gets_the_first_request_grace() {
                super::silent_connection_gets_the_first_request_grace(stringify!($example));
            }
            #[test]
            fn curl_http1_and_h2c_complete_across_the_signal() {
                super::curl_http1_and_h2c_complete_across_the_signal(stringify!($example));
            }
            #[test]
            fn load_of_32_keep_alive_clients_loses_no_request_the_server_read() {
                super::load_of_32_keep_alive_clients_loses_no_request_the_server_read(
                    stringify!($example),
                );
            }
            #[test]
            fn pre_drain_load_of_32_keep_alive_clients_fails_no_request() {
                super::pre_drain_load_of_32_keep_alive_clients_fails_no_request(
                    stringify!($example),
                );
            }
            #[test]
            fn idle_connections_cost_one_descriptor_each() {
                super::idle_connections_cost_one_descriptor_each(stringify!($example));
            }
            #[test]
            fn stop_while_out_of_descriptors_closes_idle_connections() {
                super::stop_while_out_of_descriptors_closes_idle_connections(
                    stringify!($example),
                );
            }
            #[test]
            fn malformed_flags_exit_2_with_a_message() {
                super::malformed_flags_exit_2_with_a_message(stringify!($example));
            }
        }
    )*};
}

http_tests!(tokio_http, smol_http, std_http);
