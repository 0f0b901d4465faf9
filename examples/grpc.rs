//! A tonic gRPC service that stops gracefully: served by
//! `graceful_tokio::http::serve` (HTTP/2 without TLS), with the gRPC health
//! service answering `NOT_SERVING` from the stop signal on.
//!
//! ```text
//! cargo run --example grpc -- --timeout-ms 5000
//! ```
//!
//! At SIGTERM or Ctrl+C every connection gets GOAWAY, so clients open new
//! RPCs elsewhere; the RPCs in flight finish: a `Sleep`, a `Count` with a
//! number of ticks. An endless `Count` (a subscription) sees the stop
//! through the connection handle in its request: it ticks on through the
//! pre-drain delay, while clients may still be routed here, and ends its
//! stream with `UNAVAILABLE` when the listener closes (so its client
//! subscribes again, elsewhere: this server refuses it now). Ended at the
//! signal instead, its client, still routed here during the delay, would
//! subscribe again here and be turned away at once, in a loop. One that
//! ignores the stop is cut at the deadline, named in the report, and the
//! process exits 1.
//!
//! `graceful.example.Work` (`examples/common/work.rs`):
//! - `Sleep(ms)`: waits `ms` (0: `--delay-ms`, default 2000), answers its PID;
//! - `Count(count, interval_ms, ignore_stop)`: streams ticks.

use std::pin::{pin, Pin};
use std::time::Duration;

use futures::future::{select, Either};
use futures::stream::{self, Stream};
use graceful_core::Conn;
use graceful_tokio::http::grpc;
use hyper_util::service::TowerToHyperService;
use tonic::{Request, Response, Status};

#[path = "common/mod.rs"]
mod common;
use common::cli;
#[path = "common/work.rs"]
mod work;
use work::work_server::{Work, WorkServer};
use work::{CountRequest, SleepReply, SleepRequest, Tick};

struct Service {
    delay: Duration,
}

/// The connection an RPC came on, with the server's shutdown: graceful's
/// `http::serve` puts it in every request.
fn conn<T>(request: &Request<T>) -> Result<Conn, Status> {
    let conn = request.extensions().get::<Conn>();
    conn.cloned()
        .ok_or_else(|| Status::internal("not served by graceful"))
}

#[tonic::async_trait]
impl Work for Service {
    async fn sleep(&self, request: Request<SleepRequest>) -> Result<Response<SleepReply>, Status> {
        let peer = conn(&request)?.peer_addr();
        let ms = request.into_inner().ms;
        tracing::debug!(target: "request", "Sleep {ms} ms from {peer}");
        let delay = match ms {
            0 => self.delay,
            ms => Duration::from_millis(ms.into()),
        };
        tokio::time::sleep(delay).await;
        let pid = std::process::id();
        Ok(Response::new(SleepReply { pid }))
    }

    type CountStream = Pin<Box<dyn Stream<Item = Result<Tick, Status>> + Send>>;

    async fn count(
        &self,
        request: Request<CountRequest>,
    ) -> Result<Response<Self::CountStream>, Status> {
        let conn = conn(&request)?;
        let CountRequest {
            count,
            interval_ms,
            ignore_stop,
        } = request.into_inner();
        let peer = conn.peer_addr();
        tracing::debug!(target: "request", "Count {count} from {peer}");
        // Named, so a stream still open at the deadline is in the report.
        let guard = conn
            .shutdown()
            .guard_named(format!("Count stream to {peer}"));
        let interval = Duration::from_millis(interval_ms.into());
        // A count of ticks is work in flight: it finishes. An endless one
        // ends when the listener closes (after the pre-drain delay), unless
        // told to ignore the stop.
        let ends_at_stop = count == 0 && !ignore_stop;
        let ticks = stream::unfold((Some(1), guard), move |(next, guard)| {
            let conn = conn.clone();
            async move {
                let n = next.filter(|n| count == 0 || *n <= count)?;
                let tick = pin!(tokio::time::sleep(interval));
                if ends_at_stop {
                    let closed = pin!(conn.listener_closed());
                    if let Either::Right(_) = select(tick, closed).await {
                        // UNAVAILABLE: the client may subscribe again,
                        // elsewhere.
                        tracing::info!("ending the Count stream to {peer}: the listener closed");
                        let stopping = Status::unavailable("server stopping");
                        return Some((Err(stopping), (None, guard)));
                    }
                } else {
                    tick.await;
                }
                Some((Ok(Tick { n }), (Some(n + 1), guard)))
            }
        });
        Ok(Response::new(Box::pin(ticks)))
    }
}

fn main() {
    let started = cli::start(
        "grpc",
        2000,
        graceful_tokio::Runtime::new,
        graceful_tokio::signals,
    );
    let (reporter, health) = grpc::health_reporter(&started.shutdown);
    started
        .runtime
        .block_on(reporter.set_serving::<WorkServer<Service>>());
    let work = WorkServer::new(Service {
        delay: started.args.delay,
    });
    let routes = tonic::service::Routes::new(work).add_service(health);

    cli::exit(started.runtime.block_on(graceful_tokio::http::serve(
        started.listener,
        &started.shutdown,
        started.args.serve_config(),
        TowerToHyperService::new(routes),
    )))
}
