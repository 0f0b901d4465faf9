//! Scenario 6: HTTP requests/s and p99 latency through
//! `graceful_tokio::http::serve`, against the same hyper service behind a
//! plain accept loop; and 6b, `graceful_std::http::serve` against a plain
//! thread-per-connection loop that drives hyper with blocking reads (the
//! approach of the `astra` crate).

use graceful_core::Reason;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

use crate::stats::{Kind, Row, Table};
use crate::Mode;

const CONNECTIONS: usize = 64;

async fn hello(_: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::from("hello\n")))
}

/// A server under test, stopped by `stop`.
struct Running {
    addr: SocketAddr,
    stop: Box<dyn FnOnce(&tokio::runtime::Runtime) + Send>,
}

fn plain(rt: &tokio::runtime::Runtime) -> Running {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let task = rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http1().timer(TokioTimer::new());
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service_fn(hello))
                    .await;
            });
        }
    });
    Running {
        addr,
        stop: Box::new(move |_| task.abort()),
    }
}

fn graceful(rt: &tokio::runtime::Runtime) -> Running {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = graceful_core::Shutdown::new();
    let s = shutdown.clone();
    let task = rt.spawn(async move {
        let config = graceful_core::ServeConfig::default().progress_every(None);
        graceful_tokio::http::serve(listener, &s, config, service_fn(hello)).await
    });
    Running {
        addr,
        stop: Box::new(move |rt| {
            shutdown.trigger(Reason::requested());
            let _ = rt.block_on(task);
        }),
    }
}

/// A plain thread-per-connection server: hyper's HTTP/1 state machine on
/// each connection's thread with a non-blocking socket, the thread waiting
/// in `poll(2)` on that socket whenever hyper is pending (the approach of
/// the `astra` crate), with none of graceful's machinery. Its accept loop
/// ends at `stop`; its connections end when their clients close.
fn plain_threads(_: &tokio::runtime::Runtime) -> Running {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = stop.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stopping.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || {
                stream.set_nonblocking(true).unwrap();
                let stream = Arc::new(stream);
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(NonBlocking(stream.clone()), service_fn(hello));
                let mut conn = std::pin::pin!(conn);
                // hyper wakes itself when it yields: then poll again at once.
                let woken = Arc::new(Woken::default());
                let waker = std::task::Waker::from(woken.clone());
                let mut cx = std::task::Context::from_waker(&waker);
                while std::future::Future::poll(conn.as_mut(), &mut cx).is_pending() {
                    use std::os::fd::AsFd;
                    if woken.0.swap(false, std::sync::atomic::Ordering::SeqCst) {
                        continue;
                    }
                    let mut fds = [nix::poll::PollFd::new(
                        stream.as_fd(),
                        nix::poll::PollFlags::POLLIN,
                    )];
                    let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE);
                }
            });
        }
    });
    Running {
        addr,
        stop: Box::new(move |_| {
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            // Wake the accept loop so it sees the flag and ends.
            let _ = std::net::TcpStream::connect(addr);
        }),
    }
}

#[derive(Default)]
struct Woken(std::sync::atomic::AtomicBool);

impl std::task::Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A non-blocking socket as hyper's I/O: `WouldBlock` is `Pending`, and the
/// connection's thread polls the socket.
struct NonBlocking(Arc<std::net::TcpStream>);

impl hyper::rt::Read for NonBlocking {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::io::Read;
        let mut chunk = [0u8; 8192];
        let want = buf.remaining().min(chunk.len());
        match (&*self.0).read(&mut chunk[..want]) {
            Ok(n) => {
                buf.put_slice(&chunk[..n]);
                std::task::Poll::Ready(Ok(()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::task::Poll::Pending,
            Err(e) => std::task::Poll::Ready(Err(e)),
        }
    }
}

impl hyper::rt::Write for NonBlocking {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match std::io::Write::write(&mut &*self.0, buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::task::Poll::Pending,
            done => std::task::Poll::Ready(done),
        }
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(self.0.shutdown(std::net::Shutdown::Write))
    }
}

fn graceful_std(_: &tokio::runtime::Runtime) -> Running {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = graceful_core::Shutdown::new();
    let s = shutdown.clone();
    let server = std::thread::spawn(move || {
        let config = graceful_core::ServeConfig::default().progress_every(None);
        let rt = graceful_std::Runtime::new().unwrap();
        rt.block_on(graceful_std::http::serve(
            listener,
            &s,
            config,
            service_fn(hello),
        ))
    });
    Running {
        addr,
        stop: Box::new(move |_| {
            shutdown.trigger(Reason::requested());
            let _ = server.join();
        }),
    }
}

/// Drives `addr` with 64 keep-alive connections for `duration`; returns
/// requests/s and the p99 latency in µs.
fn load(client: &tokio::runtime::Runtime, addr: SocketAddr, duration: Duration) -> (f64, f64) {
    let deadline = Instant::now() + duration;
    let results = client.block_on(async move {
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|_| {
                tokio::spawn(async move {
                    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                    stream.set_nodelay(true).unwrap();
                    let (mut send, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream))
                            .await
                            .unwrap();
                    tokio::spawn(conn);
                    let mut latencies = Vec::new();
                    while Instant::now() < deadline {
                        let req = Request::get("/")
                            .header("host", "bench")
                            .body(Empty::<Bytes>::new())
                            .unwrap();
                        let t0 = Instant::now();
                        send.ready().await.unwrap();
                        let res = send.send_request(req).await.unwrap();
                        let _ = res.into_body().collect().await.unwrap();
                        latencies.push(t0.elapsed().as_micros() as u32);
                    }
                    latencies
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let mut lat = results;
    lat.sort_unstable();
    let p99 = lat[(lat.len() * 99 / 100).min(lat.len() - 1)] as f64;
    (lat.len() as f64 / duration.as_secs_f64(), p99)
}

type Start = fn(&tokio::runtime::Runtime) -> Running;

pub(crate) fn requests_per_second(mode: Mode) -> Vec<Table> {
    vec![
        measure(
            mode,
            "6. HTTP/1.1 requests through the server",
            [
                (
                    "plain accept loop + hyper-util auto",
                    Kind::Floor,
                    plain as Start,
                ),
                ("graceful_tokio::http::serve", Kind::Ours, graceful),
            ],
        ),
        measure(
            mode,
            "6b. HTTP/1.1 requests through a thread-per-connection server",
            [
                (
                    "plain thread per connection + hyper, poll(2) per thread (astra-style)",
                    Kind::Floor,
                    plain_threads as Start,
                ),
                ("graceful_std::http::serve", Kind::Ours, graceful_std),
            ],
        ),
    ]
}

fn measure(mode: Mode, title: &str, servers: [(&'static str, Kind, Start); 2]) -> Table {
    let one_worker = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    };
    // One core for the server, one for the load generator.
    let server_rt = Arc::new(one_worker());
    let client_rt = one_worker();
    let duration = Duration::from_millis(mode.pick(1500, 4000));
    let mut rows: Vec<Row> = servers
        .iter()
        .map(|(name, kind, _)| Row::new(name, *kind))
        .collect();
    let mut p99s = vec![Vec::new(), Vec::new()];
    // Warm up both.
    for (_, _, start) in servers {
        let s = start(&server_rt);
        load(&client_rt, s.addr, Duration::from_millis(300));
        (s.stop)(&server_rt);
    }
    for _ in 0..mode.pick(3, 6) {
        for (i, (_, _, start)) in servers.into_iter().enumerate() {
            let s = start(&server_rt);
            let (rps, p99) = load(&client_rt, s.addr, duration);
            (s.stop)(&server_rt);
            rows[i].samples.push(rps);
            p99s[i].push(p99);
        }
    }
    for (row, p) in rows.iter_mut().zip(p99s) {
        row.note = format!(
            "p99 {:.0} µs; {CONNECTIONS} keep-alive connections",
            crate::stats::median(&p)
        );
    }
    Table {
        title: title.into(),
        unit: "requests/s",
        lower_is_better: false,
        rows,
    }
}
