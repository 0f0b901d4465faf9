//! Scenario 8: what an idle connection costs and how fast a stop lets go
//! of many, with the examples as real processes next to a hand-wired
//! tokio + hyper-util server (an accept loop and hyper-util's
//! `GracefulShutdown`) measured in the same run:
//!
//! - a: descriptors per idle connection;
//! - b: resident memory per idle connection;
//! - c: SIGTERM to the last of N idle keep-alive connections closed;
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
    /// The example's name, or `None` for the hand-wired peer.
    example: Option<&'static str>,
    http: bool,
}

const SERVERS: [Server; 7] = [
    Server {
        name: "tokio + hyper-util, hand-wired (GracefulShutdown)",
        kind: Kind::Floor,
        example: None,
        http: true,
    },
    Server {
        name: "tokio_http",
        kind: Kind::Ours,
        example: Some("tokio_http"),
        http: true,
    },
    Server {
        name: "smol_http",
        kind: Kind::Ours,
        example: Some("smol_http"),
        http: true,
    },
    Server {
        name: "std_http",
        kind: Kind::Ours,
        example: Some("std_http"),
        http: true,
    },
    Server {
        name: "tokio_echo",
        kind: Kind::Ours,
        example: Some("tokio_echo"),
        http: false,
    },
    Server {
        name: "smol_echo",
        kind: Kind::Ours,
        example: Some("smol_echo"),
        http: false,
    },
    Server {
        name: "std_echo",
        kind: Kind::Ours,
        example: Some("std_echo"),
        http: false,
    },
];

/// Runs as the hand-wired peer: tokio, hyper-util's auto builder, and its
/// `GracefulShutdown` at SIGTERM (stop accepting, graceful shutdown of every
/// connection, exit 0). `GET` answers `hello` after `delay`.
pub(crate) fn serve_hand_wired(delay: Duration) -> ! {
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
                        Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("hello\n")))
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
    let missing = SERVERS
        .iter()
        .filter_map(|s| s.example)
        .any(|e| !dir.join(e).exists());
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
    let mut cmd = match server.example {
        Some(example) => {
            let mut cmd = Command::new(examples_dir().join(example));
            cmd.args(["--addr", "127.0.0.1:0", "--delay-ms", &delay_ms.to_string()]);
            cmd
        }
        None => {
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            cmd.args(["--serve-hand-wired", &delay_ms.to_string()]);
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

fn rss_kib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Sends SIGTERM to `child` with the `kill` command.
pub(crate) fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Opens a connection and completes one request on it (an HTTP `GET` or
/// an echoed line), leaving it open and idle.
async fn open(addr: SocketAddr, server: Server) -> TcpStream {
    match try_open(addr, server.http).await {
        Ok(stream) => stream,
        Err(e) => panic!("{}: opening an idle connection: {e}", server.name),
    }
}

async fn try_open(addr: SocketAddr, http: bool) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (request, end): (&[u8], &[u8]) = match http {
        true => (b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n", b"hello\n"),
        false => (b"hi\n", b"hi\n"),
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

/// Reads until the server ends the connection; returns when it did, and
/// the stream (closed later, so that the client's own closes do not slow
/// the detection of the server's).
async fn closed(mut stream: TcpStream) -> (Instant, TcpStream) {
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return (Instant::now(), stream),
            Ok(_) => {}
        }
    }
}

struct IdleRound {
    fds_per_conn: f64,
    kib_per_conn: f64,
    first_ms: f64,
    close_ms: f64,
}

fn idle_round(client: &tokio::runtime::Runtime, server: Server) -> IdleRound {
    let (mut child, addr) = spawn(server, 0);
    let pid = child.0.id();
    // Warm up (first-use allocations, worker threads), then the baseline.
    client.block_on(open(addr, server));
    std::thread::sleep(Duration::from_millis(50));
    let (fds0, rss0) = (descriptors(pid), rss_kib(pid));
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
                    open(addr, server).await
                })
            })
            .collect();
        let mut streams = Vec::with_capacity(N);
        for t in tasks {
            streams.push(t.await.unwrap());
        }
        streams
    });
    std::thread::sleep(Duration::from_millis(100));
    let (fds1, rss1) = (descriptors(pid), rss_kib(pid));
    let (first, last) = client.block_on(async {
        let waits: Vec<_> = streams
            .into_iter()
            .map(|s| tokio::spawn(closed(s)))
            .collect();
        let t0 = Instant::now();
        sigterm(&child.0);
        let (mut first, mut last) = (Duration::MAX, Duration::ZERO);
        let mut ended = Vec::with_capacity(N);
        for w in waits {
            let (t, stream) = w.await.unwrap();
            ended.push(stream);
            first = first.min(t - t0);
            last = last.max(t - t0);
        }
        (first, last)
    });
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{}: {status}", server.name);
    IdleRound {
        // The warm-up connection is still counted in the baseline if the
        // server kept it: both sides of the difference see it.
        fds_per_conn: (fds1 as f64 - fds0 as f64) / N as f64,
        kib_per_conn: (rss1 - rss0) / N as f64,
        first_ms: first.as_secs_f64() * 1e3,
        close_ms: last.as_secs_f64() * 1e3,
    }
}

/// One request taking 200 ms in flight at SIGTERM, from a client that does
/// not close its side: ms from the response to the process's exit.
fn exit_after_last_response(client: &tokio::runtime::Runtime, server: Server) -> f64 {
    let (mut child, addr) = spawn(server, 200);
    let (answered, stream) = client.block_on(async {
        let pending = tokio::spawn(open(addr, server));
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
    let mut firsts = vec![Vec::new(); SERVERS.len()];
    for _ in 0..mode.pick(3, 7) {
        for (i, &server) in SERVERS.iter().enumerate() {
            let r = idle_round(&client, server);
            fds[i].samples.push(r.fds_per_conn);
            kib[i].samples.push(r.kib_per_conn);
            close[i].samples.push(r.close_ms);
            firsts[i].push(r.first_ms);
            exit[i]
                .samples
                .push(exit_after_last_response(&client, server));
        }
    }
    for ((row, server), first) in close.iter_mut().zip(SERVERS).zip(firsts) {
        let what = match server.http {
            true => "HTTP/1.1 keep-alive connections, idle after one request",
            false => "TCP connections, idle after one echoed line",
        };
        row.note = format!(
            "first closed after {:.1} ms; {N} {what}",
            crate::stats::median(&first)
        );
    }
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
    ]
}
