//! The echo examples as real processes, driven by real clients and real
//! signals. The same tests run against every adapter's echo example.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{refused_within, run_to_exit, run_to_exit_with_stdout, Service, PATIENCE};

struct Line {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Line {
    fn connect(s: &Service) -> Line {
        let stream = TcpStream::connect(s.addr).expect("connect");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Line { stream, reader }
    }
    fn send(&mut self, text: &str) {
        self.stream.write_all(text.as_bytes()).unwrap();
    }
    fn read_line(&mut self) -> String {
        let mut l = String::new();
        self.reader.read_line(&mut l).expect("read a line");
        l
    }
    /// Reads until end-of-stream; returns what came and when it ended.
    fn read_to_end(&mut self) -> (String, Instant) {
        let mut s = String::new();
        let _ = self.reader.read_to_string(&mut s);
        (s, Instant::now())
    }
}

fn idle_connection_closed_within_300ms(example: &str) {
    let mut s = Service::start(example, &[]);
    let mut idle = Line::connect(&s);
    idle.send("hello\n");
    assert_eq!(idle.read_line(), "hello\n");
    let t0 = Instant::now();
    s.signal("TERM");
    let (rest, ended) = idle.read_to_end();
    assert_eq!(rest, "");
    let took = ended - t0;
    assert!(
        took < Duration::from_millis(300),
        "idle close took {took:?}"
    );
    assert_eq!(s.exit_code(), 0);
}

fn in_flight_line_echoed_completely_then_closed(example: &str) {
    let mut s = Service::start(example, &["--delay-ms", "500"]);
    let mut c = Line::connect(&s);
    let line = format!("{}\n", "x".repeat(10_000));
    c.send(&line);
    s.wait_log("line from", 1);
    s.signal("TERM");
    let (got, _) = c.read_to_end();
    assert_eq!(got, line, "the whole line, then end-of-stream");
    assert_eq!(s.exit_code(), 0);
    let log = s.stderr();
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("drained in"), "{log}");
}

fn new_connects_refused_after_the_signal(example: &str) {
    let mut s = Service::start(example, &["--delay-ms", "1000"]);
    let mut busy = Line::connect(&s);
    busy.send("busy\n");
    s.wait_log("line from", 1);
    s.signal("TERM");
    assert!(
        refused_within(s.addr, Duration::from_millis(500)),
        "still accepting"
    );
    let (got, _) = busy.read_to_end();
    assert_eq!(got, "busy\n");
    assert_eq!(s.exit_code(), 0);
}

fn deadline_forces_and_exits_1_near_the_deadline(example: &str) {
    let mut s = Service::start(example, &["--delay-ms", "10000", "--timeout-ms", "700"]);
    let mut stuck = Line::connect(&s);
    stuck.send("slow\n");
    s.wait_log("line from", 1);
    let t0 = Instant::now();
    s.signal("TERM");
    let (got, _) = stuck.read_to_end();
    assert_eq!(got, "", "forced: nothing echoed");
    let code = s.exit_code();
    let took = t0.elapsed();
    assert_eq!(code, 1, "{}", s.stderr());
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_millis(700 + 1500),
        "exited after {took:?}"
    );
    let log = s.stderr();
    assert!(log.contains("what was left"), "the report is logged: {log}");
    assert!(
        log.contains("conn 127.0.0.1:"),
        "the report names the connection: {log}"
    );
}

fn second_signal_exits_with_128_plus_signo(example: &str, signal: &str, code: i32) {
    let mut s = Service::start(example, &["--delay-ms", "10000"]);
    let mut stuck = Line::connect(&s);
    stuck.send("slow\n");
    s.wait_log("line from", 1);
    s.signal(signal);
    // Taken before the second is sent: two pending alike are one.
    s.wait_log(&format!("SIG{signal} received"), 1);
    assert!(
        s.exit_within(Duration::from_millis(300)).is_none(),
        "draining"
    );
    s.signal(signal);
    s.assert_exit_forced_by_a_second(signal, code);
}

fn idle_process_exits_0_quickly(example: &str) {
    let mut s = Service::start(example, &[]);
    let t0 = Instant::now();
    s.signal("INT");
    assert_eq!(s.exit_code(), 0);
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "{:?}",
        t0.elapsed()
    );
    // Exactly one line on stdout; the logs went to stderr.
    assert_eq!(s.stdout_after_the_first_line(), Vec::<String>::new());
}

fn progress_is_logged_while_draining(example: &str) {
    let mut s = Service::start(example, &["--delay-ms", "2500"]);
    let mut c = Line::connect(&s);
    c.send("slow\n");
    s.wait_log("line from", 1);
    s.signal("TERM");
    let (got, _) = c.read_to_end();
    assert_eq!(got, "slow\n");
    assert_eq!(s.exit_code(), 0);
    let log = s.stderr();
    let progress = log.matches("draining: 1 guard(s) left").count();
    assert!(progress >= 2, "expected a progress line a second: {log}");
    assert!(log.contains("to the deadline"), "{log}");
}

/// Every flag, malformed: exit 2, a message naming the flag and the
/// usage on stderr, nothing on stdout (which carries only the `listening
/// on` line). `--help`: exit 0, the usage on stdout. A listener that
/// cannot be had: exit 1, with why.
fn malformed_flags_exit_2_with_a_message(example: &str) {
    let number = "takes a whole number of milliseconds";
    for (args, says) in [
        (
            &["--timeout-ms", "soon"][..],
            format!("--timeout-ms {number}"),
        ),
        (&["--timeout-ms=soon"], format!("--timeout-ms {number}")),
        (&["--delay-ms", "-1"], format!("--delay-ms {number}")),
        (
            &["--pre-drain-ms", "1.5"],
            format!("--pre-drain-ms {number}"),
        ),
        (
            &["--restart-timeout-ms", "x"],
            format!("--restart-timeout-ms {number}"),
        ),
        (&["--addr", "nowhere"], "--addr takes IP:PORT".into()),
        (&["--addr", "localhost:8080"], "--addr takes IP:PORT".into()),
        (
            &["--restart-signal", "SIGTERM"],
            "--restart-signal takes SIGHUP or SIGUSR2".into(),
        ),
        (&["--frobnicate"], "--frobnicate".into()),
        (&["--delay-ms"], "--delay-ms".into()),
        (&["--pid-file"], "--pid-file".into()),
        (&["extra"], "extra".into()),
    ] {
        let (code, out, err) = run_to_exit_with_stdout(example, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(&says), "{args:?}: {err}");
        assert!(err.contains("usage:"), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
    let (code, out, err) = run_to_exit_with_stdout(example, &["--help"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("usage: {example}")), "{out}");
    assert!(err.is_empty(), "{err}");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = run_to_exit(example, &["--addr", &addr]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

/// CPU time the process `pid` used so far, in clock ticks (user + system).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// A stop while the process is out of descriptors: taking the backlog at
/// close gives up at the first EMFILE instead of retrying in a loop (the
/// process stays nearly idle while it stops), and the deadline holds.
fn stop_while_out_of_descriptors_keeps_the_deadline(example: &str) {
    let mut s = Service::start_with_few_descriptors(
        example,
        &["--delay-ms", "10000", "--timeout-ms", "2000"],
    );
    // More connections than descriptors; each sends a line that takes 10 s.
    let mut clients: Vec<Line> = (0..120).map(|_| Line::connect(&s)).collect();
    for c in &mut clients {
        c.send("slow\n");
    }
    s.wait_log("accept failed", 1);
    s.wait_log("line from", 20);
    let t0 = Instant::now();
    let cpu0 = cpu_ticks(s.pid());
    s.signal("TERM");
    std::thread::sleep(Duration::from_millis(1500));
    let used = cpu_ticks(s.pid()) - cpu0;
    let code = s.exit_code();
    let took = t0.elapsed();
    let log = s.stderr();
    assert_eq!(code, 1, "forced at the deadline: {log}");
    // 5% of a core over 1.5 s is 75 ms: 7 ticks at 100 Hz.
    assert!(
        used <= 7,
        "{used} ticks of CPU in the first 1.5 s of the stop"
    );
    assert!(
        took >= Duration::from_millis(2000) && took < Duration::from_millis(2000 + 500),
        "exited after {took:?} with a 2 s deadline"
    );
    assert!(
        log.contains("out of descriptors while taking the backlog"),
        "{log}"
    );
    // Its spare descriptor let go, it counted what it left.
    let left = common::could_not_take(&log);
    assert!(left.is_some_and(|n| n > 0), "{log}");
}

fn accept_errors_back_off_and_the_server_recovers(example: &str) {
    // Few descriptors: connections beyond them make accept fail (EMFILE).
    let mut s = Service::start_with_few_descriptors(example, &[]);
    let flood: Vec<TcpStream> = (0..80)
        .filter_map(|_| TcpStream::connect(s.addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let log = s.stderr();
    let failures = log.matches("accept failed").count();
    assert!(failures >= 1, "expected accept to fail with EMFILE: {log}");
    assert!(failures < 40, "no back-off: {failures} failures in 1.5 s");
    drop(flood);
    // Descriptors are free again: the server serves.
    let until = Instant::now() + PATIENCE;
    loop {
        let mut c = Line::connect(&s);
        c.send("back\n");
        let mut l = String::new();
        if c.reader.read_line(&mut l).is_ok() && l == "back\n" {
            break;
        }
        assert!(Instant::now() < until, "the server did not recover");
    }
    s.signal("TERM");
    assert_eq!(s.exit_code(), 0);
}

macro_rules! echo_tests {
    ($($example:ident),*) => {$(
        mod $example {
            #[test]
            fn idle_connection_closed_within_300ms() {
                super::idle_connection_closed_within_300ms(stringify!($example));
            }
            #[test]
            fn in_flight_line_echoed_completely_then_closed() {
                super::in_flight_line_echoed_completely_then_closed(stringify!($example));
            }
            #[test]
            fn new_connects_refused_after_the_signal() {
                super::new_connects_refused_after_the_signal(stringify!($example));
            }
            #[test]
            fn deadline_forces_and_exits_1_near_the_deadline() {
                super::deadline_forces_and_exits_1_near_the_deadline(stringify!($example));
            }
            #[test]
            fn second_sigterm_exits_143() {
                super::second_signal_exits_with_128_plus_signo(stringify!($example), "TERM", 143);
            }
            #[test]
            fn second_sigint_exits_130() {
                super::second_signal_exits_with_128_plus_signo(stringify!($example), "INT", 130);
            }
            #[test]
            fn idle_process_exits_0_quickly() {
                super::idle_process_exits_0_quickly(stringify!($example));
            }
            #[test]
            fn progress_is_logged_while_draining() {
                super::progress_is_logged_while_draining(stringify!($example));
            }
            #[test]
            fn malformed_flags_exit_2_with_a_message() {
                super::malformed_flags_exit_2_with_a_message(stringify!($example));
            }
            #[test]
            fn stop_while_out_of_descriptors_keeps_the_deadline() {
                super::stop_while_out_of_descriptors_keeps_the_deadline(stringify!($example));
            }
            #[test]
            fn accept_errors_back_off_and_the_server_recovers() {
                super::accept_errors_back_off_and_the_server_recovers(stringify!($example));
            }
        }
    )*};
}

echo_tests!(tokio_echo, smol_echo, std_echo);
