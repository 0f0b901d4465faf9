//! The seeded, randomized stop of [`crate::random`] over HTTP: keep-alive
//! connections idle or reused during the pre-drain delay, slow requests
//! inside or past the deadline, streaming responses with a request
//! pipelined behind, requests whose body is still arriving (read by their
//! handler, or never read), upgraded connections whose handler watches
//! the stop or ignores it, large responses to clients that stopped
//! reading (the server's writes blocked), HTTP/2 connections idle or with
//! a stream in flight, connections (HTTP/1 or 2) opened during the delay,
//! keep-alive connections whose next request's head began before the
//! close, connections whose first head never ends, and HTTP/2 clients
//! that never answer a PING, in combinations drawn from a seed. The
//! invariants:
//!
//! - a request the server read gets its whole response, marked
//!   `Connection: close` once the stop began, unless the deadline forced
//!   it; a `101` keeps `Connection: upgrade` alone;
//! - during the pre-drain delay a pooled connection is served (503 from the
//!   readiness endpoint, `Connection: close`), and new ones are accepted;
//! - idle keep-alive connections end when the listener closes; after it
//!   every connect is refused;
//! - a connection racing the trigger is refused (without a pre-drain
//!   delay), or its request is answered whole and the connection closes,
//!   or it ends with its request never read (without a delay);
//! - a request whose head began on a keep-alive connection before the
//!   listener closed, its rest sent after, is answered whole, with
//!   `Connection: close`;
//! - a connection whose first request's head is still unfinished when
//!   its first-request grace ends is closed then, unanswered (its close
//!   lingers until its client closes), and is not left to the deadline;
//! - a request pipelined behind a response still streaming at the stop
//!   is answered too, after that response, with `Connection: close`; so
//!   is one pipelined behind a request whose response comes after the
//!   trigger, which then does not carry `close` itself;
//! - an upgraded connection lives until its handler ends it, or until the
//!   deadline forces it;
//! - an HTTP/2 connection gets GOAWAY at the trigger (one opened during
//!   the delay, once its first request is read), naming the streams it
//!   serves: an idle one then closes, during the delay too; a stream in
//!   flight gets its whole response (or is cut at the deadline), then the
//!   connection closes; an idle one whose client never answers the PING
//!   that the final GOAWAY waits for closes once the first request's grace
//!   is over;
//! - after its last response a connection closes at once when its client
//!   sent everything it meant to (a body read whole included); it lingers,
//!   holding the stop, while a body was never read to its end or the
//!   client pipelined, until the client closes its side;
//! - the outcome names exactly the connections still working at the
//!   deadline, and every guard is released;
//! - a stop forced from code during the pre-drain delay (some plans) cuts
//!   every connection at once, whatever it is doing, closes the listener
//!   and releases every guard; the outcome is forced by the request.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use graceful_core::{ForceCause, Outcome, Reason, ServeConfig};

use crate::h2::H2;
use crate::harness::{
    delivered, ends_within, eventually, is_timeout, refused_within, BIG, PATIENCE,
};
use crate::http::{
    assert_lingers_until_closed, head, holds_connection_from, roundtrip, upgrade, HttpAdapter,
    HttpServer,
};
use crate::random::{assert_deadline_armed, assert_held, Rng, Tally, Timing};

/// What one HTTP client does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpKind {
    /// Before the trigger: one request, then idle on its keep-alive
    /// connection.
    Idle,
    /// Like `Idle`, and reused during the pre-drain delay.
    Reuse,
    /// Before the trigger: a request taking this many ms.
    Slow(u64),
    /// Before the trigger: a response whose head and first line come at
    /// once and whose body ends this many ms later, with a request
    /// pipelined behind it (answered too, with `Connection: close`).
    Streaming(u64),
    /// Before the trigger: a request whose handler reads its body, of
    /// which only the start was sent; the rest comes just before the
    /// deadline.
    Upload,
    /// Before the trigger: a request taking this many ms, whose handler
    /// never reads its body, of which only the start was sent; after the
    /// response the client sends the rest, which the close lingers for.
    Unread(u64),
    /// Before the trigger: upgraded; its handler says `bye` at the trigger.
    Polite,
    /// Before the trigger: upgraded; its handler ignores the stop.
    Rude,
    /// During the pre-drain delay: a new connection, a request taking this
    /// many ms.
    LateSlow(u64),
    /// Before the trigger: a large response ([`BIG`]), of
    /// which the client reads the head and a little, then nothing until
    /// just before the deadline (`true`: then it reads the rest) or ever
    /// (`false`: the deadline cuts it).
    Download(bool),
    /// During the pre-drain delay: a new connection, upgraded.
    LateUpgrade,
    /// Before the trigger: an HTTP/2 connection, one request answered,
    /// then idle.
    H2Idle,
    /// Before the trigger: an HTTP/2 connection with a stream in flight,
    /// a request taking this many ms.
    H2Slow(u64),
    /// During the pre-drain delay: a new HTTP/2 connection, a request
    /// taking this many ms.
    LateH2(u64),
    /// At the trigger: connects and sends a request at once, racing the
    /// close.
    Burst,
    /// Before the trigger: one request, then the start of the next one's
    /// head on the same keep-alive connection; the rest once the listener
    /// closed (within the first-request grace): answered whole.
    Begun,
    /// Before the trigger: a new connection that sends the start of its
    /// first request's head and never the rest: closed when its
    /// first-request grace ends.
    Stalled,
    /// Before the trigger: an HTTP/2 connection, one request answered,
    /// then idle; it never answers a PING (a client gone quiet).
    H2Mute,
    /// Before the trigger: a request taking this many ms and, in the same
    /// write, one pipelined behind it: both answered, only the second
    /// marked `Connection: close`.
    Pipelined(u64),
}

/// A stop configuration and its HTTP clients, drawn from a seed.
#[derive(Debug, Clone)]
pub struct HttpPlan {
    /// The seed it was drawn from.
    pub seed: u64,
    /// The pre-drain delay (zero for none).
    pub pre_drain: Duration,
    /// How far into the delay the late clients act.
    pub pre_drain_step: Duration,
    /// The drain deadline.
    pub timeout: Duration,
    /// The clients.
    pub clients: Vec<HttpKind>,
    /// Whether the HTTP/1 requests that are not upgrades ask for one they
    /// do not get (`Upgrade: h2c`, answered without switching): hyper
    /// then ends their connections without shutting them.
    pub asks_upgrade: bool,
    /// Whether the stop is forced from code during the pre-drain delay,
    /// once the late clients are in: then every connection is cut.
    pub force_in_delay: bool,
}

impl HttpPlan {
    /// The plan of `seed`.
    pub fn from_seed(seed: u64) -> HttpPlan {
        let mut rng = Rng::new(seed ^ 0x4854_5450);
        let Timing {
            pre_drain,
            pre_drain_step,
            timeout,
            within,
            beyond,
        } = Timing::draw(&mut rng, &[3_000, 10_000]);
        let mut clients = Vec::new();
        for _ in 0..1 + rng.below(6) {
            clients.push(match rng.below(11) {
                0 => HttpKind::Idle,
                1 => HttpKind::Reuse,
                2 => HttpKind::Slow(within),
                3 => HttpKind::Slow(beyond),
                4 => HttpKind::Polite,
                5 => HttpKind::Streaming(within),
                6 => HttpKind::Streaming(beyond),
                7 => HttpKind::Upload,
                8 => HttpKind::Unread(within),
                9 => HttpKind::Unread(beyond),
                _ => HttpKind::Rude,
            });
        }
        if !pre_drain.is_zero() {
            for _ in 0..rng.below(4) {
                clients.push(match rng.below(2) {
                    0 => HttpKind::LateSlow(within),
                    _ => HttpKind::LateUpgrade,
                });
            }
        }
        // Drawn after the others, so that the draws above stay as they
        // were.
        for _ in 0..rng.below(3) {
            clients.push(match rng.below(3) {
                0 => HttpKind::H2Idle,
                1 => HttpKind::H2Slow(within),
                _ => HttpKind::H2Slow(beyond),
            });
        }
        if !pre_drain.is_zero() && rng.below(2) == 0 {
            clients.push(HttpKind::LateH2(within));
        }
        for _ in 0..rng.below(3) {
            clients.push(HttpKind::Download(rng.chance(1, 2)));
        }
        if rng.chance(1, 3) {
            for _ in 0..1 + rng.below(4) {
                clients.push(HttpKind::Burst);
            }
        }
        let asks_upgrade = rng.chance(1, 3);
        if rng.chance(1, 3) {
            for _ in 0..1 + rng.below(2) {
                clients.push(HttpKind::Begun);
            }
        }
        if rng.chance(1, 4) {
            clients.push(HttpKind::Stalled);
        }
        if rng.chance(1, 4) {
            clients.push(HttpKind::H2Mute);
        }
        if rng.chance(1, 4) {
            clients.push(HttpKind::Pipelined(match rng.chance(1, 2) {
                true => within,
                false => beyond,
            }));
        }
        let force_in_delay = !pre_drain.is_zero() && rng.chance(1, 5);
        HttpPlan {
            seed,
            pre_drain,
            pre_drain_step,
            timeout,
            clients,
            asks_upgrade,
            force_in_delay,
        }
    }

    /// What the head of a request that is not an upgrade carries besides
    /// its host.
    fn extra_head(&self) -> &'static str {
        match self.asks_upgrade {
            true => "Upgrade: h2c\r\n",
            false => "",
        }
    }

    fn forced(&self, kind: HttpKind) -> bool {
        match kind {
            HttpKind::Rude | HttpKind::Download(false) => true,
            HttpKind::Slow(ms)
            | HttpKind::LateSlow(ms)
            | HttpKind::Streaming(ms)
            | HttpKind::Unread(ms)
            | HttpKind::Pipelined(ms)
            | HttpKind::H2Slow(ms)
            | HttpKind::LateH2(ms) => Duration::from_millis(ms) > self.timeout,
            _ => false,
        }
    }
}

/// How much of a download its client reads before it stops reading.
const DOWNLOAD_START: usize = 64 << 10;

/// An upload's head and the start of its 10-byte body, then the rest.
const UPLOAD_START: &[u8] = b"POST /read HTTP/1.1\r\nHost: t\r\ncontent-length: 10\r\n\r\nabcd";
const UPLOAD_REST: &[u8] = b"efghij";

/// One HTTP response: the status line, the head in lower case, the body.
struct Reply {
    status: String,
    head: String,
    body: String,
}

/// Sends `GET path`, its head with `extra` lines.
fn get(c: &mut BufReader<TcpStream>, path: &str, extra: &str) {
    c.get_mut()
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n").as_bytes())
        .unwrap();
}

fn reply(c: &mut BufReader<TcpStream>) -> io::Result<Reply> {
    let (status, head) = head(c)?;
    let len = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    let mut body = vec![0u8; len];
    c.read_exact(&mut body)?;
    Ok(Reply {
        status,
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Reads one chunk of a chunked body (empty: the last, and its trailer).
fn chunk(c: &mut BufReader<TcpStream>) -> io::Result<String> {
    let mut size = String::new();
    c.read_line(&mut size)?;
    let len = usize::from_str_radix(size.trim(), 16)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, size.clone()))?;
    let mut data = vec![0u8; len + 2];
    c.read_exact(&mut data)?;
    data.truncate(len);
    Ok(String::from_utf8_lossy(&data).into_owned())
}

fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    BufReader::new(s)
}

/// Whether the server ends the connection within `within`, with nothing
/// more read.
fn closed(c: &mut BufReader<TcpStream>, within: Duration) -> bool {
    ends_within(c, within) == Some(0)
}

/// The last response a client that pipelined gets: `status` (and `body`,
/// if given), marked `Connection: close`; then the connection's end, and a
/// close that lingers until the client closes its side.
fn assert_last_of_pipelined(
    shutdown: &graceful_core::Shutdown,
    conn: &mut BufReader<TcpStream>,
    (status, body): (&str, Option<&str>),
    what: &str,
) {
    let r = reply(conn).unwrap_or_else(|e| panic!("{what}: pipelined: {e}"));
    assert!(r.status.starts_with(status), "{what}: {}", r.status);
    if let Some(body) = body {
        assert_eq!(r.body, body, "{what}");
    }
    assert!(r.head.contains("connection: close"), "{what}: {}", r.head);
    assert!(closed(conn, PATIENCE), "{what} open after it");
    let hold = Duration::from_millis(100);
    assert_lingers_until_closed(shutdown, conn.get_mut(), b"", hold, what);
}

struct Client {
    kind: HttpKind,
    index: usize,
    conn: BufReader<TcpStream>,
    /// The body expected of the response still to come, if any.
    pending: Option<String>,
}

/// An HTTP/2 client and its stream still to be answered, if any.
struct H2Client {
    kind: HttpKind,
    index: usize,
    h2: H2,
    pending: Option<(u32, u64)>,
}

impl H2Client {
    /// A new connection with a stream in flight: a request taking `ms`.
    fn sleeping(addr: SocketAddr, kind: HttpKind, index: usize, ms: u64) -> H2Client {
        let mut h2 = H2::connect(addr);
        let id = h2.get(&format!("/sleep?ms={ms}"));
        H2Client {
            kind,
            index,
            h2,
            pending: Some((id, ms)),
        }
    }

    fn what(&self) -> String {
        format!("HTTP/2 client {} ({:?})", self.index, self.kind)
    }

    /// Waits for the GOAWAY that names stream `id` (the graceful one's
    /// second, sent once the client answered its PING).
    fn assert_goaway_names(&mut self, id: u32) {
        let named = self.h2.read_until(PATIENCE, |h2| h2.goaways.contains(&id));
        assert!(
            named,
            "{}: no GOAWAY naming stream {id}: {:?}",
            self.what(),
            self.h2.goaways
        );
    }

    /// Its stream's whole response (a 200 with the expected body), then
    /// the connection's end.
    fn assert_answered_then_closed(&mut self) {
        let (id, ms) = self.pending.take().expect("a stream in flight");
        let response = self.h2.finish(id, PATIENCE);
        assert!(response.ended, "{}: {response:?}", self.what());
        assert_eq!(
            response.first_header_byte,
            Some(0x88),
            "{}: not a 200",
            self.what()
        );
        assert_eq!(response.body, format!("slept {ms}"), "{}", self.what());
        assert!(
            self.h2.closed_within(PATIENCE),
            "{} open after its response",
            self.what()
        );
    }
}

/// Runs the HTTP plan of `seed` on `A`; panics with the seed and the plan
/// when an invariant breaks.
pub fn run_http_seed<A: HttpAdapter>(seed: u64) -> Tally {
    crate::random::run_one(
        "randomized HTTP stop",
        seed,
        HttpPlan::from_seed,
        run_http_plan::<A>,
    )
}

/// Runs the fixed seeds (or those the environment asks for) on `A` and
/// prints what they covered.
pub fn run_http_seeds<A: HttpAdapter>() -> Tally {
    crate::random::run_all("randomized HTTP stop", run_http_seed::<A>)
}

fn run_http_plan<A: HttpAdapter>(plan: &HttpPlan) -> Tally {
    // A linger longer than any plan's clock: one that begins must be ended
    // by its client (an unread body's rest, then its close), and one that
    // should not have begun holds the stop until 25 ms before its deadline
    // (where the clock never goes before its last checks: see
    // `JUST_BEFORE`).
    let config = ServeConfig::default()
        .pre_drain(plan.pre_drain)
        .timeout(plan.timeout)
        .linger(Duration::from_secs(60))
        .progress_every(None);
    let grace = config.first_request_grace;
    let server = HttpServer::start::<A>(config, true);
    let clock = server.clock.clone().unwrap();
    let addr = server.addr;
    let mut tally = Tally {
        seeds: 1,
        clients: plan.clients.len(),
        ..Tally::default()
    };
    // The requests of slow and upload clients, read by their handlers.
    let sleeps_seen = |n: usize| {
        eventually(PATIENCE, || {
            server
                .seen
                .lock()
                .unwrap()
                .iter()
                .filter(|p| p.starts_with("/sleep") || p.starts_with("/read"))
                .count()
                >= n
        })
    };

    // Before the trigger.
    let mut clients = Vec::new();
    let mut h2s = Vec::new();
    let mut sleeps = 0;
    for (index, &kind) in plan.clients.iter().enumerate() {
        let (conn, pending) = match kind {
            HttpKind::Idle | HttpKind::Reuse | HttpKind::Begun => {
                let mut c = connect(addr);
                get(&mut c, "/healthz", plan.extra_head());
                let r = reply(&mut c).expect("a response");
                assert!(r.status.starts_with("HTTP/1.1 200"), "{}", r.status);
                assert!(!r.head.contains("connection: close"), "{}", r.head);
                tally.responses += 1;
                if kind != HttpKind::Begun {
                    (c, None)
                } else {
                    let start = format!("GET /burst?i={index} HTTP/1.1\r\nHo");
                    c.get_mut().write_all(start.as_bytes()).unwrap();
                    delivered(c.get_ref());
                    (c, Some(format!("burst {index}")))
                }
            }
            HttpKind::Stalled => {
                let mut c = connect(addr);
                let start = format!("GET /burst?i={index} HTTP/1.1\r\nHo");
                c.get_mut().write_all(start.as_bytes()).unwrap();
                (c, None)
            }
            HttpKind::Slow(ms) => {
                let mut c = connect(addr);
                get(&mut c, &format!("/sleep?ms={ms}"), plan.extra_head());
                sleeps += 1;
                (c, Some(format!("slept {ms}")))
            }
            HttpKind::Pipelined(ms) => {
                let mut c = connect(addr);
                let extra = plan.extra_head();
                let both = format!(
                    "GET /sleep?ms={ms} HTTP/1.1\r\nHost: t\r\n{extra}\r\n\
                     GET /burst?i={index} HTTP/1.1\r\nHost: t\r\n{extra}\r\n"
                );
                c.get_mut().write_all(both.as_bytes()).unwrap();
                sleeps += 1;
                (c, Some(format!("slept {ms}")))
            }
            HttpKind::Upload => {
                let mut c = connect(addr);
                c.get_mut().write_all(UPLOAD_START).unwrap();
                sleeps += 1;
                (c, Some("read 10".to_string()))
            }
            HttpKind::Unread(ms) => {
                let mut c = connect(addr);
                let extra = plan.extra_head();
                let start = format!(
                    "POST /sleep?ms={ms} HTTP/1.1\r\nHost: t\r\n{extra}content-length: 10\r\n\r\nabcd"
                );
                c.get_mut().write_all(start.as_bytes()).unwrap();
                sleeps += 1;
                (c, Some(format!("slept {ms}")))
            }
            HttpKind::Streaming(ms) => {
                let mut c = connect(addr);
                let pipelined =
                    format!("GET /stream?ms={ms} HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
                c.get_mut().write_all(pipelined.as_bytes()).unwrap();
                let (status, head) = head(&mut c).expect("a response head");
                assert!(status.starts_with("HTTP/1.1 200"), "{status}");
                assert!(!head.contains("connection: close"), "{head}");
                assert_eq!(chunk(&mut c).unwrap(), "first\n");
                (c, Some("last\n".to_string()))
            }
            HttpKind::Polite | HttpKind::Rude => {
                let path = if kind == HttpKind::Polite {
                    "/echo?polite"
                } else {
                    "/echo"
                };
                let mut c = upgrade(addr, path);
                assert_eq!(roundtrip(&mut c, "before"), "before\n");
                tally.responses += 1;
                (c, None)
            }
            HttpKind::Download(_) => {
                let mut c = connect(addr);
                get(&mut c, "/big", plan.extra_head());
                let (status, head) = head(&mut c).expect("a response head");
                assert!(status.starts_with("HTTP/1.1 200"), "{status}");
                assert!(!head.contains("connection: close"), "{head}");
                assert!(head.contains(&format!("content-length: {BIG}")), "{head}");
                let mut start = vec![0u8; DOWNLOAD_START];
                c.read_exact(&mut start).unwrap();
                (c, None)
            }
            HttpKind::H2Idle | HttpKind::H2Mute => {
                let mut h2 = H2::connect(addr);
                let id = h2.get("/healthz");
                let r = h2.finish(id, PATIENCE);
                assert!(r.ended && r.first_header_byte == Some(0x88), "{r:?}");
                assert!(h2.goaways.is_empty(), "{:?}", h2.goaways);
                if kind == HttpKind::H2Mute {
                    // All it sent read: nothing more comes from it.
                    h2.sync();
                    h2.answers_pings = false;
                }
                tally.responses += 1;
                h2s.push(H2Client {
                    kind,
                    index,
                    h2,
                    pending: None,
                });
                continue;
            }
            HttpKind::H2Slow(ms) => {
                h2s.push(H2Client::sleeping(addr, kind, index, ms));
                sleeps += 1;
                continue;
            }
            _ => continue,
        };
        clients.push(Client {
            kind,
            index,
            conn,
            pending,
        });
    }
    assert!(sleeps_seen(sleeps), "the slow requests were not all read");

    // The trigger, with the burst racing it: each has made its connect
    // before anything else moves (the delay's clock included).
    let (attempted_tx, attempted) = std::sync::mpsc::channel();
    let bursts: Vec<_> = plan
        .clients
        .iter()
        .enumerate()
        .filter(|(_, k)| **k == HttpKind::Burst)
        .map(|(index, _)| {
            let attempted = attempted_tx.clone();
            std::thread::spawn(move || burst(addr, index, attempted))
        })
        .collect();
    let triggered_at = clock.elapsed();
    server.shutdown.trigger(Reason::requested());
    for _ in 0..bursts.len() {
        attempted
            .recv_timeout(PATIENCE)
            .expect("a burst client made its connect and its send");
    }
    // HTTP/2 connections get GOAWAY at once, during the pre-drain delay
    // too: an idle one then closes (one whose client never answers the
    // PING, once the grace is over), one with a stream in flight names it.
    // The connections their clients saw end, whose server side may still be
    // finishing (see `wait_released`).
    let mut ended = Vec::new();
    for c in h2s.iter_mut() {
        match c.pending {
            None if c.kind == HttpKind::H2Mute => {
                let what = c.what();
                let goaway = c.h2.read_until(PATIENCE, |h2| !h2.goaways.is_empty());
                assert!(goaway, "{what}: no GOAWAY");
            }
            None => {
                let what = c.what();
                assert!(
                    c.h2.closed_within(PATIENCE),
                    "{what} open after the trigger"
                );
                assert!(!c.h2.goaways.is_empty(), "{what}: closed without GOAWAY");
                ended.extend(c.h2.socket().local_addr().ok());
            }
            Some((id, _)) => c.assert_goaway_names(id),
        }
    }
    // The wait for a PING's answer is bounded from the GOAWAY on: the clock
    // moves only once each such bound is armed (without a pre-drain delay,
    // with the graces below, once the connections ended are gone). Every
    // HTTP/2 connection arms one at the GOAWAY, and keeps it while it
    // lives: each client gone quiet's, each one's with a stream in flight.
    let bounded = h2s
        .iter()
        .filter(|c| c.kind == HttpKind::H2Mute || c.pending.is_some())
        .count();
    if !plan.pre_drain.is_zero() {
        assert!(
            clock.wait_for_sleeps_ending_at(triggered_at + grace, bounded, PATIENCE),
            "the waits for the PINGs' answers were not all bounded"
        );
    }
    for c in clients.iter_mut().filter(|c| c.kind == HttpKind::Polite) {
        assert_eq!(roundtrip_read(&mut c.conn), "bye\n", "client {}", c.index);
        assert!(
            closed(&mut c.conn, PATIENCE),
            "client {} open after bye",
            c.index
        );
    }

    if !plan.pre_drain.is_zero() {
        assert!(
            clock.wait_for_sleep_ending_at(plan.pre_drain, PATIENCE),
            "the pre-drain delay was not armed"
        );
        clock.advance(plan.pre_drain_step);
        for c in clients.iter_mut().filter(|c| c.kind == HttpKind::Reuse) {
            get(&mut c.conn, "/healthz", plan.extra_head());
            let r = reply(&mut c.conn).expect("a pooled connection is served during pre-drain");
            assert!(r.status.starts_with("HTTP/1.1 503"), "{}", r.status);
            assert!(r.head.contains("connection: close"), "{}", r.head);
            assert!(
                closed(&mut c.conn, PATIENCE),
                "client {} open after close",
                c.index
            );
            tally.responses += 1;
        }
        for (index, &kind) in plan.clients.iter().enumerate() {
            match kind {
                HttpKind::LateSlow(ms) => {
                    let mut c = connect(addr);
                    get(&mut c, &format!("/sleep?ms={ms}"), plan.extra_head());
                    sleeps += 1;
                    clients.push(Client {
                        kind,
                        index,
                        conn: c,
                        pending: Some(format!("slept {ms}")),
                    });
                }
                HttpKind::LateUpgrade => {
                    // Its 101 keeps `Connection: upgrade` alone; the polite
                    // handler sees the stop at once.
                    let mut c = upgrade(addr, "/echo?polite");
                    assert_eq!(roundtrip_read(&mut c), "bye\n");
                    assert!(closed(&mut c, PATIENCE));
                    tally.responses += 1;
                }
                HttpKind::LateH2(ms) => {
                    h2s.push(H2Client::sleeping(addr, kind, index, ms));
                    sleeps += 1;
                }
                _ => {}
            }
        }
        assert!(
            sleeps_seen(sleeps),
            "the late slow requests were not all read"
        );
        // A late HTTP/2 connection's GOAWAY comes once its first request
        // was read.
        for c in h2s
            .iter_mut()
            .filter(|c| matches!(c.kind, HttpKind::LateH2(_)))
        {
            let (id, _) = c.pending.expect("a stream in flight");
            c.assert_goaway_names(id);
        }
        if plan.force_in_delay {
            return forced_in_delay(&server, clients, h2s, bursts, tally);
        }
        clock.advance(plan.pre_drain - plan.pre_drain_step);
    }

    // The listener closes: idle keep-alive connections end with it.
    assert!(refused_within(addr, PATIENCE), "the listener did not close");
    let closed_at = clock.elapsed();
    for (index, t) in plan
        .clients
        .iter()
        .enumerate()
        .filter(|(_, k)| **k == HttpKind::Burst)
        .map(|(index, _)| index)
        .zip(bursts)
    {
        let during_delay = !plan.pre_drain.is_zero();
        match t.join().expect("a burst thread panicked") {
            BurstEnd::Refused => {
                assert!(!during_delay, "burst {index} refused during the delay");
                tally.refused += 1;
            }
            BurstEnd::Answered(mut c) => {
                assert!(
                    closed(&mut c, PATIENCE),
                    "burst {index} open after the close"
                );
                ended.extend(c.get_ref().local_addr().ok());
                tally.responses += 1;
            }
            BurstEnd::Ended => {
                assert!(
                    !during_delay,
                    "burst {index} ended unanswered during the delay"
                );
                let path = format!("/burst?i={index}");
                let seen = server.seen.lock().unwrap().contains(&path);
                assert!(!seen, "burst {index}: read, never answered");
                tally.unread += 1;
            }
        }
    }
    let reused = !plan.pre_drain.is_zero();
    let idle = |k: HttpKind| k == HttpKind::Idle || (k == HttpKind::Reuse && !reused);
    for c in clients.iter_mut().filter(|c| idle(c.kind)) {
        assert!(
            closed(&mut c.conn, PATIENCE),
            "idle client {} open after the close",
            c.index
        );
    }
    // Every connection with a head begun, and none read, when the listener
    // closed has its grace: the clock moves only once each is armed (one
    // armed after the moves below would end past the deadline). Without a
    // pre-drain delay, the bounds on the waits for the PINGs' answers,
    // armed at the trigger, end at the same instant and are counted too.
    let mut graced = plan
        .clients
        .iter()
        .filter(|k| matches!(k, HttpKind::Begun | HttpKind::Stalled))
        .count();
    if plan.pre_drain.is_zero() {
        graced += bounded;
    }
    // A connection its client saw end may not have dropped its timers yet
    // (its grace, its bound), which end at that instant too.
    wait_released(&server.shutdown, &ended);
    assert!(
        clock.wait_for_sleeps_ending_at(closed_at + grace, graced, PATIENCE),
        "the graces of the heads begun were not all armed"
    );
    // The rest of the heads begun before the close, within the grace: each
    // request is read (before the clock moves again) and answered below.
    for c in clients.iter_mut().filter(|c| c.kind == HttpKind::Begun) {
        let rest = format!("st: t\r\n{}\r\n", plan.extra_head());
        c.conn.get_mut().write_all(rest.as_bytes()).unwrap();
        let path = format!("/burst?i={}", c.index);
        assert!(
            eventually(PATIENCE, || server.seen.lock().unwrap().contains(&path)),
            "client {} (Begun): its request was never read",
            c.index
        );
    }
    let deadline = closed_at + plan.timeout;
    assert_deadline_armed(&clock, deadline, || server.has_returned());
    clock.advance(plan.timeout - JUST_BEFORE);

    // Just before the deadline.
    let mut forced = 0;
    for c in clients.iter_mut() {
        if plan.forced(c.kind) {
            forced += 1;
            if c.kind == HttpKind::Rude {
                assert_eq!(
                    roundtrip(&mut c.conn, "still"),
                    "still\n",
                    "client {}",
                    c.index
                );
            }
            continue;
        }
        if c.kind == HttpKind::Stalled {
            // Its grace (shorter than any deadline) is over: closed,
            // unanswered; the close lingers while it may still send.
            let what = format!("client {} (Stalled)", c.index);
            assert!(
                closed(&mut c.conn, PATIENCE),
                "{what} open after its first-request grace"
            );
            let hold = Duration::from_millis(100);
            assert_lingers_until_closed(&server.shutdown, c.conn.get_mut(), b"", hold, &what);
            continue;
        }
        if let HttpKind::Pipelined(_) = c.kind {
            let what = format!("client {} ({:?})", c.index, c.kind);
            let first = c.pending.take().expect("a request in flight");
            let r = reply(&mut c.conn).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(r.status.starts_with("HTTP/1.1 200"), "{what}: {}", r.status);
            assert_eq!(r.body, first, "{what}");
            assert!(!r.head.contains("connection: close"), "{what}: {}", r.head);
            let burst = format!("burst {}", c.index);
            let last = ("HTTP/1.1 200", Some(burst.as_str()));
            assert_last_of_pipelined(&server.shutdown, &mut c.conn, last, &what);
            tally.responses += 2;
            continue;
        }
        if let HttpKind::Streaming(_) = c.kind {
            let stream = format!("client {} ({:?})", c.index, c.kind);
            let last = c.pending.take().expect("a streaming response in progress");
            assert_eq!(chunk(&mut c.conn).expect(&stream), last, "{stream}");
            assert_eq!(chunk(&mut c.conn).expect(&stream), "", "{stream}: the end");
            let last = ("HTTP/1.1 503", None);
            assert_last_of_pipelined(&server.shutdown, &mut c.conn, last, &stream);
            tally.responses += 2;
            continue;
        }
        if c.kind == HttpKind::Download(true) {
            // The rest of the response, written as it is read; then the
            // connection, idle, closes (the listener closed).
            let what = format!("client {} ({:?})", c.index, c.kind);
            let mut rest = vec![0u8; BIG - DOWNLOAD_START];
            c.conn.read_exact(&mut rest).expect(&what);
            assert!(rest.iter().all(|&b| b == 0), "{what}");
            assert!(
                closed(&mut c.conn, PATIENCE),
                "{what} open after its response"
            );
            tally.responses += 1;
            continue;
        }
        if c.kind == HttpKind::Upload {
            // The rest of its body, the clock never to move again unless
            // work is left to force: a close that lingers for it when it
            // was all read would hold the stop.
            c.conn.get_mut().write_all(UPLOAD_REST).unwrap();
        }
        if let Some(body) = c.pending.take() {
            let r = reply(&mut c.conn)
                .unwrap_or_else(|e| panic!("client {} ({:?}): {e}", c.index, c.kind));
            assert!(r.status.starts_with("HTTP/1.1 200"), "{}", r.status);
            assert_eq!(r.body, body);
            assert!(r.head.contains("connection: close"), "{}", r.head);
            if let HttpKind::Unread(_) = c.kind {
                // The close lingers for the body never read: the server's
                // end of stream comes, then the rest is taken, and the
                // close follows the client's.
                let unread = format!("client {} ({:?})", c.index, c.kind);
                let mut rest = Vec::new();
                c.conn.read_to_end(&mut rest).expect(&unread);
                assert!(rest.is_empty(), "{unread}: {rest:?}");
                let hold = Duration::from_millis(100);
                let client = c.conn.get_mut();
                assert_lingers_until_closed(&server.shutdown, client, UPLOAD_REST, hold, &unread);
            }
            assert!(
                closed(&mut c.conn, PATIENCE),
                "client {} open after its response",
                c.index
            );
            tally.responses += 1;
        }
    }
    for c in h2s.iter_mut().filter(|c| c.kind == HttpKind::H2Mute) {
        let what = c.what();
        assert!(
            c.h2.closed_within(PATIENCE),
            "{what} open after the grace, its PING unanswered"
        );
    }
    for c in h2s.iter_mut().filter(|c| c.pending.is_some()) {
        if plan.forced(c.kind) {
            forced += 1;
        } else {
            c.assert_answered_then_closed();
            tally.responses += 1;
        }
    }
    let outcome = if forced == 0 {
        let outcome = server.outcome();
        assert!(outcome.is_drained(), "{outcome}");
        outcome
    } else {
        assert_held(&server.shutdown, forced, "just before the deadline");
        clock.advance(JUST_BEFORE);
        // Every forced connection lets go of its guard first. Only then
        // does a download's client read: reading earlier would let its
        // blocked writes go on before the force ended them.
        assert_held(&server.shutdown, 0, "after the force");
        for c in clients.iter_mut().filter(|c| plan.forced(c.kind)) {
            let cut = match c.kind {
                // What was in flight, then the end, not the whole body.
                HttpKind::Download(_) => {
                    ends_within(&mut c.conn, PATIENCE).is_some_and(|n| n < BIG - DOWNLOAD_START)
                }
                _ => closed(&mut c.conn, PATIENCE),
            };
            assert!(cut, "forced client {} ({:?}) not cut", c.index, c.kind);
        }
        for c in h2s.iter_mut().filter(|c| plan.forced(c.kind)) {
            let (id, _) = c.pending.expect("a stream in flight");
            let what = c.what();
            assert!(c.h2.closed_within(PATIENCE), "forced {what} not cut");
            assert!(!c.h2.response(id).ended, "forced {what} was answered");
        }
        let outcome = server.outcome();
        match &outcome {
            Outcome::Forced { cause, .. } => assert_eq!(*cause, ForceCause::Deadline),
            other => panic!("expected a forced outcome, got {other}"),
        }
        assert_eq!(outcome.forced_count(), forced, "{outcome}");
        tally.forced += forced;
        outcome
    };
    assert_eq!(outcome.exit_code(), if forced == 0 { 0 } else { 1 });
    assert_held(&server.shutdown, 0, "after serve returned");
    tally
}

/// How long before the deadline the clock stops for the last checks. A
/// close that lingers ends 25 ms before the deadline (B12 x B9): one begun
/// 26 ms before has 1 ms, and lingers while the clock stands still.
const JUST_BEFORE: Duration = Duration::from_millis(26);

/// Waits until the server holds none of the connections from `peers`:
/// their guards are released, which their tasks do as they end, after
/// dropping every timer they armed.
fn wait_released(shutdown: &graceful_core::Shutdown, peers: &[SocketAddr]) {
    let held = || peers.iter().any(|p| holds_connection_from(shutdown, *p));
    assert!(
        eventually(PATIENCE, || !held()),
        "connections whose clients saw them end are still held"
    );
}

/// What a burst client saw.
enum BurstEnd {
    Refused,
    /// Answered whole (`burst N`, 200); the connection is returned to be
    /// seen closing.
    Answered(BufReader<TcpStream>),
    /// The connection ended before a response.
    Ended,
}

/// The stop forced from code during the pre-drain delay, whatever each
/// connection is doing (a slow request, a stream, an upload, a download
/// its client does not read, an upgrade, a lingering close, a head half
/// sent): every one is cut at once, the listener closes, every guard is
/// released, and the outcome is forced by the request.
fn forced_in_delay(
    server: &HttpServer,
    clients: Vec<Client>,
    h2s: Vec<H2Client>,
    bursts: Vec<std::thread::JoinHandle<BurstEnd>>,
    mut tally: Tally,
) -> Tally {
    server.shutdown.force(ForceCause::Requested);
    for mut c in clients {
        let what = format!("client {} ({:?})", c.index, c.kind);
        let end = ends_within(&mut c.conn, PATIENCE);
        assert!(end.is_some(), "{what} not cut by the force");
    }
    for mut c in h2s {
        let what = c.what();
        assert!(c.h2.closed_within(PATIENCE), "{what} not cut by the force");
    }
    for t in bursts {
        // Answered before the force, or cut by it: either way, ended.
        if let BurstEnd::Answered(mut c) = t.join().expect("a burst thread panicked") {
            assert!(ends_within(&mut c, PATIENCE).is_some(), "a burst not cut");
        }
    }
    assert!(
        refused_within(server.addr, PATIENCE),
        "the listener did not close at the force"
    );
    assert_held(&server.shutdown, 0, "after the force");
    let outcome = server.outcome();
    match &outcome {
        Outcome::Forced { cause, .. } => assert_eq!(*cause, ForceCause::Requested),
        other => panic!("expected a forced outcome, got {other}"),
    }
    assert_eq!(outcome.exit_code(), 1);
    tally.forced += outcome.forced_count();
    tally
}

/// Connects at once and sends `GET /burst?i=index`, racing the trigger;
/// says on `attempted` once its connect failed or its request was sent
/// (the stop's clock moves only after that: see `random::burst`).
fn burst(addr: SocketAddr, index: usize, attempted: std::sync::mpsc::Sender<()>) -> BurstEnd {
    let connected = TcpStream::connect_timeout(&addr, PATIENCE);
    let attempted = crate::random::Attempted(attempted);
    let stream = match connected {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return BurstEnd::Refused,
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return BurstEnd::Ended,
        Err(e) => panic!("burst {index}: connect failed: {e}"),
    };
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut c = BufReader::new(stream);
    let request = format!("GET /burst?i={index} HTTP/1.1\r\nHost: t\r\n\r\n");
    let sent = c.get_mut().write_all(request.as_bytes());
    drop(attempted);
    if sent.is_err() {
        return BurstEnd::Ended;
    }
    match reply(&mut c) {
        Ok(r) => {
            assert!(
                r.status.starts_with("HTTP/1.1 200"),
                "burst {index}: {}",
                r.status
            );
            assert_eq!(r.body, format!("burst {index}"));
            BurstEnd::Answered(c)
        }
        Err(e) if is_timeout(&e) => {
            panic!("burst {index}: no response and no close within {PATIENCE:?}")
        }
        Err(_) => BurstEnd::Ended,
    }
}

/// Reads one line from an upgraded connection.
fn roundtrip_read(c: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    c.read_line(&mut line).unwrap();
    line
}
