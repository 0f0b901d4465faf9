//! A server under test on a thread of its own, and blocking loopback
//! clients to drive it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use graceful_core::{ForceCause, Outcome, Reason, Runtime, ServeConfig, Shutdown};

use crate::clock::{ManualClock, TestRuntime};
use crate::{fixture, Adapter};

/// How long any single wait in a scenario may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A server running [`fixture::line_service`] through an adapter's `serve`.
pub struct Server<A: Adapter> {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The shutdown passed to `serve`.
    pub shutdown: Shutdown,
    /// The runtime the server uses (with the manual clock, if any).
    pub rt: TestRuntime<A::Runtime>,
    done: mpsc::Receiver<io::Result<Outcome>>,
    thread: Option<JoinHandle<()>>,
    outcome_taken: bool,
}

/// What to start a [`Server`] with.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server's configuration.
    pub config: ServeConfig,
    /// Time the drain with a manual clock instead of real time.
    pub manual_clock: bool,
    /// The shutdown to serve under (a new one by default).
    pub shutdown: Option<Shutdown>,
    /// Sees each command the server reads.
    pub observer: fixture::Observer,
    /// The handlers tell the server when they wait for a next command with
    /// every command read answered (the stream's `idle`), so that it shuts
    /// such a connection down when its listener closes, before they run.
    pub tell_idle: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            config: ServeConfig::default().progress_every(None),
            manual_clock: false,
            shutdown: None,
            observer: fixture::Observer::default(),
            tell_idle: false,
        }
    }
}

impl Options {
    /// Default options with this configuration.
    pub fn config(config: ServeConfig) -> Self {
        Options {
            config,
            ..Options::default()
        }
    }

    /// With a manual clock.
    pub fn manual(mut self) -> Self {
        self.manual_clock = true;
        self
    }

    /// With [`ServeConfig::close_idle`] set.
    pub fn config_close_idle(mut self, close_idle: bool) -> Self {
        self.config = self.config.close_idle(close_idle);
        self
    }

    /// With each command the server reads seen by `observer`.
    pub fn observed(mut self, observer: fixture::Observer) -> Self {
        self.observer = observer;
        self
    }

    /// With [`Options::tell_idle`] set.
    pub fn telling_idle(mut self, tell_idle: bool) -> Self {
        self.tell_idle = tell_idle;
        self
    }

    /// Serving under `shutdown`.
    pub fn under(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = Some(shutdown);
        self
    }
}

impl<A: Adapter> Server<A> {
    /// Starts a server with `options`.
    pub fn start(options: Options) -> Server<A> {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        Server::start_on(listener, options)
    }

    /// Starts a server with `options` on `listener`, which may already
    /// hold connections in its backlog.
    pub fn start_on(listener: TcpListener, options: Options) -> Server<A> {
        let addr = listener.local_addr().unwrap();
        let shutdown = options.shutdown.unwrap_or_default();
        let clock = options.manual_clock.then(ManualClock::new);
        let rt = TestRuntime::new(A::runtime(), clock);
        let (tx, done) = mpsc::channel();
        let thread = {
            let rt = rt.clone();
            let shutdown = shutdown.clone();
            let (config, observer) = (options.config, options.observer);
            let idle = options.tell_idle.then_some(A::idle as fn(&A::Stream) -> _);
            std::thread::Builder::new()
                .name(format!("server {addr}"))
                .spawn(move || {
                    let handler = fixture::handler::<A::Stream, _>(rt.clone(), observer, idle);
                    let outcome = rt.block_on(A::serve(&rt, listener, &shutdown, config, handler));
                    let _ = tx.send(outcome);
                })
                .unwrap()
        };
        Server {
            addr,
            shutdown,
            rt,
            done,
            thread: Some(thread),
            outcome_taken: false,
        }
    }

    /// The manual clock.
    ///
    /// # Panics
    ///
    /// If the server was started without one.
    pub fn clock(&self) -> &ManualClock {
        self.rt.clock().expect("started without a manual clock")
    }

    /// Connects a client.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Triggers the server's shutdown with a request.
    pub fn stop(&self) {
        self.shutdown.trigger(Reason::requested());
    }

    /// The outcome, if `serve` returned within `within`.
    pub fn outcome_within(&mut self, within: Duration) -> Option<io::Result<Outcome>> {
        match self.done.recv_timeout(within) {
            Ok(outcome) => {
                self.outcome_taken = true;
                if let Some(t) = self.thread.take() {
                    t.join().expect("the server thread panicked");
                }
                Some(outcome)
            }
            Err(_) => None,
        }
    }

    /// The outcome of `serve`; fails the scenario if it takes longer than
    /// [`PATIENCE`] or is an error.
    pub fn outcome(&mut self) -> Outcome {
        self.outcome_within(PATIENCE)
            .expect("serve did not return in time")
            .expect("serve failed")
    }

    /// Whether `serve` has returned (without taking its outcome).
    pub fn has_returned(&self) -> bool {
        self.thread.as_ref().map_or(true, |t| t.is_finished())
    }

    /// Asserts that `serve` has not returned yet (waiting `for_` to be sure).
    pub fn assert_running(&mut self, for_: Duration) {
        if let Some(outcome) = self.outcome_within(for_) {
            panic!("serve returned early: {outcome:?}");
        }
    }

    /// Waits (at most [`PATIENCE`]) until the shutdown's report names the
    /// connection `name` (`conn ADDR`): the server accepted it, it is no
    /// longer queued.
    pub fn wait_accepted(&self, name: &str) {
        assert!(
            eventually(PATIENCE, || self
                .shutdown
                .report()
                .all_named()
                .iter()
                .any(|g| g.name == name)),
            "{name} was never accepted"
        );
    }
}

impl<A: Adapter> std::fmt::Debug for Server<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("shutdown", &self.shutdown)
            .finish_non_exhaustive()
    }
}

impl<A: Adapter> Drop for Server<A> {
    fn drop(&mut self) {
        if !self.outcome_taken {
            // A failed scenario: stop what is left so no thread outlives it.
            self.shutdown.force(ForceCause::Requested);
            if let Some(clock) = self.rt.clock() {
                clock.advance(Duration::from_secs(3600));
            }
            let _ = self.done.recv_timeout(PATIENCE);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A blocking loopback client speaking the fixture's line protocol.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Waits until what this client sent reached the server's socket (see
    /// [`delivered`]).
    pub fn delivered(&self) {
        delivered(&self.stream);
    }

    /// Connects to `addr`; reads time out after [`PATIENCE`].
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr).expect("connect")
    }

    /// Connects a client, or says why it could not.
    pub fn try_connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, PATIENCE)?;
        stream.set_read_timeout(Some(PATIENCE))?;
        stream.set_nodelay(true)?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Client { stream, reader })
    }

    /// The client's own address.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    /// Sends one line.
    pub fn send(&mut self, line: &str) {
        self.try_send(line).expect("send");
    }

    /// Sends one line (several, in one write, if it has newlines inside),
    /// or says why it could not.
    pub fn try_send(&mut self, line: &str) -> io::Result<()> {
        self.stream.write_all(format!("{line}\n").as_bytes())
    }

    /// Reads one line (without its newline).
    pub fn read_line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end_matches('\n').to_string())
    }

    /// Sends `line` and expects `reply`.
    pub fn roundtrip(&mut self, line: &str, reply: &str) {
        self.send(line);
        assert_eq!(self.read_line().expect("a reply"), reply);
    }

    /// Whether the server ends the connection within `within`: end-of-stream
    /// or a reset, with nothing else read before it.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        self.reader
            .get_ref()
            .set_read_timeout(Some(within))
            .unwrap();
        let mut line = String::new();
        let closed = match self.reader.read_line(&mut line) {
            Ok(0) => true,
            Ok(_) => panic!("expected the connection to end, read {line:?}"),
            Err(e) => !is_timeout(&e),
        };
        self.reader
            .get_ref()
            .set_read_timeout(Some(PATIENCE))
            .unwrap();
        closed
    }

    /// Whether the server ends the connection within `within`, whatever
    /// it sends before its end (read and dropped): how many bytes came
    /// before the end, `None` if it did not end in time.
    pub fn ends_within(&mut self, within: Duration) -> Option<usize> {
        ends_within(&mut self.reader, within)
    }

    /// Whether the server has not answered within `within` (and the
    /// connection is still open).
    pub fn silent_for(&mut self, within: Duration) -> bool {
        self.reader
            .get_ref()
            .set_read_timeout(Some(within))
            .unwrap();
        let mut line = String::new();
        let silent = match self.reader.read_line(&mut line) {
            Ok(_) => false,
            Err(e) => is_timeout(&e),
        };
        self.reader
            .get_ref()
            .set_read_timeout(Some(PATIENCE))
            .unwrap();
        silent
    }
}

/// A `serve` run on a thread of its own until the test cancels it (drops
/// it, as a `select!` does). The thread keeps the runtime alive until this
/// is dropped: a runtime dropped at once would drop the connections' tasks
/// itself, and hide what the cancelled `serve` left them to.
pub(crate) struct Cancellable {
    pub(crate) addr: SocketAddr,
    cancel: Option<futures::channel::oneshot::Sender<()>>,
    returned: mpsc::Receiver<()>,
    end: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Cancellable {
    /// Binds a listener and runs `run(listener, cancelled)` on a new
    /// thread: it serves on its runtime until `cancelled` resolves, and
    /// returns the runtime, kept until this is dropped.
    pub(crate) fn start<F, K>(run: F) -> Cancellable
    where
        F: FnOnce(TcpListener, futures::channel::oneshot::Receiver<()>) -> K + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (cancel, cancelled) = futures::channel::oneshot::channel();
        let (returned_tx, returned) = mpsc::channel();
        let (end, ended) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = run(listener, cancelled);
            let _ = returned_tx.send(());
            let _ = ended.recv();
            drop(runtime);
        });
        Cancellable {
            addr,
            cancel: Some(cancel),
            returned,
            end: Some(end),
            thread: Some(thread),
        }
    }

    /// Cancels the `serve` and waits until it was dropped.
    pub(crate) fn cancel(&mut self) {
        if let Some(cancel) = self.cancel.take() {
            cancel.send(()).unwrap();
        }
        self.returned
            .recv_timeout(PATIENCE)
            .expect("serve was dropped");
    }
}

impl Drop for Cancellable {
    fn drop(&mut self) {
        drop(self.end.take());
        drop(self.cancel.take());
        if let Some(thread) = self.thread.take() {
            let joined = thread.join();
            if !std::thread::panicking() {
                joined.expect("the serving thread panicked");
            }
        }
    }
}

/// The size of the replies that block the server's writes (the line
/// service's `big`, the HTTP service's `GET /big`): 16 MiB, past what
/// loopback buffers take from a client that stopped reading early (with
/// Linux's default `tcp_wmem` maximum of 4 MiB; its receive window does
/// not grow while it does not read). On a host whose send buffers take
/// more, the reply is written whole at once, and the randomized stops
/// fail saying that a forced client let go of its guard before the
/// deadline.
pub const BIG: usize = 16 << 20;

/// Whether a read error is a read timeout.
pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Whether the server ends the connection read by `reader` within
/// `within`, whatever it sends before its end (read and dropped): how many
/// bytes came before the end, `None` if it did not end in time.
pub(crate) fn ends_within(reader: &mut BufReader<TcpStream>, within: Duration) -> Option<usize> {
    let until = Instant::now() + within;
    let mut sink = [0u8; 64 << 10];
    let mut read = 0;
    let ended = loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break None;
        }
        reader.get_ref().set_read_timeout(Some(left)).unwrap();
        match reader.read(&mut sink) {
            Ok(0) => break Some(read),
            Ok(n) => read += n,
            Err(e) if is_timeout(&e) => break None,
            Err(_) => break Some(read),
        }
    };
    reader.get_ref().set_read_timeout(Some(PATIENCE)).unwrap();
    ended
}

/// Whether a connect to `addr` is refused within `within` (retrying while
/// it is still accepted).
pub fn refused_within(addr: SocketAddr, within: Duration) -> bool {
    let until = Instant::now() + within;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return true,
            _ if Instant::now() >= until => return false,
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Polls `cond` until it holds or `within` passes; returns whether it held.
/// For conditions with no event to wait on from outside the server.
pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// How many of this process's descriptors refer to established TCP
/// connections whose local port is `port` (a server's accepted
/// connections), from `/proc/self/fd` and `/proc/net/tcp`. Linux only.
pub fn descriptors_of_connections_on(port: u16) -> io::Result<usize> {
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    let inodes: std::collections::HashSet<String> = table
        .lines()
        .skip(1)
        .filter_map(|row| {
            let cols: Vec<&str> = row.split_whitespace().collect();
            let local_port = u16::from_str_radix(cols.get(1)?.rsplit(':').next()?, 16).ok()?;
            // State 01 is ESTABLISHED; column 9 is the socket's inode.
            (local_port == port && *cols.get(3)? == "01")
                .then(|| cols.get(9).map(|s| s.to_string()))?
        })
        .collect();
    let mut count = 0;
    for fd in std::fs::read_dir("/proc/self/fd")? {
        let Ok(target) = std::fs::read_link(fd?.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            count += usize::from(inodes.contains(inode));
        }
    }
    Ok(count)
}

/// Waits (at most [`PATIENCE`]) until every byte sent on `stream` reached
/// the server's socket: its kernel acknowledged them (on Linux, the
/// socket's unacknowledged bytes in `/proc/net/tcp` are none; elsewhere
/// this returns at once). What a server does with bytes can only depend on
/// what reached its socket: bytes still on their way when it closes an
/// idle connection are lost to any server, so a scenario that sends before
/// a stop and counts on the server seeing them waits for this first (on a
/// loaded machine the kernel may deliver loopback bytes later than the
/// sender's write returns).
pub fn delivered(stream: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        let hex = |a: SocketAddr| match a {
            SocketAddr::V4(a) => {
                format!(
                    "{:08X}:{:04X}",
                    u32::from_le_bytes(a.ip().octets()),
                    a.port()
                )
            }
            SocketAddr::V6(_) => String::new(),
        };
        if stream.local_addr().is_ok_and(|a| a.is_ipv6()) {
            // `/proc/net/tcp6` is not read: the scenarios connect over IPv4.
            return;
        }
        let (local, peer) = (stream.local_addr().unwrap(), stream.peer_addr().unwrap());
        let key = format!("{} {}", hex(local), hex(peer));
        let unacked = || -> Option<u64> {
            let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
            let line = table.lines().find(|l| l.contains(&key))?;
            let queues = line.split_whitespace().nth(4)?;
            u64::from_str_radix(queues.split(':').next()?, 16).ok()
        };
        assert!(
            eventually(PATIENCE, || unacked() == Some(0)),
            "the bytes sent on {local} never reached the server ({:?} unacknowledged)",
            unacked()
        );
    }
    #[cfg(not(target_os = "linux"))]
    let _ = stream;
}
