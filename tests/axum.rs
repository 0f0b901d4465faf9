//! The axum example as a real process: an axum Router served through
//! graceful_tokio::http::serve drains like the other HTTP examples.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{refused_within, Service, PATIENCE};

#[test]
fn axum_request_in_flight_completes_across_sigterm() {
    let mut s = Service::start("axum", &["--delay-ms", "800"]);
    let mut health = TcpStream::connect(s.addr).unwrap();
    health
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    health.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");

    let mut slow = TcpStream::connect(s.addr).unwrap();
    slow.set_read_timeout(Some(PATIENCE)).unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    s.wait_log("GET /slow from", 1);
    s.signal("TERM");
    assert!(refused_within(s.addr, Duration::from_millis(500)));
    let mut reply = String::new();
    slow.read_to_string(&mut reply).unwrap();
    let lower = reply.to_ascii_lowercase();
    assert!(lower.starts_with("http/1.1 200"), "{reply}");
    assert!(lower.contains("connection: close"), "{reply}");
    let peer = slow.local_addr().unwrap();
    assert!(
        reply.ends_with(&format!("hello {peer}\n")),
        "the handler saw its Conn: {reply}"
    );
    assert_eq!(s.exit_code(), 0, "{}", s.stderr());
}
