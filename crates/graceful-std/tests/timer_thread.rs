//! The timer thread starts with the server, not with the stop's first
//! timer: at the stop the process may be at its thread limit, and a timer
//! made while no thread can start would panic when polled. Its own test
//! binary, so that no other test made a timer first.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use graceful_std::{Conn, Reason, ServeConfig, Shutdown, Stream};

fn timer_thread_running() -> bool {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .any(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end() == "futures-timer")
        })
}

fn echo(stream: Stream, _: Conn) -> std::io::Result<()> {
    let mut output = stream.get_ref();
    for line in BufReader::new(stream.get_ref()).lines() {
        writeln!(output, "{}", line?)?;
    }
    Ok(())
}

#[test]
fn the_timer_thread_starts_before_the_server_serves() {
    assert!(!timer_thread_running(), "a timer was made before this test");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let s = shutdown.clone();
    let server = std::thread::spawn(move || {
        graceful_std::serve_blocking(listener, &s, ServeConfig::default(), echo)
    });
    // Served once: the server is past its start, and no stop began.
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"hi\n").unwrap();
    let mut line = String::new();
    BufReader::new(&c).read_line(&mut line).unwrap();
    assert_eq!(line, "hi\n");
    // A new thread names itself once it runs: give it the time to.
    let until = Instant::now() + Duration::from_secs(5);
    while !timer_thread_running() {
        assert!(Instant::now() < until, "no timer thread while serving");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(c);
    shutdown.trigger(Reason::requested());
    let until = Instant::now() + Duration::from_secs(10);
    while !server.is_finished() {
        assert!(Instant::now() < until, "the server did not stop");
        std::thread::sleep(Duration::from_millis(5));
    }
    let outcome = server.join().unwrap().unwrap();
    assert!(outcome.is_drained(), "{outcome}");
}
