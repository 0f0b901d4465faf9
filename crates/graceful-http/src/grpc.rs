//! gRPC health (`grpc.health.v1.Health`, from `tonic-health`) that follows
//! the shutdown: what [`Readiness`](crate::Readiness) is to HTTP probes,
//! for Kubernetes gRPC probes and gRPC load balancers.

use std::pin::Pin;

use futures_util::future;
use futures_util::stream::{self, Stream, StreamExt};
use graceful_core::{Conn, Shutdown};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

/// `tonic_health::server::health_reporter()`, with a health service that
/// answers `NOT_SERVING` from the trigger of `shutdown` on, unless it is a
/// restart's (see [`GrpcHealth`]): set the statuses through the reporter
/// as with tonic-health; the stop overrides them. Add the service to the
/// server's routes.
pub fn health_reporter(shutdown: &Shutdown) -> (HealthReporter, HealthServer<GrpcHealth>) {
    let reporter = HealthReporter::new();
    let health = GrpcHealth::new(shutdown, reporter.clone());
    (reporter, HealthServer::new(health))
}

/// The gRPC health service of a server stopped by a [`Shutdown`]: until
/// the trigger it answers what its [`HealthReporter`] says; from the
/// trigger on:
///
/// - `Check` answers `NOT_SERVING` for the whole server (`""`) and every
///   service the reporter knows (unknown ones stay `NOT_FOUND`);
/// - a `Watch` stream sends `NOT_SERVING` at once, and ends when the
///   server's listener closes (after the pre-drain delay, if any; at the
///   trigger for a request that carries no graceful [`Conn`]), so health
///   watchers learn of the stop at once, do not watch again in a loop
///   while the server still accepts, and do not hold the drain open.
///
/// A restart (the process handed its listeners over to a successor) is no
/// stop of the service: `Check` goes on answering what the reporter says,
/// and a `Watch` follows the reporter, with no `NOT_SERVING`, until the
/// listener closes; then it ends, and the client watches again, on the
/// successor.
///
/// ```
/// use graceful_core::{Reason, Shutdown};
/// use graceful_http::grpc::GrpcHealth;
/// use tonic_health::pb::health_server::Health;
/// use tonic_health::pb::HealthCheckRequest;
/// use tonic_health::server::HealthReporter;
///
/// # graceful_core::block_on(async {
/// let shutdown = Shutdown::new();
/// let health = GrpcHealth::new(&shutdown, HealthReporter::new());
/// let check = || health.check(tonic::Request::new(HealthCheckRequest::default()));
/// assert_eq!(check().await.unwrap().into_inner().status, 1); // SERVING
/// shutdown.trigger(Reason::requested());
/// assert_eq!(check().await.unwrap().into_inner().status, 2); // NOT_SERVING
/// # });
/// ```
#[derive(Debug)]
pub struct GrpcHealth {
    inner: HealthService,
    shutdown: Shutdown,
}

impl GrpcHealth {
    /// The health of the services `reporter` reports on, overridden by the
    /// stop of `shutdown`.
    pub fn new(shutdown: &Shutdown, reporter: HealthReporter) -> GrpcHealth {
        GrpcHealth {
            inner: HealthService::from_health_reporter(reporter),
            shutdown: shutdown.clone(),
        }
    }
}

fn not_serving() -> HealthCheckResponse {
    HealthCheckResponse {
        status: ServingStatus::NotServing as i32,
    }
}

/// A `Watch` response stream.
pub type WatchStream =
    Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Health for GrpcHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let mut response = self.inner.check(request).await?;
        if crate::readiness::stopping(&self.shutdown) {
            *response.get_mut() = not_serving();
        }
        Ok(response)
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let listener_closed = || match request.extensions().get::<Conn>() {
            Some(conn) => conn.listener_closed(),
            None => self.shutdown.triggered(),
        };
        let (closed, listener_closed) = (listener_closed(), listener_closed());
        let statuses = self.inner.watch(request).await?.into_inner();
        // The reporter is followed until the trigger; after a restart's,
        // until the listener closes.
        let shutdown = self.shutdown.clone();
        let followed = async move {
            shutdown.triggered().await;
            if shutdown.is_restarted() {
                closed.await;
            }
        };
        // `take_until` polls its end first: a watch that starts after the
        // trigger gets `NOT_SERVING` alone.
        let following = statuses.take_until(followed);
        // The reporter's statuses end as above, or when the service is
        // cleared from the reporter: then the watch ends with them.
        let shutdown = self.shutdown.clone();
        let stopped = stream::once(async move {
            if !shutdown.is_triggered() {
                return stream::empty().right_stream();
            }
            // `NOT_SERVING` (not for a restart), then the stream stays open
            // until no client is routed here any more.
            let hold = stream::once(listener_closed).filter_map(|_| future::ready(None));
            let status = crate::readiness::stopping(&shutdown).then(|| Ok(not_serving()));
            stream::iter(status).chain(hold).left_stream()
        })
        .flatten();
        Ok(Response::new(Box::pin(following.chain(stopped))))
    }
}

#[cfg(test)]
mod tests {
    use graceful_core::{block_on, Reason};
    use tonic::Code;

    use super::*;

    const SERVING: i32 = ServingStatus::Serving as i32;
    const NOT_SERVING: i32 = ServingStatus::NotServing as i32;

    fn request(service: &str) -> Request<HealthCheckRequest> {
        Request::new(HealthCheckRequest {
            service: service.to_string(),
        })
    }

    fn statuses(health: &GrpcHealth, service: &str) -> WatchStream {
        block_on(health.watch(request(service)))
            .unwrap()
            .into_inner()
    }

    fn next(stream: &mut WatchStream) -> Option<i32> {
        block_on(stream.next()).map(|r| r.unwrap().status)
    }

    fn check(health: &GrpcHealth, service: &str) -> Result<i32, Code> {
        let response = block_on(health.check(request(service)));
        response
            .map(|r| r.into_inner().status)
            .map_err(|s| s.code())
    }

    #[test]
    fn check_answers_the_reporter_until_the_trigger_then_not_serving() {
        let shutdown = Shutdown::new();
        let reporter = HealthReporter::new();
        let health = GrpcHealth::new(&shutdown, reporter.clone());
        block_on(reporter.set_service_status("a.Up", tonic_health::ServingStatus::Serving));
        block_on(reporter.set_service_status("a.Down", tonic_health::ServingStatus::NotServing));
        assert_eq!(check(&health, ""), Ok(SERVING));
        assert_eq!(check(&health, "a.Up"), Ok(SERVING));
        assert_eq!(check(&health, "a.Down"), Ok(NOT_SERVING));
        assert_eq!(check(&health, "a.Unknown"), Err(Code::NotFound));

        shutdown.trigger(Reason::requested());
        assert_eq!(check(&health, ""), Ok(NOT_SERVING));
        assert_eq!(check(&health, "a.Up"), Ok(NOT_SERVING));
        assert_eq!(check(&health, "a.Down"), Ok(NOT_SERVING));
        assert_eq!(check(&health, "a.Unknown"), Err(Code::NotFound));
        // A status set after the trigger does not bring it back.
        block_on(reporter.set_service_status("a.Up", tonic_health::ServingStatus::Serving));
        assert_eq!(check(&health, "a.Up"), Ok(NOT_SERVING));
    }

    #[test]
    fn a_watch_follows_the_reporter_then_ends_with_not_serving_at_the_trigger() {
        let shutdown = Shutdown::new();
        let reporter = HealthReporter::new();
        let health = GrpcHealth::new(&shutdown, reporter.clone());
        let mut watch = statuses(&health, "");
        assert_eq!(next(&mut watch), Some(SERVING));
        block_on(reporter.set_service_status("", tonic_health::ServingStatus::NotServing));
        assert_eq!(next(&mut watch), Some(NOT_SERVING));
        block_on(reporter.set_service_status("", tonic_health::ServingStatus::Serving));
        assert_eq!(next(&mut watch), Some(SERVING));

        // Triggered from another thread while the watch waits.
        let trigger = shutdown.clone();
        let triggering = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            trigger.trigger(Reason::requested());
        });
        assert_eq!(next(&mut watch), Some(NOT_SERVING));
        // Served without a listener to wait for: it ends at the trigger.
        assert_eq!(next(&mut watch), None, "the watch ends");
        triggering.join().unwrap();
    }

    #[test]
    fn a_watch_of_a_service_cleared_before_the_trigger_ends_without_not_serving() {
        let shutdown = Shutdown::new();
        let mut reporter = HealthReporter::new();
        let health = GrpcHealth::new(&shutdown, reporter.clone());
        block_on(reporter.set_service_status("a.Up", tonic_health::ServingStatus::Serving));
        let mut watch = statuses(&health, "a.Up");
        assert_eq!(next(&mut watch), Some(SERVING));
        block_on(reporter.clear_service_status("a.Up"));
        assert_eq!(next(&mut watch), None);
        assert!(!shutdown.is_triggered());
    }

    #[test]
    fn a_watch_after_the_trigger_gets_not_serving_alone_and_unknown_services_not_found() {
        let shutdown = Shutdown::new();
        let health = GrpcHealth::new(&shutdown, HealthReporter::new());
        shutdown.trigger(Reason::requested());
        let mut watch = statuses(&health, "");
        assert_eq!(next(&mut watch), Some(NOT_SERVING));
        assert_eq!(next(&mut watch), None);
        let unknown = block_on(health.watch(request("a.Unknown")));
        assert_eq!(unknown.err().map(|s| s.code()), Some(Code::NotFound));
    }

    /// A restart is no stop of the service: `Check` goes on answering what
    /// the reporter says, and a `Watch` (begun before or after it) follows
    /// the reporter until the listener closes, then ends without
    /// `NOT_SERVING`. (The health service stops with `server`, a child of
    /// the shutdown whose trigger the connection sees as its listener's
    /// close.)
    #[test]
    fn a_restart_answers_the_reporter_and_ends_watches_without_not_serving() {
        let process = Shutdown::new();
        let server = process.child();
        let reporter = HealthReporter::new();
        let health = GrpcHealth::new(&server, reporter.clone());
        let addr: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
        let conn = Conn::new(addr, addr, process.clone());
        let watch = |service: &str| {
            let mut request = request(service);
            request.extensions_mut().insert(conn.clone());
            block_on(health.watch(request)).unwrap().into_inner()
        };
        block_on(reporter.set_service_status("a.Down", tonic_health::ServingStatus::NotServing));
        let mut before = watch("");
        assert_eq!(next(&mut before), Some(SERVING));
        server.trigger(Reason::Restarted { successor: 4242 });
        assert_eq!(check(&health, ""), Ok(SERVING));
        assert_eq!(check(&health, "a.Down"), Ok(NOT_SERVING));
        let mut after = watch("");
        // At once: a watch that got nothing would wait for the listener.
        let first = futures_util::FutureExt::now_or_never(after.next());
        let first = first.map(|s| s.map(|r| r.unwrap().status));
        assert_eq!(first, Some(Some(SERVING)), "a watch after the restart");
        block_on(reporter.set_service_status("", tonic_health::ServingStatus::NotServing));
        assert_eq!(
            next(&mut before),
            Some(NOT_SERVING),
            "the reporter's status"
        );
        assert_eq!(next(&mut after), Some(NOT_SERVING), "the reporter's status");
        // The listener closes: both end, with nothing more.
        process.trigger(Reason::requested());
        assert_eq!(next(&mut before), None);
        assert_eq!(next(&mut after), None);
    }
}
