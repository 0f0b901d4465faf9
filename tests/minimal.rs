//! The short per-adapter examples (`tokio_minimal`, `smol_minimal`,
//! `std_minimal`) do what their docs say: work in flight at SIGTERM
//! completes, then the process exits 0.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use common::{Service, PATIENCE};

#[test]
fn tokio_minimal_finishes_the_request_in_flight_at_sigterm() {
    let mut s = Service::start_exactly("tokio_minimal", &["127.0.0.1:0"]);
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    // The handler takes a second: the signal lands while it works.
    s.wait_log("GET /", 1);
    s.signal("TERM");
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "{reply}"
    );
    assert!(reply.ends_with("hello\n"), "{reply}");
    assert_eq!(s.exit_code(), 0, "{}", s.stderr());
}

/// A line echoed, then the signal: the connection's input ends, it closes,
/// and the process exits 0.
fn echo_then_stop(example: &str) {
    let mut s = Service::start_exactly(example, &["127.0.0.1:0"]);
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    c.write_all(b"hello\n").unwrap();
    let mut reader = BufReader::new(c.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "hello\n");
    s.signal("TERM");
    line.clear();
    assert_eq!(
        reader.read_line(&mut line).unwrap(),
        0,
        "closed at the stop"
    );
    assert_eq!(s.exit_code(), 0, "{}", s.stderr());
}

#[test]
fn smol_minimal_echoes_then_stops() {
    echo_then_stop("smol_minimal");
}

#[test]
fn std_minimal_echoes_then_stops() {
    echo_then_stop("std_minimal");
}
