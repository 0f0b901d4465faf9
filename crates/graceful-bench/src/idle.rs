//! Scenario 8: what an idle connection costs and how fast a stop lets go
//! of many, with the examples as real processes next to a hand-wired
//! tokio + hyper-util server (an accept loop and hyper-util's
//! `GracefulShutdown`) measured in the same run:
//!
//! - a: descriptors per idle connection;
//! - b: resident memory per idle connection (in full mode std_http twice:
//!   just after the opening, and once the threads the opening started have
//!   left, which 8c and f then stop too);
//! - c: SIGTERM to the last of N idle keep-alive connections closed;
//! - f: the CPU time the server spent in that stop, per connection: what
//!   the closes cost, and where c's time goes (the kernel's share is the
//!   floor's row);
//! - d: the last response to the process's exit, for a client that does
//!   not close its side (one request in flight at SIGTERM).

use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stats::{Kind, Row, Table};
use crate::Mode;

/// Idle connections per round.
const N: usize = 2000;
/// Connections being opened at once.
const OPENING: usize = 128;

/// A server under test: an example, or this binary's hand-wired peer.
#[derive(Clone, Copy)]
struct Server {
    name: &'static str,
    kind: Kind,
    program: Program,
    http: bool,
    /// Measured once the threads the opening started have left (the std
    /// runtime's pool keeps a thread 10 s after its last task).
    settled: bool,
}

#[derive(Clone, Copy)]
enum Program {
    /// The example of this name.
    Example(&'static str),
    /// This binary as the hand-wired peer.
    HandWired,
    /// This binary as the hand-wired peer that exits at SIGTERM without
    /// closing anything itself: the kernel closes every socket at the exit.
    /// What nothing in user space can beat: the floor of scenario 8c.
    ExitAtSigterm,
}

/// The floor of 8c: how fast the kernel closes N connections (and this
/// client sees them closed) when the server leaves it all to the exit.
const KERNEL: Server = Server {
    name: "no server close: exit at SIGTERM, the kernel closes every socket",
    kind: Kind::Floor,
    program: Program::ExitAtSigterm,
    http: true,
    settled: false,
};

/// std_http again, its idle connections measured (and stopped) once the
/// threads the opening started have left: what they cost after the burst
/// that opened them.
const STD_HTTP_SETTLED: Server = Server {
    name: "std_http, once the opening's threads left",
    kind: Kind::Ours,
    program: Program::Example("std_http"),
    http: true,
    settled: true,
};

const SERVERS: [Server; 7] = [
    Server {
        name: "tokio + hyper-util, hand-wired (GracefulShutdown)",
        kind: Kind::Floor,
        program: Program::HandWired,
        http: true,
        settled: false,
    },
    Server {
        name: "tokio_http",
        kind: Kind::Ours,
        program: Program::Example("tokio_http"),
        http: true,
        settled: false,
    },
    Server {
        name: "smol_http",
        kind: Kind::Ours,
        program: Program::Example("smol_http"),
        http: true,
        settled: false,
    },
    Server {
        name: "std_http",
        kind: Kind::Ours,
        program: Program::Example("std_http"),
        http: true,
        settled: false,
    },
    Server {
        name: "tokio_echo",
        kind: Kind::Ours,
        program: Program::Example("tokio_echo"),
        http: false,
        settled: false,
    },
    Server {
        name: "smol_echo",
        kind: Kind::Ours,
        program: Program::Example("smol_echo"),
        http: false,
        settled: false,
    },
    Server {
        name: "std_echo",
        kind: Kind::Ours,
        program: Program::Example("std_echo"),
        http: false,
        settled: false,
    },
];

/// Runs as the hand-wired peer: tokio, hyper-util's auto builder, and its
/// `GracefulShutdown` at SIGTERM (stop accepting, graceful shutdown of every
/// connection, exit 0), or, with `exit_at_sigterm`, exit 0 at once.
/// `GET` answers `hello` after `delay`, with a `server` header as the
/// examples do.
pub(crate) fn serve_hand_wired(delay: Duration, exit_at_sigterm: bool) -> ! {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening on {}", listener.local_addr().unwrap());
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        let builder = auto::Builder::new(TokioExecutor::new());
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let svc = service_fn(move |_| async move {
                        tokio::time::sleep(delay).await;
                        // The examples' answer, header included: hyper
                        // keeps a response's header map for the
                        // connection's next request, so the header costs
                        // every idle connection the same on both sides.
                        let mut res = Response::new(Full::<Bytes>::from("hello\n"));
                        res.headers_mut().insert(
                            hyper::header::SERVER,
                            hyper::header::HeaderValue::from_static("hand_wired"),
                        );
                        Ok::<_, Infallible>(res)
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
                _ = term.recv() => break,
            }
        }
        if exit_at_sigterm {
            std::process::exit(0);
        }
        drop(listener);
        tokio::select! {
            _ = graceful.shutdown() => {}
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
    });
    std::process::exit(0)
}

/// Where the examples are: next to this binary's profile directory, built
/// on first use with the same profile.
fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().to_path_buf();
    let dir = profile_dir.join("examples");
    let missing = SERVERS.iter().any(|s| match s.program {
        Program::Example(e) => !dir.join(e).exists(),
        _ => false,
    });
    if missing {
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        eprintln!("building the examples for scenario 8");
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo.args(["build", "--examples"]);
        if release {
            cargo.arg("--release");
        }
        assert!(cargo.status().unwrap().success(), "cargo build --examples");
    }
    dir
}

/// A server process, killed (and reaped) when dropped, so a round that
/// panics leaves nothing running.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        // Nothing is sent to a child already waited for.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(server: Server, delay_ms: u64) -> (Spawned, SocketAddr) {
    let delay_ms = delay_ms.to_string();
    let mut cmd = match server.program {
        Program::Example(example) => {
            let mut cmd = Command::new(examples_dir().join(example));
            cmd.args(["--addr", "127.0.0.1:0", "--delay-ms", &delay_ms]);
            cmd
        }
        Program::HandWired | Program::ExitAtSigterm => {
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            cmd.args(["--serve-hand-wired", &delay_ms]);
            if let Program::ExitAtSigterm = server.program {
                cmd.arg("exit-at-sigterm");
            }
            cmd
        }
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{}: {line:?}", server.name))
        .parse()
        .unwrap();
    (Spawned(child), addr)
}

fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// The CPU time (user and system) process `pid` used so far, all its
/// threads (ended ones too), in ms: its CPU-time clock.
fn cpu_ms(pid: u32) -> f64 {
    let pid = nix::unistd::Pid::from_raw(pid as i32);
    let clock = nix::time::clock_getcpuclockid(pid).expect("the server's CPU clock");
    let t = nix::time::clock_gettime(clock).expect("the server's CPU time");
    t.tv_sec() as f64 * 1e3 + t.tv_nsec() as f64 / 1e6
}

/// The CPU time (user and system) of every child this process reaped so
/// far, in ms.
fn reaped_cpu_ms() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap();
    let ms = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 * 1e3 + t.tv_usec() as f64 / 1e3;
    ms(usage.user_time()) + ms(usage.system_time())
}

fn rss_kib(pid: u32) -> f64 {
    status_field(pid, "VmRSS:", "kB")
}

fn threads(pid: u32) -> f64 {
    status_field(pid, "Threads:", "")
}

/// A number in `/proc/PID/status`.
fn status_field(pid: u32, field: &str, unit: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(unit).trim().parse().ok())
        .unwrap()
}

/// Sends SIGTERM to `child` with the `kill` system call (not the `kill`
/// command, whose fork and exec would be counted in what is measured).
pub(crate) fn sigterm(child: &Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
}

/// Opens a connection and completes one request on it (an HTTP `GET`, with
/// a 5-byte body if `body`, or an echoed line), leaving it open and idle.
async fn open(addr: SocketAddr, server: Server, body: bool) -> TcpStream {
    match try_open(addr, server.http, body).await {
        Ok(stream) => stream,
        Err(e) => panic!("{}: opening an idle connection: {e}", server.name),
    }
}

async fn try_open(addr: SocketAddr, http: bool, body: bool) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (request, end): (&[u8], &[u8]) = match (http, body) {
        (true, false) => (b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n", b"hello\n"),
        (true, true) => (
            b"GET / HTTP/1.1\r\nhost: bench\r\ncontent-length: 5\r\n\r\nhello",
            b"hello\n",
        ),
        (false, _) => (b"hi\n", b"hi\n"),
    };
    stream.write_all(request).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !got.ends_with(end) {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed before the response"));
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(stream)
}

/// Sends SIGTERM to `child` and watches `streams` for the server's close
/// (a FIN or a reset) on this thread alone, with one edge-triggered epoll
/// set: a few hundred ns per connection, where a task per connection on the
/// client's runtime added a wake-up, a poll and a read to every close.
/// Returns the times from the signal to the first and the last close.
///
/// The streams stay open until the caller drops them, so that the client's
/// own closes do not slow the detection of the server's.
fn sigterm_and_watch(child: &Child, streams: &[std::net::TcpStream]) -> (Duration, Duration) {
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap();
    let ended = EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR;
    for (i, s) in streams.iter().enumerate() {
        // Each stream's response was read in full, so nothing but the end
        // of the connection can make it ready.
        let interest = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
        epoll.add(s, EpollEvent::new(interest, i as u64)).unwrap();
    }
    let mut seen = vec![false; streams.len()];
    let mut left = streams.len();
    let mut events = vec![EpollEvent::empty(); 256];
    let (mut first, mut last) = (None, Duration::ZERO);
    let t0 = Instant::now();
    sigterm(child);
    while left > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{left} connections never closed"
        );
        let n = epoll
            .wait(&mut events, EpollTimeout::from(1000u16))
            .unwrap();
        let at = t0.elapsed();
        for e in &events[..n] {
            let i = e.data() as usize;
            if e.events().intersects(ended) && !std::mem::replace(&mut seen[i], true) {
                left -= 1;
                first.get_or_insert(at);
                last = at;
            }
        }
    }
    (first.unwrap_or(last), last)
}

struct IdleRound {
    fds_per_conn: f64,
    kib_per_conn: f64,
    first_ms: f64,
    close_ms: f64,
    /// The server's CPU time from the signal to its exit, per connection.
    stop_cpu_us: f64,
}

fn idle_round(client: &tokio::runtime::Runtime, server: Server) -> IdleRound {
    let (mut child, addr) = spawn(server, 0);
    let pid = child.0.id();
    // Warm up (first-use allocations, worker threads), then the baseline.
    client.block_on(open(addr, server, false));
    std::thread::sleep(Duration::from_millis(50));
    let (fds0, rss0, threads0) = (descriptors(pid), rss_kib(pid), threads(pid));
    let streams = client.block_on(async move {
        // At most OPENING connects at once: 2000 at once overflow a
        // listener's accept queue, the kernel falls back to SYN cookies, and
        // a connection whose cookie fails is reset: a client-side artifact.
        let opening = std::sync::Arc::new(tokio::sync::Semaphore::new(OPENING));
        let tasks: Vec<_> = (0..N)
            .map(|_| {
                let opening = opening.clone();
                tokio::spawn(async move {
                    let _permit = opening.acquire().await.unwrap();
                    open(addr, server, false).await
                })
            })
            .collect();
        let mut streams = Vec::with_capacity(N);
        for t in tasks {
            streams.push(t.await.unwrap());
        }
        streams
    });
    if server.settled {
        let until = Instant::now() + Duration::from_secs(30);
        while threads(pid) > threads0 {
            assert!(
                Instant::now() < until,
                "{}: threads never left",
                server.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    let (fds1, rss1) = (descriptors(pid), rss_kib(pid));
    let streams: Vec<_> = streams.into_iter().map(|s| s.into_std().unwrap()).collect();
    let (cpu_before, reaped_before) = (cpu_ms(pid), reaped_cpu_ms());
    let (first, last) = sigterm_and_watch(&child.0, &streams);
    let status = child.0.wait().unwrap();
    // The child's whole life, now that it is reaped, less what it ran
    // before the signal.
    let stop_cpu_ms = reaped_cpu_ms() - reaped_before - cpu_before;
    drop(streams);
    assert!(status.success(), "{}: {status}", server.name);
    IdleRound {
        // The warm-up connection is still counted in the baseline if the
        // server kept it: both sides of the difference see it.
        fds_per_conn: (fds1 as f64 - fds0 as f64) / N as f64,
        kib_per_conn: (rss1 - rss0) / N as f64,
        first_ms: first.as_secs_f64() * 1e3,
        close_ms: last.as_secs_f64() * 1e3,
        stop_cpu_us: stop_cpu_ms * 1e3 / N as f64,
    }
}

/// One request taking 200 ms in flight at SIGTERM, from a client that does
/// not close its side: ms from the response to the process's exit.
fn exit_after_last_response(client: &tokio::runtime::Runtime, server: Server, body: bool) -> f64 {
    let (mut child, addr) = spawn(server, 200);
    let (answered, stream) = client.block_on(async {
        let pending = tokio::spawn(open(addr, server, body));
        tokio::time::sleep(Duration::from_millis(50)).await;
        sigterm(&child.0);
        let stream = pending.await.unwrap();
        (Instant::now(), stream)
    });
    let status = child.0.wait().unwrap();
    let took = answered.elapsed();
    assert!(status.success(), "{}: {status}", server.name);
    drop(stream);
    took.as_secs_f64() * 1e3
}

pub(crate) fn idle_connections(mode: Mode) -> Vec<Table> {
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let rows = || -> Vec<Row> { SERVERS.iter().map(|s| Row::new(s.name, s.kind)).collect() };
    let (mut fds, mut kib, mut close, mut exit) = (rows(), rows(), rows(), rows());
    let mut cpu = rows();
    let http = SERVERS.iter().filter(|s| s.http);
    let mut exit_body: Vec<Row> = http.clone().map(|s| Row::new(s.name, s.kind)).collect();
    let mut firsts = vec![Vec::new(); SERVERS.len()];
    let mut kernel = Row::new(KERNEL.name, KERNEL.kind);
    let mut kernel_cpu = Row::new(KERNEL.name, KERNEL.kind);
    // Full mode only: 10 s more per round.
    let settled = mode.pick(None, Some(STD_HTTP_SETTLED));
    let (mut settled_rows, mut settled_firsts) = (vec![Vec::new(); 4], Vec::new());
    for _ in 0..mode.pick(3, 7) {
        let r = idle_round(&client, KERNEL);
        kernel.samples.push(r.close_ms);
        kernel_cpu.samples.push(r.stop_cpu_us);
        if let Some(server) = settled {
            let r = idle_round(&client, server);
            let values = [r.fds_per_conn, r.kib_per_conn, r.close_ms, r.stop_cpu_us];
            for (samples, v) in settled_rows.iter_mut().zip(values) {
                samples.push(v);
            }
            settled_firsts.push(r.first_ms);
        }
        for (i, &server) in SERVERS.iter().enumerate() {
            let r = idle_round(&client, server);
            fds[i].samples.push(r.fds_per_conn);
            kib[i].samples.push(r.kib_per_conn);
            close[i].samples.push(r.close_ms);
            cpu[i].samples.push(r.stop_cpu_us);
            firsts[i].push(r.first_ms);
            exit[i]
                .samples
                .push(exit_after_last_response(&client, server, false));
        }
        for (row, &server) in exit_body.iter_mut().zip(http.clone()) {
            let ms = exit_after_last_response(&client, server, true);
            row.samples.push(ms);
        }
    }
    let mut servers = SERVERS.to_vec();
    if let Some(server) = settled {
        // Next to std_http's rows.
        let at = 1 + SERVERS.iter().position(|s| s.name == "std_http").unwrap();
        servers.insert(at, server);
        firsts.insert(at, settled_firsts);
        for (rows, samples) in [&mut fds, &mut kib, &mut close, &mut cpu]
            .into_iter()
            .zip(settled_rows)
        {
            let mut row = Row::new(server.name, server.kind);
            row.samples = samples;
            rows.insert(at, row);
        }
    }
    for ((row, server), first) in close.iter_mut().zip(servers).zip(firsts) {
        let what = match server.http {
            true => "HTTP/1.1 keep-alive connections, idle after one request",
            false => "TCP connections, idle after one echoed line",
        };
        row.note = format!(
            "first closed after {:.1} ms; {N} {what}",
            crate::stats::median(&first)
        );
    }
    // In 8c the kernel is the floor and the hand-wired server a peer.
    close[0].kind = Kind::Peer;
    close.insert(0, kernel);
    cpu[0].kind = Kind::Peer;
    cpu.insert(0, kernel_cpu);
    vec![
        Table {
            title: format!("8a. descriptors per idle connection ({N} open)"),
            unit: "descriptors",
            lower_is_better: true,
            rows: fds,
        },
        Table {
            title: format!("8b. resident memory per idle connection ({N} open)"),
            unit: "KiB",
            lower_is_better: true,
            rows: kib,
        },
        Table {
            title: format!("8c. SIGTERM to the last of {N} idle connections closed"),
            unit: "ms",
            lower_is_better: true,
            rows: close,
        },
        Table {
            title: "8d. last response to exit (a request in flight at SIGTERM, the client keeps its side open)".into(),
            unit: "ms",
            lower_is_better: true,
            rows: exit,
        },
        Table {
            title: "8e. the same, the request with a body the server read whole".into(),
            unit: "ms",
            lower_is_better: true,
            rows: exit_body,
        },
        Table {
            title: "8f. the server's CPU time (user + system) from SIGTERM to its exit in 8c, per connection".into(),
            unit: "µs",
            lower_is_better: true,
            rows: cpu,
        },
    ]
}
