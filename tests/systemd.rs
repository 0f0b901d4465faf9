//! Supervisors, played for real: a fake systemd notify socket, socket
//! activation with an inherited listening socket, and kill budgets.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use common::{example_path, Service, PATIENCE};

/// A fake `NOTIFY_SOCKET`: collects every datagram with its arrival time.
struct NotifySocket {
    path: std::path::PathBuf,
    received: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl NotifySocket {
    fn new() -> NotifySocket {
        let path = std::env::temp_dir().join(format!(
            "graceful-notify-{}-{:?}.sock",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let r = received.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                r.lock().unwrap().push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
            }
        });
        NotifySocket { path, received }
    }

    fn messages(&self) -> Vec<(Instant, String)> {
        self.received.lock().unwrap().clone()
    }

    fn wait_for(&self, what: &str) -> Instant {
        let until = Instant::now() + PATIENCE;
        loop {
            if let Some((t, _)) = self.messages().into_iter().find(|(_, m)| m.contains(what)) {
                return t;
            }
            assert!(Instant::now() < until, "no {what} in {:?}", self.messages());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A restart under systemd: the manager learns the successor's PID
/// (`MAINPID=`), the successor says `READY=1` itself, and the old process
/// does not say `STOPPING=1` (the service is not stopping); the successor
/// does when it stops.
#[test]
fn a_restart_hands_the_main_pid_over_without_stopping() {
    // The successor outlives its parent: adopt it, to reap it (a zombie
    // would otherwise look alive) and read its exit status.
    nix::sys::prctl::set_child_subreaper(true).expect("become a subreaper");
    let notify = NotifySocket::new();
    let mut s = Service::start_with("tokio_echo", &["--restart-signal", "SIGHUP"], |cmd| {
        cmd.env("NOTIFY_SOCKET", &notify.path);
    });
    notify.wait_for("READY=1");
    s.signal("HUP");
    let handed = notify.wait_for("MAINPID=");
    assert_eq!(s.exit_code(), 0, "{}", s.stderr());
    let messages = notify.messages();
    let successor: i32 = messages
        .iter()
        .find_map(|(_, m)| m.split("MAINPID=").nth(1))
        .and_then(|rest| rest.lines().next())
        .and_then(|pid| pid.trim().parse().ok())
        .expect("MAINPID=<pid>");
    assert_ne!(successor, s.pid() as i32);
    let readies = messages
        .iter()
        .filter(|(_, m)| m.contains("READY=1"))
        .count();
    assert_eq!(
        readies, 2,
        "the first process and its successor: {messages:?}"
    );
    assert!(
        !messages.iter().any(|(_, m)| m.contains("STOPPING=1")),
        "a restart is not a stop: {messages:?}"
    );
    assert!(handed.elapsed() < PATIENCE);
    // The successor stops like any service.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(successor),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    notify.wait_for("STOPPING=1");
    let pid = nix::unistd::Pid::from_raw(successor);
    let until = Instant::now() + PATIENCE;
    loop {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)).expect("the successor is our child") {
            WaitStatus::StillAlive => {
                assert!(Instant::now() < until, "successor {successor} did not exit");
                std::thread::sleep(Duration::from_millis(10));
            }
            status => {
                assert_eq!(status, WaitStatus::Exited(pid, 0));
                break;
            }
        }
    }
}

fn extend_usec(message: &str) -> Option<u64> {
    message
        .lines()
        .find_map(|l| l.strip_prefix("EXTEND_TIMEOUT_USEC="))
        .map(|v| v.parse().unwrap())
}

#[test]
fn notify_ready_stopping_and_extend_while_the_drain_progresses() {
    let notify = NotifySocket::new();
    let mut s = Service::start_with("tokio_echo", &["--delay-ms", "1500"], |cmd| {
        cmd.env("NOTIFY_SOCKET", &notify.path);
    });
    let ready = notify.wait_for("READY=1");
    let mut first = TcpStream::connect(s.addr).unwrap();
    first.write_all(b"one\n").unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let mut second = TcpStream::connect(s.addr).unwrap();
    second.write_all(b"two\n").unwrap();
    s.wait_log("line from", 2);
    let signalled = Instant::now();
    s.signal("TERM");
    let mut out = String::new();
    first.read_to_string(&mut out).unwrap();
    assert_eq!(out, "one\n");
    out.clear();
    second.read_to_string(&mut out).unwrap();
    assert_eq!(out, "two\n");
    assert_eq!(s.exit_code(), 0, "{}", s.stderr());

    let messages = notify.messages();
    assert!(
        ready < signalled && messages[0].1.contains("READY=1"),
        "{messages:?}"
    );
    let stopping: Vec<_> = messages
        .iter()
        .filter(|(_, m)| m.contains("STOPPING=1"))
        .collect();
    assert_eq!(stopping.len(), 1, "{messages:?}");
    assert!(stopping[0].0 >= signalled);
    let first_extend = extend_usec(&stopping[0].1).expect("STOPPING=1 comes with an extension");
    assert!(
        first_extend >= 30_000_000,
        "extends for the whole 30 s deadline: {first_extend}"
    );
    let extends: Vec<u64> = messages
        .iter()
        .filter_map(|(_, m)| extend_usec(m))
        .collect();
    assert!(
        extends.len() >= 2,
        "extended again when one of two connections finished: {messages:?}"
    );
    assert!(
        extends[1] < extends[0],
        "later extensions cover the time left: {extends:?}"
    );
    assert!(
        messages.last().unwrap().1.contains("STATUS=drained"),
        "{messages:?}"
    );
}

/// A drain that makes no progress is not extended past its own budget:
/// the one extension at the trigger covers the deadline plus the margin,
/// no other comes while the stuck connection holds, and the process's own
/// deadline ends the stop (exit 1) well within that extension.
#[test]
fn a_drain_that_makes_no_progress_is_not_extended_past_its_budget() {
    let notify = NotifySocket::new();
    let args = ["--delay-ms", "60000", "--timeout-ms", "2500"];
    let mut s = Service::start_with("tokio_echo", &args, |cmd| {
        cmd.env("NOTIFY_SOCKET", &notify.path);
    });
    notify.wait_for("READY=1");
    let mut stuck = TcpStream::connect(s.addr).unwrap();
    stuck.write_all(b"stuck\n").unwrap();
    s.wait_log("line from", 1);
    let signalled = Instant::now();
    s.signal("TERM");
    assert_eq!(s.exit_code(), 1, "{}", s.stderr());
    let took = signalled.elapsed();
    let messages = notify.messages();
    let extends: Vec<u64> = messages
        .iter()
        .filter_map(|(_, m)| extend_usec(m))
        .collect();
    assert_eq!(extends.len(), 1, "extended with no progress: {messages:?}");
    // The deadline plus the 5 s margin.
    assert_eq!(extends[0], 7_500_000, "{messages:?}");
    assert!(
        took < Duration::from_micros(extends[0]),
        "exited after {took:?}"
    );
}

/// A child process killed if the test ends without stopping it.
struct Child(Option<std::process::Child>);

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `example` the way systemd does with socket activation: the
/// listening socket as fd 3, `LISTEN_FDS=1`, `LISTEN_FDNAMES=http`, and
/// `LISTEN_PID` set to the process's own pid (or `pid_override`). Returns the
/// child and its first stdout line.
fn activated(example: &str, listener: TcpListener, pid_override: Option<&str>) -> (Child, String) {
    let mut cmd = Command::new("sh");
    let script = match pid_override {
        None => "export LISTEN_PID=$$; exec \"$0\" \"$@\"".to_string(),
        Some(pid) => format!("export LISTEN_PID={pid}; exec \"$0\" \"$@\""),
    };
    cmd.arg("-c")
        .arg(script)
        .arg(example_path(example))
        // Used only when the activation is refused: proves which socket serves.
        .args(["--addr", "127.0.0.1:0"])
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", "http")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cmd.fd_mappings(vec![FdMapping {
        parent_fd: listener.into(),
        child_fd: 3,
    }])
    .unwrap();
    let mut child = Child(Some(cmd.spawn().unwrap()));
    let stdout = child.0.as_mut().unwrap().stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    (child, line.trim_end().to_string())
}

fn stop(mut child: Child) -> i32 {
    let mut c = child.0.take().unwrap();
    Command::new("kill")
        .args(["-TERM", &c.id().to_string()])
        .status()
        .unwrap();
    let until = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = c.try_wait().unwrap() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > until {
            let _ = c.kill();
            let _ = c.wait();
            panic!("did not exit");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn serves_on_the_activated_socket(example: &str) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    // systemd keeps its copy of the socket across the service's stop.
    let kept = listener.try_clone().unwrap();
    let (child, line) = activated(example, listener, None);
    assert_eq!(
        line,
        format!("listening on {addr}"),
        "served on the inherited socket"
    );
    let mut c = TcpStream::connect(addr).unwrap();
    if example.ends_with("http") {
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    } else {
        c.write_all(b"activated\n").unwrap();
        let mut reply = [0u8; 10];
        c.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"activated\n");
    }
    drop(c);
    assert_eq!(stop(child), 0);
    // The stopped service left the socket as it found it: a client still
    // connects (queued for the next start), not dropped by a filter.
    let next = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    assert!(
        next.is_ok(),
        "the socket no longer completes handshakes: {next:?}"
    );
    kept.set_nonblocking(false).unwrap();
    assert!(kept.accept().is_ok());
}

fn ignores_activation_meant_for_another_process(example: &str) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (child, line) = activated(example, listener, Some("1"));
    assert!(line.starts_with("listening on 127.0.0.1:"), "{line}");
    assert_ne!(
        line,
        format!("listening on {addr}"),
        "LISTEN_PID is checked"
    );
    assert_eq!(stop(child), 0);
}

macro_rules! activation_tests {
    ($($example:ident),*) => {$(
        mod $example {
            #[test]
            fn serves_on_the_activated_socket() {
                super::serves_on_the_activated_socket(stringify!($example));
            }
            #[test]
            fn ignores_activation_meant_for_another_process() {
                super::ignores_activation_meant_for_another_process(stringify!($example));
            }
        }
    )*};
}

activation_tests!(tokio_echo, smol_echo, std_echo, tokio_http);

#[test]
fn warns_when_a_stop_would_outlast_the_kill_budget() {
    let budget_line = "Kubernetes kills a stopping process after 30s";
    let mut over = Service::start_with(
        "tokio_http",
        &["--timeout-ms", "28000", "--pre-drain-ms", "5000"],
        |cmd| {
            cmd.env("KUBERNETES_SERVICE_HOST", "10.0.0.1");
        },
    );
    over.signal("TERM");
    assert_eq!(over.exit_code(), 0);
    let log = over.stderr();
    assert!(
        log.contains(budget_line) && log.contains("killed mid-drain"),
        "{log}"
    );

    let mut within = Service::start_with(
        "tokio_http",
        &["--timeout-ms", "20000", "--pre-drain-ms", "5000"],
        |cmd| {
            cmd.env("KUBERNETES_SERVICE_HOST", "10.0.0.1");
        },
    );
    within.signal("INT");
    within.signal("INT");
    let _ = within.exit_code();
    assert!(
        !within.stderr().contains("killed mid-drain"),
        "{}",
        within.stderr()
    );

    let mut supervisord = Service::start_with("std_echo", &["--timeout-ms", "15000"], |cmd| {
        cmd.env("SUPERVISOR_ENABLED", "1");
    });
    supervisord.signal("TERM");
    assert_eq!(supervisord.exit_code(), 0);
    assert!(supervisord
        .stderr()
        .contains("supervisord kills a stopping process after 10s"));
}
