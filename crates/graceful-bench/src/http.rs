//! Scenario 6: HTTP requests/s and p99 latency through
//! `graceful_tokio::http::serve`, against the same hyper service behind a
//! plain accept loop.

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

pub(crate) fn requests_per_second(mode: Mode) -> Table {
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
    let mut rows = vec![
        Row::new("plain accept loop + hyper-util auto", Kind::Floor),
        Row::new("graceful_tokio::http::serve", Kind::Ours),
    ];
    let mut p99s = vec![Vec::new(), Vec::new()];
    // Warm up both.
    for start in [plain as fn(&tokio::runtime::Runtime) -> Running, graceful] {
        let s = start(&server_rt);
        load(&client_rt, s.addr, Duration::from_millis(300));
        (s.stop)(&server_rt);
    }
    for _ in 0..mode.pick(3, 6) {
        for (i, start) in [plain as fn(&tokio::runtime::Runtime) -> Running, graceful]
            .into_iter()
            .enumerate()
        {
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
        title: "6. HTTP/1.1 requests through the server".into(),
        unit: "requests/s",
        lower_is_better: false,
        rows,
    }
}
