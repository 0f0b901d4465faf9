//! The gRPC example (`examples/grpc.rs`, tonic served by
//! `graceful_tokio::http::serve`) as a real process, driven by tonic's own
//! client with real signals.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::load::runtime;
use common::{run_to_exit, Service, PATIENCE};
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[path = "../examples/common/work.rs"]
mod work;
use work::work_client::WorkClient;
use work::{CountRequest, SleepRequest};

fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint::from_shared(format!("http://{addr}")).unwrap()
}

async fn connect(addr: SocketAddr) -> Channel {
    endpoint(addr).connect().await.expect("connect")
}

/// A count's ticks (with when each arrived), and how its stream ended.
async fn count(
    mut client: WorkClient<Channel>,
    count: u32,
    interval_ms: u32,
    ignore_stop: bool,
) -> (Vec<(u32, Instant)>, Result<(), Status>) {
    let request = CountRequest {
        count,
        interval_ms,
        ignore_stop,
    };
    let mut stream = match client.count(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return (Vec::new(), Err(status)),
    };
    let mut ticks = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(tick)) => ticks.push((tick.n, Instant::now())),
            Ok(None) => return (ticks, Ok(())),
            Err(status) => return (ticks, Err(status)),
        }
    }
}

async fn health(channel: Channel, service: &str) -> Result<i32, Status> {
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    let response = HealthClient::new(channel).check(request).await?;
    Ok(response.into_inner().status)
}

const SERVING: i32 = ServingStatus::Serving as i32;
const NOT_SERVING: i32 = ServingStatus::NotServing as i32;

#[test]
fn rpcs_in_flight_at_sigterm_finish_and_an_endless_stream_ends() {
    let rt = runtime();
    let mut s = Service::start("grpc", &["--timeout-ms", "10000"]);
    let channel = rt.block_on(connect(s.addr));
    let client = WorkClient::new(channel.clone());

    let mut unary = client.clone();
    let unary = rt.spawn(async move {
        let reply = unary.sleep(SleepRequest { ms: 2000 }).await;
        (reply, Instant::now())
    });
    let finite = rt.spawn(count(client.clone(), 5, 400, false));
    let endless = rt.spawn(count(client.clone(), 0, 50, false));
    s.wait_log("Sleep 2000 ms", 1);
    s.wait_log("Count 5", 1);
    s.wait_log("Count 0", 1);

    s.signal("TERM");
    s.wait_log("SIGTERM received", 1);
    let signalled = Instant::now();
    let (reply, answered) = rt.block_on(unary).unwrap();
    let reply = reply.expect("the unary RPC in flight finishes");
    assert_eq!(reply.into_inner().pid, s.pid());
    assert!(answered > signalled, "answered before the signal");
    let (ticks, end) = rt.block_on(finite).unwrap();
    assert_eq!(end.map_err(|s| s.to_string()), Ok(()));
    let numbers: Vec<u32> = ticks.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        numbers,
        vec![1, 2, 3, 4, 5],
        "the finite stream sends every tick"
    );
    assert!(
        ticks[4].1 > signalled,
        "the finite stream ended before the signal"
    );
    // The endless one ends at the stop, with a status that tells its client
    // to subscribe again elsewhere.
    let (_, end) = rt.block_on(endless).unwrap();
    let end = end.expect_err("ended by the stop");
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
    assert_eq!(end.message(), "server stopping");
    assert_eq!(s.exit_code(), 0, "{}", s.stderr());
}

/// With a pre-drain delay, clients may still be routed here: an endless
/// stream open at SIGTERM ticks through the delay, and so does one begun
/// during it (on a new connection; ended at the signal, it would be
/// turned away at once, and its client would subscribe again here, in a
/// loop). Both end with `UNAVAILABLE` when the listener closes, and the
/// process exits 0.
#[test]
fn endless_streams_tick_through_the_pre_drain_and_end_when_the_listener_closes() {
    let rt = runtime();
    let pre_drain = Duration::from_millis(1500);
    let mut s = Service::start("grpc", &["--pre-drain-ms", "1500", "--timeout-ms", "10000"]);
    let client = WorkClient::new(rt.block_on(connect(s.addr)));
    let before = rt.spawn(count(client, 0, 50, false));
    s.wait_log("Count 0", 1);
    s.signal("TERM");
    s.wait_log("SIGTERM received", 1);
    let signalled = Instant::now();
    // A new connection once the delay has begun.
    s.wait_log("pre-drain: still serving", 1);
    let late = WorkClient::new(rt.block_on(connect(s.addr)));
    let during = rt.spawn(count(late, 0, 50, false));
    for (what, stream) in [
        ("open at the signal", before),
        ("begun in the delay", during),
    ] {
        let (ticks, end) = rt.block_on(stream).unwrap();
        let end = end.expect_err("ended by the stop");
        assert_eq!(end.code(), Code::Unavailable, "{what}: {end:?}");
        // Ticks every 50 ms up to the listener's close, 1.5 s in.
        let late_ticks = ticks
            .iter()
            .filter(|(_, at)| *at > signalled + pre_drain - Duration::from_millis(500))
            .count();
        assert!(
            late_ticks >= 3,
            "{what}: {late_ticks} ticks in the last 500 ms of the delay, {} in all",
            ticks.len()
        );
    }
    assert_eq!(s.exit_code(), 0, "{}", s.stderr());
}

/// Whether tonic's client failed `status` before sending it: hyper's HTTP/2
/// client does not notice a GOAWAY until the next request, which it then
/// drops unsent (tonic does not retry it, hyper-util's pooled client
/// does). Retrying such an RPC is always safe.
fn never_sent(status: &Status) -> bool {
    hyper_error(status).is_some_and(|e| status.code() == Code::Cancelled && e.is_canceled())
}

/// Whether `status` is h2's error for a stream the server's GOAWAY
/// refused: opened by the client before it read the GOAWAY, with an id
/// above the GOAWAY's last stream id, which the server promises it did not
/// process (RFC 9113 §6.8), so that retrying it is safe (grpc-go does so
/// itself). h2 gives the same error to a stream still open when such a
/// connection ends, so a test that retries these must also check that the
/// server answered every RPC it processed.
fn refused_by_goaway(status: &Status) -> bool {
    hyper_error(status)
        .and_then(|e| std::error::Error::source(e))
        .and_then(|e| e.downcast_ref::<h2::Error>())
        .is_some_and(|e| {
            e.is_go_away() && e.is_remote() && e.reason() == Some(h2::Reason::NO_ERROR)
        })
}

/// The hyper error in `status`'s chain of sources, if there is one.
fn hyper_error(status: &Status) -> Option<&hyper::Error> {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(error) = error.downcast_ref::<hyper::Error>() {
            return Some(error);
        }
        source = error.source();
    }
    None
}

/// `sleep`, retried while tonic's client fails it unsent (at most 3
/// times); returns the reply and how many retries it took.
async fn sleep_retrying_unsent(
    client: &mut WorkClient<Channel>,
    ms: u32,
) -> (Result<u32, Status>, usize) {
    let (reply, retried) = sleep_retrying(client, ms, never_sent).await;
    (reply, retried.len())
}

/// `sleep`, retried while it fails in a way `retry` says is safe (at most
/// 3 times); returns the reply and the failures it retried.
async fn sleep_retrying(
    client: &mut WorkClient<Channel>,
    ms: u32,
    retry: fn(&Status) -> bool,
) -> (Result<u32, Status>, Vec<Status>) {
    let mut retried = Vec::new();
    loop {
        match client.sleep(SleepRequest { ms }).await {
            Err(status) if retry(&status) && retried.len() < 3 => retried.push(status),
            done => return (done.map(|reply| reply.into_inner().pid), retried),
        }
    }
}

#[test]
fn a_new_rpc_after_goaway_goes_to_a_new_connection_not_the_old_one() {
    let rt = runtime();
    let mut s = Service::start("grpc", &["--timeout-ms", "10000"]);
    let client = WorkClient::new(rt.block_on(connect(s.addr)));
    // Keeps the connection open past the signal.
    let mut slow = client.clone();
    let slow = rt.spawn(async move { slow.sleep(SleepRequest { ms: 3000 }).await });
    s.wait_log("Sleep 3000 ms", 1);
    s.signal("TERM");
    // The GOAWAY goes out at the trigger, as the listener closes; the
    // client reads it soon after (a generous margin: an RPC sent before
    // it would be served on the old connection, and this test would fail).
    assert!(common::refused_within(s.addr, PATIENCE));
    std::thread::sleep(Duration::from_millis(500));
    let mut late = client.clone();
    let (reply, _) = rt.block_on(sleep_retrying_unsent(&mut late, 1));
    // Not sent on the connection that is going away (nor reset on it): a
    // new connection was tried, and refused.
    let status = reply.expect_err("no server is left to answer");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let chain = format!("{status:?}");
    assert!(chain.contains("ConnectionRefused"), "{chain}");
    rt.block_on(slow)
        .unwrap()
        .expect("the RPC in flight finishes");
    assert_eq!(s.exit_code(), 0, "{}", s.stderr());
    assert!(!s.stderr().contains("Sleep 1 ms"), "{}", s.stderr());
}

/// A client balancing over two servers, as a gRPC load balancer does:
/// it drops a server from its set once that server's health says
/// `NOT_SERVING` (as Kubernetes drops a terminating pod's endpoint). The
/// stopping server keeps serving through its pre-drain, so no RPC fails,
/// once the client retries the ones it never sent (see [`never_sent`]) and
/// those the GOAWAY refused (see [`refused_by_goaway`]); and the stopping
/// server answered every RPC it began.
#[test]
fn a_balancing_client_moves_to_the_other_server_without_a_failed_rpc() {
    let rt = runtime();
    let mut a = Service::start("grpc", &["--pre-drain-ms", "1000", "--timeout-ms", "10000"]);
    let b = Service::start("grpc", &["--timeout-ms", "10000"]);
    let (channel, endpoints) = {
        let _in_runtime = rt.enter();
        Channel::balance_channel::<SocketAddr>(8)
    };
    rt.block_on(async {
        for addr in [a.addr, b.addr] {
            endpoints
                .send(Change::Insert(addr, endpoint(addr)))
                .await
                .unwrap();
        }
    });
    let health_of_a = rt.block_on(connect(a.addr));
    let a_addr = a.addr;
    let dropped_a = rt.spawn(async move {
        let request = HealthCheckRequest::default();
        let mut watch = HealthClient::new(health_of_a)
            .watch(request)
            .await
            .unwrap()
            .into_inner();
        while let Some(health) = watch.message().await.unwrap() {
            if health.status == NOT_SERVING {
                endpoints.send(Change::Remove(a_addr)).await.unwrap();
                return Instant::now();
            }
        }
        panic!("the watch ended without NOT_SERVING");
    });

    let client = WorkClient::new(channel);
    let stop = Arc::new(AtomicBool::new(false));
    let served: Arc<Mutex<Vec<(Instant, u32)>>> = Arc::default();
    let failed: Arc<Mutex<Vec<Status>>> = Arc::default();
    let (unsent, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (mut client, stop) = (client.clone(), stop.clone());
            let (served, failed) = (served.clone(), failed.clone());
            let (unsent, refused) = (unsent.clone(), refused.clone());
            rt.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    let (reply, retried) = sleep_retrying(&mut client, 20, |status| {
                        never_sent(status) || refused_by_goaway(status)
                    })
                    .await;
                    let never = retried.iter().filter(|s| never_sent(s)).count();
                    unsent.fetch_add(never, Ordering::Relaxed);
                    refused.fetch_add(retried.len() - never, Ordering::Relaxed);
                    match reply {
                        Ok(pid) => served.lock().unwrap().push((started, pid)),
                        Err(status) => failed.lock().unwrap().push(status),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    a.signal("TERM");
    let dropped_a = rt.block_on(dropped_a).unwrap();
    assert_eq!(a.exit_code(), 0, "{}", a.stderr());
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        rt.block_on(worker).unwrap();
    }

    let failed = failed.lock().unwrap();
    assert!(failed.is_empty(), "failed RPCs: {failed:?}");
    // At most one RPC per worker found A's connection going away unsent.
    let unsent = unsent.load(Ordering::Relaxed);
    assert!(unsent <= 8, "{unsent} retries of unsent RPCs");
    // A GOAWAY refuses at most the one RPC a worker has open on that
    // connection: one on A's first connection and one on a connection
    // opened during its pre-drain (which gets its GOAWAY after its first
    // request).
    let refused = refused.load(Ordering::Relaxed);
    assert!(refused <= 16, "{refused} retries of RPCs a GOAWAY refused");
    let served = served.lock().unwrap();
    // A answered every RPC it began: none of the retried ones was
    // processed and lost.
    let began_on_a = a.stderr().matches("Sleep 20 ms").count();
    let answered_by_a = served.iter().filter(|(_, pid)| *pid == a.pid()).count();
    assert_eq!(began_on_a, answered_by_a, "{}", a.stderr());
    let by: BTreeSet<u32> = served.iter().map(|(_, pid)| *pid).collect();
    assert_eq!(by, BTreeSet::from([a.pid(), b.pid()]), "both served");
    let after: Vec<u32> = served
        .iter()
        .filter(|(started, _)| *started > dropped_a)
        .map(|(_, pid)| *pid)
        .collect();
    assert!(
        after.len() > 20,
        "too little served after the stop: {after:?}"
    );
    assert!(after.iter().all(|pid| *pid == b.pid()), "{after:?}");
}

#[test]
fn health_answers_not_serving_from_the_signal_through_the_pre_drain() {
    let rt = runtime();
    let mut s = Service::start("grpc", &["--pre-drain-ms", "1500", "--timeout-ms", "10000"]);
    let channel = rt.block_on(connect(s.addr));
    assert_eq!(rt.block_on(health(channel.clone(), "")).unwrap(), SERVING);
    let work = "graceful.example.Work";
    assert_eq!(rt.block_on(health(channel.clone(), work)).unwrap(), SERVING);
    let unknown = rt.block_on(health(channel.clone(), "no.Such")).unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let mut watch = rt
        .block_on(HealthClient::new(channel).watch(HealthCheckRequest::default()))
        .unwrap()
        .into_inner();
    let first = rt.block_on(watch.message()).unwrap().unwrap();
    assert_eq!(first.status, SERVING);

    let signalled = Instant::now();
    s.signal("TERM");
    // A watcher learns at once.
    let next = rt.block_on(watch.message()).unwrap().unwrap();
    assert_eq!(next.status, NOT_SERVING);
    // A probe during the pre-drain (a new connection each, as kubelet's).
    for service in ["", work] {
        let fresh = rt.block_on(connect(s.addr));
        assert_eq!(rt.block_on(health(fresh, service)).unwrap(), NOT_SERVING);
    }
    let probed = signalled.elapsed();
    assert!(
        probed < Duration::from_millis(1500),
        "probed after the pre-drain: {probed:?}"
    );
    // The watch stays open while the server still accepts (a client whose
    // watch ends watches again), and ends when its listener closes: it
    // does not hold the drain open.
    assert!(rt.block_on(watch.message()).unwrap().is_none());
    let ended = signalled.elapsed();
    assert!(
        ended >= Duration::from_millis(1500),
        "ended in the pre-drain: {ended:?}"
    );
    assert_eq!(s.exit_code(), 0, "{}", s.stderr());
}

#[test]
fn a_stream_that_ignores_the_stop_is_cut_at_the_deadline_and_named() {
    let rt = runtime();
    let mut s = Service::start("grpc", &["--timeout-ms", "1000"]);
    let client = WorkClient::new(rt.block_on(connect(s.addr)));
    let stubborn = rt.spawn(count(client, 0, 50, true));
    s.wait_log("Count 0", 1);
    let signalled = Instant::now();
    s.signal("TERM");
    assert_eq!(s.exit_code(), 1, "{}", s.stderr());
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(1000),
        "cut before the deadline: {took:?}"
    );
    assert!(took < Duration::from_millis(3000), "cut late: {took:?}");
    let (ticks, end) = rt.block_on(stubborn).unwrap();
    assert!(
        ticks.len() >= 10,
        "ticks went on after the signal: {ticks:?}"
    );
    assert!(end.is_err(), "the stream was cut, not ended");
    let stderr = s.stderr();
    let (_, report) = stderr
        .split_once("what was left:")
        .unwrap_or_else(|| panic!("no report:\n{stderr}"));
    let named = report
        .lines()
        .any(|l| l.trim_start().starts_with("Count stream to 127.0.0.1:") && l.contains("grpc.rs"));
    assert!(named, "the report names the stream:\n{stderr}");
}

#[test]
fn malformed_flags_exit_2_with_a_message() {
    for args in [
        &["--timeout-ms", "soon"][..],
        &["--addr", "nowhere"],
        &["--frobnicate"],
    ] {
        let (code, err) = run_to_exit("grpc", args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("usage:"), "{args:?}: {err}");
    }
}
