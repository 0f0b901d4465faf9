//! Keep-alive HTTP/1.1 load, counted per request id.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper::header::CONNECTION;
use hyper::Request;
use hyper_util::rt::TokioIo;

/// What the clients saw, by request id.
#[derive(Default)]
pub struct Counts {
    pub answered: BTreeSet<u64>,
    pub failed: Vec<(u64, String)>,
    /// Connects refused (each client stops at its first).
    pub refused: usize,
    /// The failed requests that were the first on a new connection.
    pub failed_first: BTreeSet<u64>,
    /// Who answered (the `server` header), and how many times.
    pub servers: std::collections::BTreeMap<String, usize>,
}

/// Load from `clients` keep-alive connections to `addr`, each sending
/// `GET /?id=N` in a loop and expecting `hello`.
pub struct Load {
    pub counts: Arc<Mutex<Counts>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the clients on `rt`. A client connects again when its
    /// connection ends (after a `Connection: close` response, or closed
    /// before it sent anything: no request lost), and stops when a connect
    /// is refused or [`stop`](Self::stop) is called. A request that got no
    /// complete `200 hello` is a failure.
    pub fn start(rt: &tokio::runtime::Runtime, addr: SocketAddr, clients: usize) -> Load {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let next_id = Arc::new(AtomicU64::new(0));
        let tasks = (0..clients)
            .map(|_| {
                let (counts, stop, next_id) = (counts.clone(), stop.clone(), next_id.clone());
                rt.spawn(async move {
                    'connections: while !stop.load(Ordering::SeqCst) {
                        let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                            counts.lock().unwrap().refused += 1;
                            break;
                        };
                        let Ok((mut send, conn)) = http1::handshake(TokioIo::new(stream)).await
                        else {
                            continue;
                        };
                        tokio::spawn(conn);
                        let mut first = true;
                        while !stop.load(Ordering::SeqCst) {
                            if send.ready().await.is_err() {
                                continue 'connections;
                            }
                            let id = next_id.fetch_add(1, Ordering::SeqCst);
                            let req = Request::get(format!("/?id={id}"))
                                .header("host", addr.to_string())
                                .body(Empty::<Bytes>::new())
                                .unwrap();
                            let result = async {
                                let res = send.send_request(req).await?;
                                let closes = res
                                    .headers()
                                    .get(CONNECTION)
                                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                                let status = res.status();
                                let server = res
                                    .headers()
                                    .get(hyper::header::SERVER)
                                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                                let body = res.into_body().collect().await?.to_bytes();
                                Ok::<_, hyper::Error>((status, body, closes, server))
                            }
                            .await;
                            match result {
                                Ok((s, body, closes, server)) if s == 200 && body == "hello\n" => {
                                    let mut counts = counts.lock().unwrap();
                                    counts.answered.insert(id);
                                    *counts
                                        .servers
                                        .entry(server.unwrap_or_default())
                                        .or_default() += 1;
                                    drop(counts);
                                    first = false;
                                    if closes {
                                        continue 'connections;
                                    }
                                }
                                other => {
                                    let mut counts = counts.lock().unwrap();
                                    counts.failed.push((id, format!("{other:?}")));
                                    if first {
                                        counts.failed_first.insert(id);
                                    }
                                    continue 'connections;
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            counts,
            stop,
            tasks,
        }
    }

    /// Stops the clients and waits for them.
    pub fn stop(self, rt: &tokio::runtime::Runtime) -> Counts {
        self.stop.store(true, Ordering::SeqCst);
        rt.block_on(async {
            for t in self.tasks {
                tokio::time::timeout(super::PATIENCE, t)
                    .await
                    .unwrap()
                    .unwrap();
            }
        });
        std::mem::take(&mut *self.counts.lock().unwrap())
    }
}

/// A tokio runtime for the test's clients.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The request ids a server logged as read (`GET /?id=N` at debug level).
pub fn read_ids(log: &str) -> BTreeSet<u64> {
    log.lines()
        .filter_map(|l| l.split("GET /?id=").nth(1))
        .map(|id| id.trim().parse().unwrap())
        .collect()
}
