//! The ordered-cleanup example as a real process: the database pool closes
//! only after the HTTP server and the workers drained, and telemetry is
//! flushed last, both when the stop drains in time and when it is forced.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::Service;

fn get(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    s
}

fn body(mut s: TcpStream) -> String {
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

/// The position of `line` in `log`; fails if it is missing.
fn at(log: &str, line: &str) -> usize {
    log.find(line)
        .unwrap_or_else(|| panic!("{line:?} missing from:\n{log}"))
}

fn assert_order(log: &str) {
    let http = at(log, "cleanup: http drained");
    let workers = at(log, "cleanup: workers drained");
    let db = at(log, "cleanup: db pool closed");
    let telemetry = at(log, "cleanup: telemetry flushed");
    assert!(
        http < db && workers < db,
        "the pool closed before its users drained:\n{log}"
    );
    assert!(db < telemetry, "telemetry was not last:\n{log}");
    assert!(!log.contains("ORDER VIOLATION"), "{log}");
    assert_eq!(log.matches("cleanup: db pool closed").count(), 1);
    assert_eq!(log.matches("cleanup: telemetry flushed").count(), 1);
}

#[test]
fn cleanup_runs_in_order_when_the_stop_drains_in_time() {
    let mut s = Service::start("ordered_cleanup", &["--delay-ms", "800"]);
    assert!(body(get(s.addr, "/job?ms=2000")).ends_with("queued\n"));
    s.wait_log("job of 2000 ms started", 1);
    // The second worker runs the second job; the third job waits for one.
    assert!(body(get(s.addr, "/job?ms=1900")).ends_with("queued\n"));
    s.wait_log("job of 1900 ms started", 1);
    assert!(body(get(s.addr, "/job?ms=1800")).ends_with("queued\n"));
    let request = get(s.addr, "/");
    // The jobs are running and the request is in flight.
    s.wait_log("GET /\n", 1);
    s.signal("TERM");
    assert!(body(request).ends_with("hello\n"), "the request finished");
    assert_eq!(s.exit_code(), 0, "{}", s.stderr());
    let log = s.stderr();
    assert!(
        log.contains("job of 2000 ms done") && log.contains("job of 1900 ms done"),
        "the running jobs finished: {log}"
    );
    assert!(!log.contains("job of 1800 ms started"), "{log}");
    assert!(
        log.contains("1 queued job(s) not started")
            && log.contains("job of 1800 ms not started: queued at the stop"),
        "the queued job is named: {log}"
    );
    assert_order(&log);
}

#[test]
fn cleanup_runs_in_order_when_the_stop_is_forced() {
    let mut s = Service::start(
        "ordered_cleanup",
        &["--delay-ms", "10000", "--timeout-ms", "600"],
    );
    assert!(body(get(s.addr, "/job?ms=10000")).ends_with("queued\n"));
    let request = get(s.addr, "/");
    // The job is running and the request is in flight.
    s.wait_log("job of 10000 ms started", 1);
    s.wait_log("GET /\n", 1);
    s.signal("TERM");
    assert!(
        !body(request).contains("hello"),
        "the forced request was cut"
    );
    assert_eq!(s.exit_code(), 1, "{}", s.stderr());
    let log = s.stderr();
    assert!(log.contains("abandoned: the stop was forced"), "{log}");
    assert!(
        log.contains("what was left"),
        "the report was logged: {log}"
    );
    assert_order(&log);
}

/// A stop that comes while the program starts (the signal right after
/// `listening on`, with a request already in the listener's backlog): the
/// server, started under an already-triggered `http` stage, still serves
/// that request before the pool closes, and the order holds.
#[test]
fn a_stop_during_start_up_serves_the_backlog_before_the_pool_closes() {
    for _ in 0..5 {
        let mut s = Service::start("ordered_cleanup", &["--delay-ms", "50"]);
        let request = get(s.addr, "/");
        s.signal("TERM");
        let answer = body(request);
        assert!(answer.ends_with("hello\n"), "{answer}");
        assert_eq!(s.exit_code(), 0, "{}", s.stderr());
        let log = s.stderr();
        assert!(!log.contains("ORDER VIOLATION"), "{log}");
        assert_order(&log);
    }
}
