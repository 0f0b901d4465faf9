//! A service with an HTTP server, a background worker pool and a database
//! pool stand-in, stopped in order:
//!
//! 1. the HTTP server and the workers drain (in parallel): running jobs
//!    finish, jobs still queued are not started and are named in the log;
//! 2. only then the database pool closes (requests and jobs use it);
//! 3. telemetry is flushed last, also when the drain was forced.
//!
//! The order is declared with stages, one line each, and holds under a
//! forced stop too (forced jobs give up, so their stage still drains before
//! the pool closes).
//!
//! ```text
//! cargo run --example ordered_cleanup -- --delay-ms 1000
//! curl 'localhost:8080/job?ms=3000'   # queue a 3 s job for the workers
//! curl localhost:8080/                # a 1 s request; Ctrl+C meanwhile
//! ```
//!
//! `GET /` waits `--delay-ms` then answers `hello`; `GET /job?ms=N` queues
//! a job of N ms and answers `queued`; `GET /healthz` is readiness.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use graceful_core::Shutdown;
use graceful_std::WorkerPool;
use graceful_tokio::http::Readiness;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};

#[path = "common/mod.rs"]
mod common;
use common::cli;

/// Stands in for a connection pool: usable until closed.
#[derive(Clone)]
struct DbPool {
    open: Arc<AtomicBool>,
}

impl DbPool {
    fn query(&self, what: &str) {
        if !self.open.load(Ordering::SeqCst) {
            tracing::error!("ORDER VIOLATION: {what} used the db pool after it closed");
        }
    }
    fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
    }
}

/// A job: works `ms` in 10 ms steps, using the pool; gives up when the
/// workers' stage is forced.
fn run_job(ms: u64, stage: &Shutdown, db: &DbPool) {
    tracing::debug!(target: "request", "job of {ms} ms started");
    let until = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < until {
        if stage.is_forced() {
            tracing::warn!("job of {ms} ms abandoned: the stop was forced");
            return;
        }
        db.query("a job");
        std::thread::sleep(Duration::from_millis(10));
    }
    tracing::info!("job of {ms} ms done");
}

fn main() {
    let db = DbPool {
        open: Arc::new(AtomicBool::new(true)),
    };
    // The stages live as long as `main`: a dropped stage runs no hook.
    let (started, (http, pool, _db_stage, _telemetry, starting)) = cli::start_with(
        "ordered_cleanup",
        2000,
        graceful_tokio::Runtime::new,
        graceful_tokio::signals,
        |shutdown| {
            // The order, declared before any signal is handled: http and
            // workers first, then the pool, then telemetry.
            let http = shutdown.stage("http");
            // Held until the server returns: a stop that comes while the
            // server starts must not find http drained (and the db closed)
            // before the server serves its backlog.
            let starting = http.guard_named("http server");
            let pool = {
                let db = db.clone();
                WorkerPool::new(shutdown, "workers", 2, move |ms: u64, stage| {
                    run_job(ms, stage, &db)
                })
                .unwrap_or_else(|e| cli::fail(format!("cannot start the workers: {e}")))
            };
            let db_stage = shutdown.stage_after("db pool", [&http, pool.stage()]);
            let telemetry = shutdown.stage_after("telemetry", [&db_stage]);

            http.on_drained(|| tracing::info!("cleanup: http drained"));
            pool.stage()
                .on_drained(|| tracing::info!("cleanup: workers drained"));
            let db_open = db_stage.guard_named("db pool open");
            {
                let db = db.clone();
                db_stage.on_triggered(move |_| {
                    db.close();
                    tracing::info!("cleanup: db pool closed");
                    drop(db_open);
                });
            }
            telemetry.on_triggered(|_| tracing::info!("cleanup: telemetry flushed"));
            (http, pool, db_stage, telemetry, starting)
        },
    );
    let cli::Started {
        args,
        runtime,
        shutdown,
        listener,
    } = started;

    let pool = Arc::new(pool);
    let jobs = pool.clone();
    let ready = Readiness::new(&shutdown);
    let (service_rt, delay) = (runtime.clone(), args.delay);
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        let (ready, pool, db, rt) = (ready.clone(), pool.clone(), db.clone(), service_rt.clone());
        async move {
            tracing::debug!(target: "request", "{} {}", req.method(), req.uri());
            let res = match req.uri().path() {
                "/healthz" => ready.response(),
                "/job" => {
                    let ms = req
                        .uri()
                        .query()
                        .and_then(|q| q.strip_prefix("ms="))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1000);
                    match pool.submit(ms) {
                        Ok(()) => Response::new(Full::from("queued\n")),
                        Err(_) => {
                            let mut r = Response::new(Full::from("stopping\n"));
                            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                            r
                        }
                    }
                }
                _ => {
                    rt.sleep(delay).await;
                    db.query("a request");
                    Response::new(Full::<Bytes>::from("hello\n"))
                }
            };
            Ok::<_, Infallible>(res)
        }
    });

    let http_config = args.serve_config();
    let server = runtime.handle().spawn({
        let http = http.clone();
        async move {
            let served = graceful_tokio::http::serve(listener, &http, http_config, service).await;
            drop(starting);
            served
        }
    });
    let outcome = shutdown
        .enforce_deadline(&runtime, args.pre_drain + args.timeout)
        .wait();
    if let Ok(Err(e)) = runtime.block_on(server) {
        tracing::error!("the server failed: {e}");
    }
    // Jobs queued and never started were answered "queued": the pool hands
    // them back and logs how many (a real service would store them for the
    // next process).
    for ms in jobs.take_queued() {
        tracing::warn!("job of {ms} ms not started: queued at the stop");
    }
    std::process::exit(outcome.exit_code());
}
