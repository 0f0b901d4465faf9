//! A rolling restart on loopback, with this test playing the kubelet and
//! the load balancer: instances of `tokio_http` behind a small proxy that
//! routes only to instances whose `/healthz` answers 200 (checked every
//! 100 ms); steady load from keep-alive clients; new instances started,
//! old ones sent SIGTERM with a pre-drain delay, one after the other.
//! No client request may fail.
//!
//! Like real load balancers (Envoy `retry_on: reset,connect-failure`,
//! nginx `proxy_next_upstream`), the proxy retries an idempotent request
//! once on another instance when it got no response at all. Each instance
//! logs the requests it read, so the test also proves that no request was
//! processed twice and that every answer came from exactly one instance.

mod common;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::load::{read_ids, Counts, Load};
use common::{Service, PATIENCE};
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1 as server_http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Backend {
    name: &'static str,
    addr: SocketAddr,
    ready: AtomicBool,
    unready_at: Mutex<Option<Instant>>,
    routed: AtomicU64,
}

struct Proxy {
    backends: Mutex<Vec<Arc<Backend>>>,
    next: AtomicUsize,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    retries: AtomicU64,
    no_backend: AtomicU64,
}

impl Proxy {
    fn pick(&self) -> Option<Arc<Backend>> {
        let backends = self.backends.lock().unwrap();
        let ready: Vec<_> = backends
            .iter()
            .filter(|b| b.ready.load(Ordering::SeqCst))
            .collect();
        if ready.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % ready.len();
        Some(ready[i].clone())
    }

    async fn forward(&self, path: String) -> Response<Full<Bytes>> {
        for attempt in 0..2 {
            let Some(backend) = self.pick() else {
                self.no_backend.fetch_add(1, Ordering::SeqCst);
                return status(StatusCode::SERVICE_UNAVAILABLE);
            };
            backend.routed.fetch_add(1, Ordering::SeqCst);
            let uri = format!("http://{}{path}", backend.addr);
            match self.client.get(uri.parse().unwrap()).await {
                Ok(res) => {
                    let (mut parts, body) = res.into_parts();
                    // Hop-by-hop: the instance's Connection: close is about
                    // its connection to the proxy, not the client's.
                    parts.headers.remove(hyper::header::CONNECTION);
                    parts.headers.remove("keep-alive");
                    return match body.collect().await {
                        Ok(b) => Response::from_parts(parts, Full::new(b.to_bytes())),
                        Err(_) => status(StatusCode::BAD_GATEWAY),
                    };
                }
                // No response at all: the instance never answered it.
                Err(_) if attempt == 0 => {
                    self.retries.fetch_add(1, Ordering::SeqCst);
                }
                Err(_) => return status(StatusCode::BAD_GATEWAY),
            }
        }
        unreachable!()
    }
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = code;
    r
}

/// One readiness probe, on a connection of its own.
async fn probe(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.ok()?;
        Some(&head == b"HTTP/1.1 200")
    };
    tokio::time::timeout(Duration::from_millis(500), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

async fn health_checks(proxy: Arc<Proxy>) {
    loop {
        let backends: Vec<_> = proxy.backends.lock().unwrap().clone();
        for b in backends {
            let ok = probe(b.addr).await;
            let was = b.ready.swap(ok, Ordering::SeqCst);
            if was && !ok {
                *b.unready_at.lock().unwrap() = Some(Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn serve_proxy(proxy: Arc<Proxy>, listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let proxy = proxy.clone();
                let path = req
                    .uri()
                    .path_and_query()
                    .map_or("/".into(), |p| p.to_string());
                async move { Ok::<_, Infallible>(proxy.forward(path).await) }
            });
            let _ = server_http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn instance() -> Service {
    Service::start_with(
        "tokio_http",
        &[
            "--delay-ms",
            "10",
            "--pre-drain-ms",
            "1500",
            "--timeout-ms",
            "10000",
        ],
        |cmd| {
            cmd.env("RUST_LOG", "info,request=debug");
        },
    )
}

#[test]
fn rolling_restart_under_load_fails_no_request() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut a = instance();
    let mut b = instance();
    let backend = |name, s: &Service| {
        Arc::new(Backend {
            name,
            addr: s.addr,
            ready: AtomicBool::new(false),
            unready_at: Mutex::new(None),
            routed: AtomicU64::new(0),
        })
    };
    let proxy = Arc::new(Proxy {
        backends: Mutex::new(vec![backend("a", &a), backend("b", &b)]),
        next: AtomicUsize::new(0),
        client: Client::builder(TokioExecutor::new()).build_http(),
        retries: AtomicU64::new(0),
        no_backend: AtomicU64::new(0),
    });
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    rt.spawn(serve_proxy(proxy.clone(), listener));
    rt.spawn(health_checks(proxy.clone()));
    let all_ready = |p: &Proxy| {
        p.backends
            .lock()
            .unwrap()
            .iter()
            .all(|b| b.ready.load(Ordering::SeqCst))
    };
    wait("both instances ready", || all_ready(&proxy));

    // Steady load: 16 keep-alive clients.
    let load = Load::start(&rt, proxy_addr, 16);
    std::thread::sleep(Duration::from_millis(700));

    // The rolling update: a new instance, then the first old one stopped;
    // another new one, then the second old one stopped.
    let mut c = instance();
    proxy.backends.lock().unwrap().push(backend("c", &c));
    wait("c ready", || all_ready(&proxy));
    let signalled_a = Instant::now();
    a.signal("TERM");
    assert_eq!(a.exit_code(), 0, "a: {}", a.stderr());

    let mut d = instance();
    proxy.backends.lock().unwrap().push(backend("d", &d));
    wait("d ready", || {
        proxy.backends.lock().unwrap()[3]
            .ready
            .load(Ordering::SeqCst)
    });
    let signalled_b = Instant::now();
    b.signal("TERM");
    assert_eq!(b.exit_code(), 0, "b: {}", b.stderr());
    std::thread::sleep(Duration::from_millis(500));

    let Counts {
        answered, failed, ..
    } = load.stop(&rt);
    for s in [&mut c, &mut d] {
        s.signal("TERM");
        assert_eq!(s.exit_code(), 0);
    }

    let backends = proxy.backends.lock().unwrap().clone();
    let routed: Vec<_> = backends
        .iter()
        .map(|b| format!("{} {}", b.name, b.routed.load(Ordering::SeqCst)))
        .collect();
    println!(
        "rolling restart: sent {}, answered {}, failed {}; retried by the proxy {}; routed: {}",
        answered.len() + failed.len(),
        answered.len(),
        failed.len(),
        proxy.retries.load(Ordering::SeqCst),
        routed.join(", ")
    );
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert_eq!(proxy.no_backend.load(Ordering::SeqCst), 0);
    assert!(answered.len() > 500, "too little load: {}", answered.len());

    // The load balancer saw each old instance turn unready well within its
    // pre-drain delay, so no request was routed to a closed listener.
    for (backend, signalled) in [(&backends[0], signalled_a), (&backends[1], signalled_b)] {
        let at = backend
            .unready_at
            .lock()
            .unwrap()
            .expect("readiness failed");
        assert!(
            at.duration_since(signalled) < Duration::from_millis(1000),
            "{} seen unready after {:?}",
            backend.name,
            at.duration_since(signalled)
        );
    }

    // Every answer came from exactly one instance; none was processed twice.
    let logs = [a.stderr(), b.stderr(), c.stderr(), d.stderr()];
    let read: Vec<BTreeSet<u64>> = logs.iter().map(|l| read_ids(l)).collect();
    for i in 0..read.len() {
        for j in i + 1..read.len() {
            let both: Vec<_> = read[i].intersection(&read[j]).collect();
            assert!(both.is_empty(), "read by two instances: {both:?}");
        }
    }
    let all_read: BTreeSet<u64> = read.iter().flatten().copied().collect();
    assert!(answered.is_subset(&all_read));
    assert!(read.iter().all(|r| !r.is_empty()), "every instance served");
}

fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
