//! A seeded, randomized stop: a generator picks a stop configuration and a
//! mix of clients from a seed, drives the adapter with the manual clock and
//! a scripted signal source, and checks the invariants every stop must
//! keep, whatever the combination:
//!
//! - a request the server read gets its whole response, unless the stop was
//!   forced while it ran (and then the connection is cut and counted);
//! - connections accepted during the pre-drain delay, or taken from the
//!   backlog, get their first request served within the first-request
//!   grace; a keep-alive connection reused during the delay is served;
//! - once the listener closed, every connect is refused;
//! - idle connections end when the listener closes (or after the grace);
//! - the stop ends at the deadline, and the outcome names exactly the
//!   connections that were still working;
//! - every guard is released once `serve` returned.
//!
//! `GRACEFUL_SEEDS=N` runs seeds `0..N` instead of the fixed set;
//! `GRACEFUL_SEED=S` runs seed `S` alone. A failure prints its seed and
//! plan; [`run_seed`] replays it, and a failing seed becomes a named
//! scenario.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use graceful_core::{
    Escalation, ForceCause, Outcome, Reason, Runtime, ServeConfig, Signal, SignalConfig,
};

use crate::fixture::Observer;
use crate::harness::{eventually, is_timeout, Client, Options, Server, BIG, PATIENCE};
use crate::script::{scripted, SignalScript};
use crate::Adapter;

/// The seeds every adapter runs in CI.
pub const FIXED_SEEDS: u64 = 24;

/// A small deterministic generator (splitmix64): the same seed gives the
/// same plan on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// What one client does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Before the trigger: one request, then idle (a pooled connection).
    Idle,
    /// Like `Idle`, and reused during the pre-drain delay.
    Reuse,
    /// Before the trigger: a request taking this many ms.
    Slow(u64),
    /// Before the trigger: a request taking this many ms and two more
    /// pipelined behind it in the same write.
    Pipelined(u64),
    /// Before the trigger: a request answered at the trigger.
    WaitTrigger,
    /// Before the trigger: a request that never ends.
    Hang,
    /// During the pre-drain delay: connects, and sends its first request
    /// only once the listener closed (within the first-request grace).
    SlowFirstByte,
    /// During the pre-drain delay: connects and sends a request taking
    /// this many ms.
    LateSlow(u64),
    /// During the pre-drain delay: connects and never sends.
    LateIdle,
    /// At the signal: connects and sends at once, racing the close.
    Burst,
    /// Before the trigger: asks for [`BIG`] bytes and reads none, so the
    /// server's writes block (from the close, if it waited in the backlog
    /// past a connection limit), until just before the deadline (`true`:
    /// then it reads them all) or ever (`false`: the deadline cuts it).
    Flood(bool),
}

/// A stop configuration and its clients, drawn from a seed.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The seed it was drawn from.
    pub seed: u64,
    /// The pre-drain delay (zero for none).
    pub pre_drain: Duration,
    /// How far into the delay the late clients act.
    pub pre_drain_step: Duration,
    /// The drain deadline.
    pub timeout: Duration,
    /// The first-request grace.
    pub grace: Duration,
    /// The connection limit.
    pub max_connections: Option<usize>,
    /// Triggered by a scripted SIGTERM (else by a request in code).
    pub by_signal: bool,
    /// Forced by a second SIGTERM (else by the deadline), when anything is
    /// left to force.
    pub force_by_signal: bool,
    /// The clients, in the order they connect.
    pub clients: Vec<Kind>,
    /// The handlers tell the server when they wait idle (see
    /// [`Options::tell_idle`]).
    pub tell_idle: bool,
}

/// The timing every randomized plan draws alike.
pub(crate) struct Timing {
    /// The pre-drain delay: none, 2 s or 5 s.
    pub(crate) pre_drain: Duration,
    /// How far into the delay the late clients act (before its end).
    pub(crate) pre_drain_step: Duration,
    /// The drain deadline, one of the given milliseconds.
    pub(crate) timeout: Duration,
    /// A sleep (ms) that ends well inside the deadline...
    pub(crate) within: u64,
    /// ...and one that ends well past it; neither at the same instant as
    /// the delay or the deadline timers.
    pub(crate) beyond: u64,
}

impl Timing {
    pub(crate) fn draw(rng: &mut Rng, timeouts_ms: &[u64]) -> Timing {
        let pre_drain = match rng.below(2) {
            0 => Duration::ZERO,
            _ => Duration::from_millis(rng.pick(&[2_000, 5_000])),
        };
        let pre_drain_step =
            Duration::from_millis(250 * rng.below(pre_drain.as_millis() as u64 / 250 + 1))
                .min(pre_drain.saturating_sub(Duration::from_millis(1)));
        let timeout = Duration::from_millis(rng.pick(timeouts_ms));
        Timing {
            pre_drain,
            pre_drain_step,
            timeout,
            within: timeout.as_millis() as u64 / 2 + 7,
            beyond: (timeout + pre_drain).as_millis() as u64 + 5_003,
        }
    }
}

impl Plan {
    /// The plan of `seed`.
    pub fn from_seed(seed: u64) -> Plan {
        let mut rng = Rng::new(seed);
        let Timing {
            pre_drain,
            pre_drain_step,
            timeout,
            within,
            beyond,
        } = Timing::draw(&mut rng, &[3_000, 10_000, 30_000]);
        let grace = Duration::from_millis(rng.pick(&[500, 1_000, 2_000]));
        let mut clients = Vec::new();
        for _ in 0..1 + rng.below(8) {
            clients.push(match rng.below(7) {
                0 => Kind::Idle,
                1 => Kind::Reuse,
                2 => Kind::Slow(within),
                3 => Kind::Slow(beyond),
                4 => Kind::Pipelined(within),
                5 => Kind::WaitTrigger,
                _ => Kind::Hang,
            });
        }
        let early = clients.len();
        if !pre_drain.is_zero() {
            for _ in 0..rng.below(5) {
                clients.push(match rng.below(4) {
                    0 => Kind::SlowFirstByte,
                    1 => Kind::LateSlow(within),
                    2 => Kind::LateSlow(beyond),
                    _ => Kind::LateIdle,
                });
            }
        }
        if rng.chance(1, 2) {
            for _ in 0..1 + rng.below(6) {
                clients.push(Kind::Burst);
            }
        }
        let max_connections = rng
            .chance(1, 3)
            .then(|| 1 + rng.below(early as u64 + 2) as usize);
        let by_signal = rng.chance(1, 2);
        let force_by_signal = by_signal && rng.chance(1, 2);
        // Drawn last, so that the draws above stay as they were.
        if rng.chance(1, 3) {
            clients.push(Kind::Flood(rng.chance(1, 2)));
        }
        let tell_idle = rng.chance(1, 2);
        Plan {
            seed,
            pre_drain,
            pre_drain_step,
            timeout,
            grace,
            max_connections,
            by_signal,
            force_by_signal,
            clients,
            tell_idle,
        }
    }

    /// Whether the client `kind` is still working at the deadline.
    fn forced(&self, kind: Kind) -> bool {
        let beyond = |ms: u64| Duration::from_millis(ms) > self.timeout;
        match kind {
            Kind::Hang | Kind::Flood(false) => true,
            Kind::Slow(ms) | Kind::Pipelined(ms) | Kind::LateSlow(ms) => beyond(ms),
            _ => false,
        }
    }
}

/// What a run of seeds covered.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tally {
    /// Seeds run.
    pub seeds: u64,
    /// Clients driven.
    pub clients: usize,
    /// Responses checked.
    pub responses: usize,
    /// Connections the stop forced.
    pub forced: usize,
    /// Connects refused at the close (burst clients).
    pub refused: usize,
    /// Burst clients whose request the server never read before their
    /// connection ended at the close (a race with the close, no loss).
    pub unread: usize,
}

impl Tally {
    /// Adds the counts of `other`.
    pub fn add(&mut self, other: Tally) {
        self.seeds += other.seeds;
        self.clients += other.clients;
        self.responses += other.responses;
        self.forced += other.forced;
        self.refused += other.refused;
        self.unread += other.unread;
    }
}

/// The commands the server read, per peer.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<HashMap<SocketAddr, Vec<String>>>>);

impl Log {
    fn observer(&self) -> Observer {
        let log = self.clone();
        Observer::new(move |peer, cmd| {
            log.0
                .lock()
                .unwrap()
                .entry(peer)
                .or_default()
                .push(cmd.to_string())
        })
    }

    fn read_by(&self, peer: SocketAddr) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .get(&peer)
            .cloned()
            .unwrap_or_default()
    }

    fn wait_read(&self, peer: SocketAddr, cmd: &str) -> bool {
        eventually(PATIENCE, || self.read_by(peer).iter().any(|c| c == cmd))
    }
}

/// One client of a plan while it runs.
struct Driven {
    kind: Kind,
    index: usize,
    client: Option<Client>,
    /// The first request, once sent.
    sent: Option<String>,
    /// The replies still to read, in order.
    expect: Vec<String>,
}

impl Driven {
    fn addr(&self) -> SocketAddr {
        self.client.as_ref().expect("connected").local_addr()
    }

    fn client(&mut self) -> &mut Client {
        self.client.as_mut().expect("connected")
    }

    fn send(&mut self, cmd: String) {
        self.client().send(&cmd);
        self.sent = Some(cmd.lines().next().unwrap().to_string());
    }

    /// Reads every reply still expected, in order, then sees the
    /// connection end; `when` says by when it had to.
    fn finish(&mut self, tally: &mut Tally, when: &str) {
        for reply in std::mem::take(&mut self.expect) {
            let got = self.client().read_line();
            assert_eq!(
                got.as_deref().ok(),
                Some(reply.as_str()),
                "client {} ({:?}): {got:?} instead of {reply:?}",
                self.index,
                self.kind
            );
            tally.responses += 1;
        }
        assert!(
            self.client().closed_within(PATIENCE),
            "client {} ({:?}) still open {when}",
            self.index,
            self.kind
        );
    }
}

/// Reports a burst client's attempt when dropped (on every return).
pub(crate) struct Attempted(pub(crate) mpsc::Sender<()>);

impl Drop for Attempted {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

/// What a burst client saw.
enum BurstEnd {
    Refused,
    Replied(Client),
    /// The connection ended before a reply; the request was sent from
    /// this address.
    Ended(SocketAddr),
    /// The connection was reset before the client could send.
    Reset,
}

/// Connects, sends its line and reads the reply. Reports on `attempted`
/// once its connect failed or its line was sent: the stop's clock moves
/// only after that, so that a connection that was open during the pre-drain
/// delay had sent its request by the time the listener closed (an idle one
/// accepted before the trigger is closed then, B7).
fn burst(addr: SocketAddr, index: usize, attempted: mpsc::Sender<()>) -> Result<BurstEnd, String> {
    let start = std::time::Instant::now();
    let connected = Client::try_connect(addr);
    let took = start.elapsed();
    let attempted = Attempted(attempted);
    let mut client = match connected {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(BurstEnd::Refused),
        // Completed in the backlog and reset by the close before the
        // client sent anything.
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(BurstEnd::Reset),
        Err(e) => return Err(format!("burst {index}: connect failed: {e}")),
    };
    let me = client.local_addr();
    let line = format!("burst {index}");
    let sent = client.try_send(&line);
    drop(attempted);
    if sent.is_err() {
        return Ok(BurstEnd::Ended(me));
    }
    match client.read_line() {
        Ok(reply) if reply == line => Ok(BurstEnd::Replied(client)),
        Ok(reply) => Err(format!("burst {index}: replied {reply:?} to {line:?}")),
        Err(e) if is_timeout(&e) => Err(format!(
            "burst {index}: no reply and no close within {PATIENCE:?} \
                 (from {me}; its connect took {took:?})"
        )),
        Err(_) => Ok(BurstEnd::Ended(me)),
    }
}

/// Runs the plan of `seed` on adapter `A`; panics with the seed and the
/// plan when an invariant breaks.
pub fn run_seed<A: Adapter>(seed: u64) -> Tally {
    run_one("randomized stop", seed, Plan::from_seed, run_plan::<A>)
}

/// Runs the plan `plan(seed)` with `run`; on a panic, prints the seed and
/// the plan first.
pub(crate) fn run_one<P: std::fmt::Debug>(
    label: &str,
    seed: u64,
    plan: impl Fn(u64) -> P,
    run: impl Fn(&P) -> Tally,
) -> Tally {
    let plan = plan(seed);
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&plan))) {
        Ok(tally) => tally,
        Err(panic) => {
            eprintln!(
                "{label}: seed {seed} failed (replay: GRACEFUL_SEED={seed}); plan: {plan:#?}"
            );
            std::panic::resume_unwind(panic)
        }
    }
}

/// Runs `run` over [`seeds`] and prints what they covered.
pub(crate) fn run_all(label: &str, run: impl Fn(u64) -> Tally) -> Tally {
    let seeds = seeds();
    let mut tally = Tally::default();
    for &seed in &seeds {
        tally.add(run(seed));
    }
    println!(
        "{label}: {} seeds ({}..={}), {} clients, {} responses checked, {} forced, \
         {} refused at the close, {} unread at the close",
        tally.seeds,
        seeds.first().unwrap_or(&0),
        seeds.last().unwrap_or(&0),
        tally.clients,
        tally.responses,
        tally.forced,
        tally.refused,
        tally.unread,
    );
    tally
}

/// The seeds to run: `GRACEFUL_SEED` alone, else `0..GRACEFUL_SEEDS`, else
/// the fixed `0..FIXED_SEEDS`.
pub fn seeds() -> Vec<u64> {
    match (
        std::env::var("GRACEFUL_SEED"),
        std::env::var("GRACEFUL_SEEDS"),
    ) {
        (Ok(one), _) => vec![one.parse().expect("GRACEFUL_SEED is a number")],
        (_, Ok(n)) => (0..n.parse().expect("GRACEFUL_SEEDS is a number")).collect(),
        _ => (0..FIXED_SEEDS).collect(),
    }
}

/// Waits until `shutdown` holds exactly `n` guards; fails the plan with
/// its report (`what` says when) otherwise.
pub(crate) fn assert_held(shutdown: &graceful_core::Shutdown, n: usize, what: &str) {
    assert!(
        eventually(PATIENCE, || shutdown.report().total() == n),
        "expected {n} guard(s) held {what}: {}",
        shutdown.report()
    );
}

/// Waits until the drain deadline at `at` on `clock` is armed, or serve
/// returned with nothing to drain: the clock may move only after that.
pub(crate) fn assert_deadline_armed(
    clock: &crate::ManualClock,
    at: Duration,
    returned: impl Fn() -> bool,
) {
    assert!(
        eventually(PATIENCE, || clock.has_sleep_ending_at(at) || returned()),
        "the drain deadline was not armed"
    );
}

/// After a run of the fixed seeds (not of seeds the environment asked
/// for): they must all have run and covered forced stops and responses; a
/// generator that stopped drawing them would test little.
pub fn assert_fixed_coverage(tally: &Tally) {
    if std::env::var_os("GRACEFUL_SEED").is_some() || std::env::var_os("GRACEFUL_SEEDS").is_some() {
        return;
    }
    assert_eq!(tally.seeds, FIXED_SEEDS);
    assert!(tally.forced > 0 && tally.responses > 50, "{tally:?}");
}

/// Runs the fixed seeds (or those the environment asks for) on adapter `A`
/// and prints what they covered.
pub fn run_seeds<A: Adapter>() -> Tally {
    run_all("randomized stop", run_seed::<A>)
}

fn run_plan<A: Adapter>(plan: &Plan) -> Tally {
    let log = Log::default();
    let config = ServeConfig::default()
        .pre_drain(plan.pre_drain)
        .timeout(plan.timeout)
        .first_request_grace(plan.grace)
        .max_connections(plan.max_connections)
        .progress_every(None);
    let options = Options::config(config).manual().observed(log.observer());
    let mut server = Server::<A>::start(options.telling_idle(plan.tell_idle));
    let clock = server.clock().clone();
    let script: Option<SignalScript> = plan.by_signal.then(|| {
        let (script, source) = scripted();
        let config = SignalConfig::default().on_exit(|code| panic!("exit({code}) requested"));
        server
            .rt
            .inner()
            .spawn(Escalation::new(server.shutdown.clone(), config).run(source));
        script
    });
    let mut tally = Tally {
        seeds: 1,
        clients: plan.clients.len(),
        ..Tally::default()
    };
    let mut clients: Vec<Driven> = Vec::new();
    let room = plan.max_connections.unwrap_or(usize::MAX);

    // Before the trigger: the early clients connect, in order, and send.
    for (index, &kind) in plan.clients.iter().enumerate() {
        let first = match kind {
            Kind::Idle => format!("idle {index}"),
            Kind::Reuse => format!("reuse {index}"),
            Kind::Slow(ms) => format!("sleep {ms}"),
            Kind::Pipelined(ms) => format!("sleep {ms}\npiped {index} a\npiped {index} b"),
            Kind::WaitTrigger => "wait-trigger".to_string(),
            Kind::Hang => "hang".to_string(),
            Kind::Flood(_) => format!("big {BIG}"),
            _ => continue,
        };
        let mut d = Driven {
            kind,
            index,
            client: Some(server.connect()),
            sent: None,
            expect: Vec::new(),
        };
        d.expect = match kind {
            Kind::Idle | Kind::Reuse => vec![first.clone()],
            Kind::Slow(ms) => vec![format!("slept {ms}")],
            Kind::Pipelined(ms) => vec![
                format!("slept {ms}"),
                format!("piped {index} a"),
                format!("piped {index} b"),
            ],
            Kind::WaitTrigger => vec!["stopping".to_string()],
            Kind::Flood(true) => vec!["x".repeat(BIG)],
            _ => Vec::new(),
        };
        d.send(first);
        clients.push(d);
    }
    // The first `room` are accepted and read; the rest wait in the backlog.
    for d in clients.iter_mut().take(room) {
        let (addr, sent) = (d.addr(), d.sent.clone().unwrap());
        assert!(
            log.wait_read(addr, &sent),
            "client {} not read: {sent:?}",
            d.index
        );
        if matches!(d.kind, Kind::Idle | Kind::Reuse) {
            let reply = d.expect.remove(0);
            assert_eq!(d.client().read_line().expect("a reply"), reply);
        }
    }
    if clients.len() > room {
        std::thread::sleep(Duration::from_millis(20));
        for d in &clients[room..] {
            assert!(
                log.read_by(d.addr()).is_empty(),
                "client {} served past max_connections {room}",
                d.index
            );
        }
    }

    // The signal, with the burst racing it.
    let bursts = plan.clients.iter().filter(|k| **k == Kind::Burst).count();
    let (attempted_tx, attempted) = mpsc::channel();
    let burst_threads: Vec<_> = (0..bursts)
        .map(|i| {
            let (addr, tx) = (server.addr, attempted_tx.clone());
            std::thread::spawn(move || burst(addr, i, tx))
        })
        .collect();
    match &script {
        Some(script) => script.send(Signal::Terminate),
        None => server.stop(),
    }
    assert!(server
        .shutdown
        .wait_triggered_until(std::time::Instant::now() + PATIENCE));
    for _ in 0..bursts {
        attempted
            .recv_timeout(PATIENCE)
            .expect("a burst client attempted its connect and its send");
    }

    // The pre-drain delay: the listener stays open and everything is served.
    if !plan.pre_drain.is_zero() {
        assert!(
            clock.wait_for_sleep_ending_at(plan.pre_drain, PATIENCE),
            "the pre-drain delay was not armed"
        );
        clock.advance(plan.pre_drain_step);
        for d in clients.iter_mut().take(room) {
            if d.kind == Kind::Reuse {
                let line = format!("reuse {} again", d.index);
                d.client().roundtrip(&line, &line);
                tally.responses += 1;
            }
        }
        for (index, &kind) in plan.clients.iter().enumerate() {
            let mut d = Driven {
                kind,
                index,
                client: None,
                sent: None,
                expect: Vec::new(),
            };
            match kind {
                Kind::SlowFirstByte | Kind::LateIdle => d.client = Some(server.connect()),
                Kind::LateSlow(ms) => {
                    d.client = Some(server.connect());
                    d.send(format!("sleep {ms}"));
                    d.expect = vec![format!("slept {ms}")];
                }
                _ => continue,
            }
            clients.push(d);
        }
        clock.advance(plan.pre_drain - plan.pre_drain_step);
    }

    // The listener closes: from now on every connect is refused.
    assert!(
        crate::harness::refused_within(server.addr, PATIENCE),
        "the listener did not close"
    );
    for _ in 0..3 {
        match std::net::TcpStream::connect_timeout(&server.addr, PATIENCE) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            other => panic!("a connect after the close was not refused: {other:?}"),
        }
    }
    let closed_at = clock.elapsed();
    for d in clients.iter_mut() {
        if d.kind == Kind::SlowFirstByte {
            let line = format!("first {} after the close", d.index);
            d.send(line.clone());
            d.expect = vec![line];
        }
    }
    let mut burst_served = Vec::new();
    for t in burst_threads {
        match t.join().expect("a burst thread panicked") {
            Ok(BurstEnd::Refused) => {
                assert!(
                    plan.pre_drain.is_zero(),
                    "refused during the pre-drain delay"
                );
                tally.refused += 1;
            }
            Ok(BurstEnd::Replied(client)) => {
                tally.responses += 1;
                burst_served.push(client);
            }
            Ok(BurstEnd::Reset) => {
                assert!(plan.pre_drain.is_zero(), "reset during the pre-drain delay");
                tally.unread += 1;
            }
            Ok(BurstEnd::Ended(me)) => {
                assert!(
                    plan.pre_drain.is_zero(),
                    "a connection made during the pre-drain delay ended unserved"
                );
                let read = log.read_by(me);
                assert!(
                    read.is_empty(),
                    "the server read {read:?} from {me} and never answered"
                );
                tally.unread += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    // Every request sent is read before the grace runs out.
    for d in clients.iter() {
        if let Some(sent) = &d.sent {
            assert!(
                log.wait_read(d.addr(), sent),
                "client {} not read: {sent:?}",
                d.index
            );
        }
    }
    // Idle connections accepted before the trigger end with the close
    // itself, before any clock moves (the grace is for late ones only).
    for d in clients.iter_mut().take(room) {
        if matches!(d.kind, Kind::Idle | Kind::Reuse | Kind::WaitTrigger) {
            d.finish(
                &mut tally,
                "after the close, though idle before the trigger",
            );
        }
    }
    // The deadline is armed at the close, unless nothing was left.
    let deadline = closed_at + plan.timeout;
    assert_deadline_armed(&clock, deadline, || server.has_returned());
    clock.advance(plan.grace);
    clock.advance(plan.timeout - plan.grace - Duration::from_millis(1));

    // Just before the deadline: every unforced client got its replies and
    // its connection ended; the forced ones are still working.
    let mut forced = Vec::new();
    for d in clients.iter_mut() {
        if plan.forced(d.kind) {
            forced.push(d.addr());
            continue;
        }
        d.finish(&mut tally, "just before the deadline");
    }
    for mut c in burst_served {
        assert!(c.closed_within(PATIENCE), "a burst connection stayed open");
    }
    let names = |o: &Outcome| -> Vec<String> {
        o.report()
            .map(|r| r.all_named().iter().map(|g| g.name.clone()).collect())
            .unwrap_or_default()
    };
    let outcome = if forced.is_empty() {
        let outcome = server.outcome();
        assert!(outcome.is_drained(), "{outcome}");
        assert_eq!(outcome.exit_code(), 0);
        outcome
    } else {
        assert_held(&server.shutdown, forced.len(), "just before the deadline");
        assert!(!server.has_returned(), "serve returned before the deadline");
        match (&script, plan.force_by_signal) {
            (Some(script), true) => script.send(Signal::Terminate),
            _ => clock.advance(Duration::from_millis(1)),
        }
        // Every forced connection lets go of its guard first (on std, a
        // handler blocked in a write lets go only once the cut ends it).
        // Only then does a flood's client read: reading earlier would let
        // its blocked writes go on before the force ended them.
        assert_held(&server.shutdown, 0, "after the force");
        for d in clients.iter_mut().filter(|d| plan.forced(d.kind)) {
            let cut = match d.kind {
                // What was in flight, then the end, not the whole reply.
                Kind::Flood(_) => d.client().ends_within(PATIENCE).is_some_and(|n| n <= BIG),
                _ => d.client().closed_within(PATIENCE),
            };
            assert!(cut, "forced client {} ({:?}) not cut", d.index, d.kind);
        }
        let outcome = server.outcome();
        let want = match plan.force_by_signal {
            true => ForceCause::Signal(Signal::Terminate),
            false => ForceCause::Deadline,
        };
        match &outcome {
            Outcome::Forced { cause, .. } => assert_eq!(*cause, want),
            other => panic!("expected a forced outcome, got {other}"),
        }
        assert_eq!(outcome.forced_count(), forced.len(), "{outcome}");
        let named = names(&outcome);
        for addr in &forced {
            let name = format!("conn {addr}");
            assert!(named.contains(&name), "{named:?} does not name {name}");
        }
        assert_eq!(outcome.exit_code(), want.exit_code());
        tally.forced += forced.len();
        outcome
    };
    let want_reason = match plan.by_signal {
        true => Reason::Signal(Signal::Terminate),
        false => Reason::requested(),
    };
    assert_eq!(
        format!("{:?}", outcome.reason().root()),
        format!("{:?}", want_reason),
        "the reason"
    );
    assert_held(&server.shutdown, 0, "after serve returned");
    tally
}
