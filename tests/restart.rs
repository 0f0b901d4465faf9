//! Zero-downtime restart with the examples as real processes: the listener
//! handed to a successor on SIGHUP, under load, with the binary replaced
//! in between; and the restarts that must not happen.
//!
//! This test process is a child subreaper, so every successor (a child of
//! its predecessor) becomes its child when the predecessor exits, and its
//! exit status can be checked.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::load::{runtime, Counts, Load};
use common::{example_path, PATIENCE};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// A directory of this test's own, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("graceful-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Puts a copy of `from` at `to` atomically (a new file renamed over the
/// old one), as a deploy replaces a binary.
fn install(from: &Path, to: &Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// Writes an executable shell script at `to`, atomically.
fn install_script(to: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let tmp = to.with_extension("new");
    std::fs::write(&tmp, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// The first server and every successor, sharing one stdout and one log.
struct Servers {
    addr: SocketAddr,
    pid_file: PathBuf,
    log: PathBuf,
    lines: mpsc::Receiver<String>,
    /// Every PID started, in order; all are reaped before the test ends.
    pids: Vec<i32>,
    /// The PIDs reaped here (which the drop must not signal: another
    /// process may have their number by then).
    reaped: std::cell::RefCell<Vec<i32>>,
}

impl Servers {
    /// Starts `binary` (the deployed path) restarting on `signal`, with
    /// `args`.
    fn start(dir: &Path, binary: &Path, signal: &str, args: &[&str]) -> Servers {
        nix::sys::prctl::set_child_subreaper(true).expect("become a subreaper");
        let pid_file = dir.join("server.pid");
        let log = dir.join("server.log");
        let mut child = Command::new(binary)
            .args(["--addr", "127.0.0.1:0", "--restart-signal", signal])
            .arg("--pid-file")
            .arg(&pid_file)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = lines.recv_timeout(PATIENCE).expect("a listening line");
        let addr = first
            .strip_prefix("listening on ")
            .expect("listening on ADDR")
            .parse()
            .unwrap();
        let pid = child.id() as i32;
        // Reaped by waitpid below, like the successors.
        std::mem::forget(child);
        Servers {
            addr,
            pid_file,
            log,
            lines,
            pids: vec![pid],
            reaped: Default::default(),
        }
    }

    fn current(&self) -> i32 {
        *self.pids.last().unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, pid: i32, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(Pid::from_raw(pid), signal).unwrap();
    }

    /// Restarts the current server; returns once the successor printed its
    /// `listening on` line, the PID file names it, and the old process
    /// exited 0.
    fn restart(&mut self, signal: nix::sys::signal::Signal) {
        let old = self.current();
        let new = self.hand_over(signal);
        let until = Instant::now() + PATIENCE;
        while std::fs::read_to_string(&self.pid_file).map_or(true, |p| p.trim() != new.to_string())
        {
            assert!(Instant::now() < until, "the PID file does not name {new}");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            self.wait(old),
            WaitStatus::Exited(Pid::from_raw(old), 0),
            "{}",
            self.log()
        );
    }

    /// Restarts the current server on `signal`; returns the successor's
    /// PID once it printed its `listening on` line and the current one
    /// hands over to it (then serves a second more, and drains).
    fn hand_over(&mut self, signal: nix::sys::signal::Signal) -> i32 {
        let log = self.log();
        let (started, handed) = (
            log.matches("started successor").count(),
            log.matches("handing over").count(),
        );
        self.signal(self.current(), signal);
        // Listed as soon as it runs, so that a failure below kills it too.
        wait_for(self, "started successor", started + 1);
        let new = last_successor(&self.log());
        self.pids.push(new);
        let line = self
            .lines
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("no successor started: {}", self.log()));
        assert_eq!(
            line,
            format!("listening on {}", self.addr),
            "the same address"
        );
        wait_for(self, "handing over", handed + 1);
        new
    }

    /// Waits until `pid`, a child of another server (so not reaped here
    /// until that one exits), has exited.
    fn until_exited(&self, pid: i32) {
        let until = Instant::now() + PATIENCE;
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.rsplit(')').next().unwrap_or("").starts_with(" Z"))
        {
            assert!(Instant::now() < until, "{pid} never exited");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until the server answers a request (it serves: its listener
    /// is declared exclusive, and a restart hands it over alone).
    fn until_serving(&self) {
        let mut c = TcpStream::connect(self.addr).unwrap();
        c.set_read_timeout(Some(PATIENCE)).unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        c.read_to_string(&mut String::new()).unwrap();
    }

    /// Waits for `pid` (a child, or an orphan this subreaper adopted).
    fn wait(&self, pid: i32) -> WaitStatus {
        let until = Instant::now() + PATIENCE;
        loop {
            match waitpid(
                Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            ) {
                Ok(WaitStatus::StillAlive) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(status) => {
                    if !matches!(status, WaitStatus::StillAlive) {
                        self.reaped.borrow_mut().push(pid);
                    }
                    return status;
                }
                Err(e) => panic!("waiting for {pid}: {e}"),
            }
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        let reaped = self.reaped.borrow();
        for &pid in self.pids.iter().filter(|pid| !reaped.contains(pid)) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
    }
}

/// What the readiness probes saw.
#[derive(Default)]
struct Probes {
    answered: usize,
    /// The status lines of those answered that are not `200`.
    not_ready: Vec<String>,
    /// Why those that connected got no answer.
    lost: Vec<String>,
}

/// Readiness probes on a thread of their own.
struct Prober {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Probes>,
}

impl Prober {
    /// Starts probing `addr` (see [`probe_readiness`]).
    fn start(addr: SocketAddr, until_refused: bool) -> Prober {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let told = stop.clone();
        let thread = std::thread::spawn(move || probe_readiness(addr, told, until_refused));
        Prober { stop, thread }
    }

    /// Stops probing; returns what the probes saw.
    fn stop(self) -> Probes {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// Probes the readiness endpoint at `addr` on a new connection every
/// 2 ms until `stop` is set, or (if `until_refused`) a connect is
/// refused.
fn probe_readiness(
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    until_refused: bool,
) -> Probes {
    let mut probes = Probes::default();
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let mut c = match TcpStream::connect(addr) {
            Ok(c) => c,
            Err(_) if until_refused => break,
            Err(_) => continue,
        };
        let probe = (|| -> std::io::Result<String> {
            c.set_read_timeout(Some(PATIENCE))?;
            c.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")?;
            let mut reply = String::new();
            c.read_to_string(&mut reply)?;
            Ok(reply)
        })();
        match probe {
            Ok(reply) if reply.starts_with("HTTP/1.1 200") => probes.answered += 1,
            Ok(reply) if reply.starts_with("HTTP/1.1 ") => {
                probes.answered += 1;
                probes
                    .not_ready
                    .push(reply.lines().next().unwrap_or_default().to_string());
            }
            Ok(reply) => probes.lost.push(format!("no status line: {reply:?}")),
            Err(e) => probes.lost.push(e.to_string()),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    probes
}

/// Three restarts in a row under 32 keep-alive clients, the binary file
/// replaced by another program between the second and the third: no
/// connect is refused, no request fails, each old process exits 0, the
/// PID changes each time, and the last successor is the new program. A
/// readiness probe answers `200` throughout, also from an old process
/// that takes it during its handover: a restart is no stop of the
/// service.
fn restarts_under_load_fail_no_request(example: &str, replacement: &str) {
    let dir = TempDir::new(&format!("restart-{example}"));
    let binary = dir.0.join("server");
    install(&example_path(example), &binary);
    // No --pre-drain-ms: a restart keeps serving a moment before the old
    // process closes its listener anyway.
    let mut servers = Servers::start(&dir.0, &binary, "SIGHUP", &["--delay-ms", "20"]);
    let rt = runtime();
    let load = Load::start(&rt, servers.addr, 32);
    let prober = Prober::start(servers.addr, false);
    std::thread::sleep(Duration::from_millis(300));
    for round in 0..3 {
        if round == 2 {
            install(&example_path(replacement), &binary);
        }
        servers.restart(nix::sys::signal::Signal::SIGHUP);
        std::thread::sleep(Duration::from_millis(300));
    }
    let Probes {
        answered: probes,
        not_ready,
        lost,
    } = prober.stop();
    assert!(lost.is_empty(), "probes connected, then lost: {lost:?}");
    println!("{example} restarts: {probes} readiness probes answered");
    assert!(
        not_ready.is_empty(),
        "readiness during restarts: {} of {probes} probes not 200, the first: {:?}",
        not_ready.len(),
        not_ready.first()
    );
    assert!(probes > 400, "too few probes answered: {probes}");
    let Counts {
        answered,
        failed,
        refused,
        servers: answered_by,
        ..
    } = load.stop(&rt);
    println!(
        "{example} restarts: answered {}, failed {}, refused {refused}, by {answered_by:?}",
        answered.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "failed: {failed:?}\n{}", servers.log());
    assert_eq!(refused, 0, "refused connects");
    assert!(answered.len() > 200, "too little load: {}", answered.len());
    assert!(answered_by.contains_key(replacement), "{answered_by:?}");
    let pids = &servers.pids;
    assert_eq!(pids.len(), 4);
    assert!(pids.windows(2).all(|w| w[0] != w[1]), "{pids:?}");
    // The replaced binary answers now.
    let mut c = TcpStream::connect(servers.addr).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut reply = String::new();
    c.read_to_string(&mut reply).unwrap();
    assert!(
        reply
            .to_ascii_lowercase()
            .contains(&format!("server: {replacement}")),
        "{reply}"
    );
    // Only a stop with no successor stops the handshakes: the last
    // successor's, on a socket its predecessors have all let go.
    let stopped = "new handshakes stopped";
    assert_eq!(
        servers.log().matches(stopped).count(),
        0,
        "{}",
        servers.log()
    );
    let last = servers.current();
    servers.signal(last, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        servers.wait(last),
        WaitStatus::Exited(Pid::from_raw(last), 0)
    );
    assert_eq!(
        servers.log().matches(stopped).count(),
        1,
        "{}",
        servers.log()
    );
}

/// Restarts of an echo example on `signal` while clients send lines, each
/// on a connection of its own: every line is echoed, no connect is refused.
fn echo_restarts_lose_no_line(example: &str, signal: nix::sys::signal::Signal) {
    let dir = TempDir::new(&format!("restart-{example}"));
    let binary = dir.0.join("server");
    install(&example_path(example), &binary);
    let mut servers = Servers::start(&dir.0, &binary, signal.as_str(), &[]);
    let addr = servers.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut sent = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let mut c = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
                    c.set_read_timeout(Some(PATIENCE)).unwrap();
                    let line = format!("client {i} line {sent}\n");
                    c.write_all(line.as_bytes())
                        .map_err(|e| format!("send: {e}"))?;
                    let mut got = String::new();
                    BufReader::new(&c)
                        .read_line(&mut got)
                        .map_err(|e| format!("read: {e}"))?;
                    if got != line {
                        return Err(format!("sent {line:?}, got {got:?}"));
                    }
                    sent += 1;
                }
                Ok::<usize, String>(sent)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..3 {
        servers.restart(signal);
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut total = 0;
    for c in clients {
        total += c
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}\n{}", servers.log()));
    }
    println!("{example} restarts: {total} lines echoed");
    assert!(total > 100, "too little load: {total}");
    let last = servers.current();
    servers.signal(last, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        servers.wait(last),
        WaitStatus::Exited(Pid::from_raw(last), 0)
    );
}

/// A successor that fails (exits at once, or never says it is ready) is
/// stopped and logged; the old process keeps serving, and a restart while
/// one waits is refused. A SIGTERM while a successor is not ready yet stops
/// both.
fn failed_restarts_keep_serving(example: &str) {
    let dir = TempDir::new(&format!("restart-fail-{example}"));
    let binary = dir.0.join("server");
    install(&example_path(example), &binary);
    let servers = Servers::start(
        &dir.0,
        &binary,
        "SIGHUP",
        &["--delay-ms", "0", "--restart-timeout-ms", "5000"],
    );
    let pid = servers.current();
    let get = |addr: SocketAddr| {
        let mut c = TcpStream::connect(addr).expect("still accepting");
        c.set_read_timeout(Some(PATIENCE)).unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        assert!(reply.ends_with("hello\n"), "{reply}");
    };

    // A binary that exits at once.
    install_script(&binary, "exit 3");
    servers.signal(pid, nix::sys::signal::Signal::SIGHUP);
    wait_for(&servers, "the successor exited before it was ready", 1);
    get(servers.addr);

    // One that never says it is ready: stopped after the timeout.
    install_script(&binary, "exec sleep 600");
    servers.signal(pid, nix::sys::signal::Signal::SIGHUP);
    wait_for(&servers, "the successor was not ready within", 1);
    get(servers.addr);

    // A restart during a restart is refused; a stop during one stops both.
    servers.signal(pid, nix::sys::signal::Signal::SIGHUP);
    wait_for(&servers, "started successor", 3);
    servers.signal(pid, nix::sys::signal::Signal::SIGHUP);
    wait_for(&servers, "SIGHUP ignored: a restart is in progress", 1);
    get(servers.addr);
    servers.signal(pid, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(servers.wait(pid), WaitStatus::Exited(Pid::from_raw(pid), 0));
    let log = servers.log();
    assert!(log.contains("stopping successor"), "{log}");
    let successor = last_successor(&log);
    assert!(
        nix::sys::signal::kill(Pid::from_raw(successor), None).is_err(),
        "successor {successor} still runs"
    );
    assert_eq!(
        std::fs::read_to_string(&servers.pid_file).unwrap().trim(),
        pid.to_string()
    );
}

/// Three stop signals at once while a successor is starting: the process
/// exits at the third (128 + SIGTERM) without waiting for its restart to
/// notice the stop, and still stops the successor, which is not ready yet,
/// rather than leave it to become ready and serve after the service was
/// told to stop.
fn a_third_signal_during_a_restart_leaves_no_successor(example: &str) {
    // A successor that never says it is ready (it stands for one that
    // would, later).
    let args = ["--delay-ms", "0", "--restart-timeout-ms", "30000"];
    let (_dir, servers, pid, successor) = restarting(example, "third", &args, "exec sleep 600");
    // Two different signals, so that the kernel does not merge them; the
    // third once both were taken (a signal already pending would merge).
    servers.signal(pid, nix::sys::signal::Signal::SIGTERM);
    servers.signal(pid, nix::sys::signal::Signal::SIGINT);
    let until = Instant::now() + PATIENCE;
    while !servers.log().contains("received again") {
        assert!(Instant::now() < until, "{}", servers.log());
        std::thread::sleep(Duration::from_micros(200));
    }
    servers.signal(pid, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        servers.wait(pid),
        WaitStatus::Exited(Pid::from_raw(pid), 128 + 15),
        "{}",
        servers.log()
    );
    // Reparented to this subreaper when its parent exited.
    assert_eq!(
        servers.wait(successor),
        WaitStatus::Signaled(
            Pid::from_raw(successor),
            nix::sys::signal::Signal::SIGTERM,
            false
        ),
        "the successor was left running"
    );
}

/// A stop while a successor that ignores SIGTERM is starting: the stop
/// waits for it as for work in flight, and its deadline holds. At the
/// deadline the successor is killed and named, and the process exits 1,
/// rather than exit 0 at once and then wait for the successor 30 s more
/// (past the deadline and any kill budget).
fn a_stop_during_a_restart_kills_a_stubborn_successor_at_its_deadline(example: &str) {
    // Ignores SIGTERM, and never says it is ready.
    let args = ["--delay-ms", "0", "--timeout-ms", "1000"];
    let script = "trap '' TERM; exec sleep 600";
    let (_dir, mut servers, pid, successor) = restarting(example, "stubborn", &args, script);
    let stopped = Instant::now();
    servers.signal(pid, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(
        servers.wait(pid),
        WaitStatus::Exited(Pid::from_raw(pid), 1),
        "{}",
        servers.log()
    );
    let took = stopped.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "exited after {took:?} with a 1 s deadline"
    );
    let log = servers.log();
    assert!(
        log.contains(&format!("successor {successor} killed")),
        "the log does not say the successor was killed: {log}"
    );
    // Killed and reaped by its parent before it exited.
    assert!(
        nix::sys::signal::kill(Pid::from_raw(successor), None).is_err(),
        "successor {successor} still runs"
    );
    servers.pids.pop();
}

/// A successor stopped while its predecessor still drains (a request in
/// flight there): the predecessor let go of the listener a second after
/// its handover, so the successor's stop is the listener's last and stops
/// its handshakes first, and no client that connected goes unanswered.
/// The predecessor's request still gets its response.
fn a_successor_stopped_while_its_predecessor_drains_closes_the_listener_as_its_own(example: &str) {
    let dir = TempDir::new(&format!("restart-drains-{example}"));
    let binary = dir.0.join("server");
    install(&example_path(example), &binary);
    let mut servers = Servers::start(&dir.0, &binary, "SIGHUP", &["--delay-ms", "6000"]);
    let old = servers.current();
    let mut slow = TcpStream::connect(servers.addr).unwrap();
    slow.set_read_timeout(Some(PATIENCE)).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let new = servers.hand_over(nix::sys::signal::Signal::SIGHUP);
    // The predecessor closes its listener a second after the handover (a
    // restart's pre-drain), then drains.
    wait_for(&servers, "listener closed", 1);
    assert_eq!(
        waitpid(
            Pid::from_raw(old),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG)
        )
        .unwrap(),
        WaitStatus::StillAlive,
        "the predecessor no longer drains"
    );
    let prober = Prober::start(servers.addr, true);
    std::thread::sleep(Duration::from_millis(100));
    servers.signal(new, nix::sys::signal::Signal::SIGTERM);
    // A child of the predecessor until that one exits: reaped below.
    servers.until_exited(new);
    let Probes { answered, lost, .. } = prober.stop();
    assert!(answered > 10, "too few probes answered: {answered}");
    assert!(lost.is_empty(), "connected, then lost: {lost:?}");
    assert_eq!(
        servers.log().matches("new handshakes stopped").count(),
        1,
        "{}",
        servers.log()
    );
    let mut reply = String::new();
    slow.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("hello\n"), "{reply}");
    assert_eq!(servers.wait(old), WaitStatus::Exited(Pid::from_raw(old), 0));
    assert_eq!(servers.wait(new), WaitStatus::Exited(Pid::from_raw(new), 0));
}

/// A successor stopped at once, while its predecessor still serves (its
/// pre-drain after the handover, 3 s here): the successor
/// leaves the socket to the predecessor, which now holds it alone, so the
/// predecessor's close is the listener's last and stops its handshakes
/// first (logged after the successor exited), and no client that
/// connected goes unanswered.
fn a_successor_stopped_in_its_predecessors_pre_drain_leaves_the_close_to_it(example: &str) {
    let dir = TempDir::new(&format!("restart-pre-drain-{example}"));
    let binary = dir.0.join("server");
    install(&example_path(example), &binary);
    let args = ["--delay-ms", "0", "--pre-drain-ms", "3000"];
    let mut servers = Servers::start(&dir.0, &binary, "SIGHUP", &args);
    let old = servers.current();
    servers.until_serving();
    // The successor stops at once (the last flag given wins).
    let real = dir.0.join("real");
    install(&example_path(example), &real);
    install_script(
        &binary,
        &format!("exec {} \"$@\" --pre-drain-ms 0", real.display()),
    );
    let prober = Prober::start(servers.addr, true);
    let new = servers.hand_over(nix::sys::signal::Signal::SIGHUP);
    servers.signal(new, nix::sys::signal::Signal::SIGTERM);
    servers.until_exited(new);
    let before = servers.log().len();
    assert_eq!(
        servers.log().matches("listener closed").count(),
        1,
        "the successor outlived its predecessor's pre-drain: {}",
        servers.log()
    );
    assert_eq!(
        servers.wait(old),
        WaitStatus::Exited(Pid::from_raw(old), 0),
        "{}",
        servers.log()
    );
    let log = servers.log();
    let stopped = "new handshakes stopped";
    assert!(
        log[before..].contains(stopped) && log.matches(stopped).count() == 1,
        "the predecessor's close was not made as its own: {log}"
    );
    // Reaped here once its parent, the predecessor, exited.
    assert_eq!(servers.wait(new), WaitStatus::Exited(Pid::from_raw(new), 0));
    let Probes { answered, lost, .. } = prober.stop();
    assert!(answered > 10, "too few probes answered: {answered}");
    assert!(lost.is_empty(), "connected, then lost: {lost:?}");
}

/// A restart asked of a successor while its predecessor still holds the
/// listeners (its pre-drain, 2 s here) waits until the predecessor lets
/// go: the new successor could otherwise be left their only holder, with
/// the predecessor's close taken for the last. It need not wait for the
/// predecessor's drain (a 5 s request here) nor its exit.
fn a_successor_restarts_once_its_predecessor_let_go(example: &str) {
    let dir = TempDir::new(&format!("restart-again-{example}"));
    let binary = dir.0.join("server");
    install(&example_path(example), &binary);
    let args = ["--delay-ms", "5000", "--pre-drain-ms", "2000"];
    let mut servers = Servers::start(&dir.0, &binary, "SIGHUP", &args);
    let first = servers.current();
    servers.until_serving();
    let mut slow = TcpStream::connect(servers.addr).unwrap();
    slow.set_read_timeout(Some(PATIENCE)).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    servers.hand_over(nix::sys::signal::Signal::SIGHUP);
    let third = servers.hand_over(nix::sys::signal::Signal::SIGHUP);
    assert_eq!(
        waitpid(
            Pid::from_raw(first),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG)
        )
        .unwrap(),
        WaitStatus::StillAlive,
        "the restart waited for the predecessor's exit"
    );
    let log = servers.log();
    let at = |needle: &str| log.find(needle).unwrap_or(usize::MAX);
    let started_third = log.rfind(&format!("started successor {third}")).unwrap();
    assert!(
        at("still holds the listeners: waiting for it") < at("listener closed")
            && at("listener closed") < started_third,
        "the successor did not wait for its predecessor to let go: {log}"
    );
    let mut reply = String::new();
    slow.read_to_string(&mut reply).unwrap();
    assert!(reply.ends_with("hello\n"), "{reply}");
    assert_eq!(
        servers.wait(first),
        WaitStatus::Exited(Pid::from_raw(first), 0)
    );
}

/// A restart that waited the whole ready timeout (1 s here) for the
/// predecessor to let go (its pre-drain, 3 s here) fails, logged, and the
/// successor keeps serving: no third process starts.
fn a_restart_gives_up_on_a_predecessor_that_holds_on(example: &str) {
    let dir = TempDir::new(&format!("restart-held-{example}"));
    let binary = dir.0.join("server");
    install(&example_path(example), &binary);
    let args = [
        "--delay-ms",
        "0",
        "--pre-drain-ms",
        "3000",
        "--restart-timeout-ms",
        "1000",
    ];
    let mut servers = Servers::start(&dir.0, &binary, "SIGHUP", &args);
    servers.until_serving();
    let second = servers.hand_over(nix::sys::signal::Signal::SIGHUP);
    servers.signal(second, nix::sys::signal::Signal::SIGHUP);
    wait_for(
        &servers,
        "restart failed: the process this one replaced still holds the listeners",
        1,
    );
    let log = servers.log();
    assert_eq!(log.matches("started successor").count(), 1, "{log}");
    assert!(!log.contains("listener closed"), "it let go: {log}");
    servers.until_serving();
}

/// `example` started with `args`, restarting on SIGHUP, and restarted
/// once its binary was replaced by a shell script of `script`, which runs
/// as the successor and ends in `exec sleep`, which it has reached:
/// returns the test's directory, the servers, the first server's PID and
/// the successor's (killed and reaped by the servers' drop if the test
/// fails).
fn restarting(
    example: &str,
    tag: &str,
    args: &[&str],
    script: &str,
) -> (TempDir, Servers, i32, i32) {
    let dir = TempDir::new(&format!("restart-{tag}-{example}"));
    let binary = dir.0.join("server");
    install(&example_path(example), &binary);
    let mut servers = Servers::start(&dir.0, &binary, "SIGHUP", args);
    let pid = servers.current();
    install_script(&binary, script);
    servers.signal(pid, nix::sys::signal::Signal::SIGHUP);
    wait_for(&servers, "started successor", 1);
    let successor = last_successor(&servers.log());
    servers.pids.push(successor);
    // The script has run (its `trap`, say) once `sleep` runs.
    let until = Instant::now() + PATIENCE;
    while std::fs::read_to_string(format!("/proc/{successor}/comm"))
        .ok()
        .as_deref()
        != Some("sleep\n")
    {
        assert!(Instant::now() < until, "the successor never ran sleep");
        std::thread::sleep(Duration::from_millis(2));
    }
    (dir, servers, pid, successor)
}

/// The PID of the last successor the log says was started.
fn last_successor(log: &str) -> i32 {
    log.rsplit("started successor ")
        .next()
        .and_then(|rest| rest.split(';').next())
        .and_then(|pid| pid.parse().ok())
        .expect("the successor's PID in the log")
}

/// Waits until the log holds `needle` `count` times.
fn wait_for(servers: &Servers, needle: &str, count: usize) {
    let until = Instant::now() + PATIENCE;
    while servers.log().matches(needle).count() < count {
        assert!(
            Instant::now() < until,
            "never logged {needle:?}:\n{}",
            servers.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_successor_stopped_while_its_predecessor_drains_closes_the_listener_as_its_own_tokio_http() {
    a_successor_stopped_while_its_predecessor_drains_closes_the_listener_as_its_own("tokio_http");
}

#[test]
fn a_successor_stopped_in_its_predecessors_pre_drain_leaves_the_close_to_it_tokio_http() {
    a_successor_stopped_in_its_predecessors_pre_drain_leaves_the_close_to_it("tokio_http");
}

#[test]
fn a_successor_restarts_once_its_predecessor_let_go_tokio_http() {
    a_successor_restarts_once_its_predecessor_let_go("tokio_http");
}

#[test]
fn a_restart_gives_up_on_a_predecessor_that_holds_on_tokio_http() {
    a_restart_gives_up_on_a_predecessor_that_holds_on("tokio_http");
}

#[test]
fn tokio_http_restarts_under_load_fail_no_request() {
    restarts_under_load_fail_no_request("tokio_http", "smol_http");
}

#[test]
fn smol_http_restarts_under_load_fail_no_request() {
    restarts_under_load_fail_no_request("smol_http", "tokio_http");
}

#[test]
fn tokio_echo_restarts_on_sighup_lose_no_line() {
    echo_restarts_lose_no_line("tokio_echo", nix::sys::signal::Signal::SIGHUP);
}

#[test]
fn std_echo_restarts_on_sigusr2_lose_no_line() {
    echo_restarts_lose_no_line("std_echo", nix::sys::signal::Signal::SIGUSR2);
}

#[test]
fn failed_restarts_keep_serving_tokio_http() {
    failed_restarts_keep_serving("tokio_http");
}

#[test]
fn a_stop_during_a_restart_kills_a_stubborn_successor_at_its_deadline_tokio_http() {
    a_stop_during_a_restart_kills_a_stubborn_successor_at_its_deadline("tokio_http");
}

#[test]
fn a_third_signal_during_a_restart_leaves_no_successor_tokio_http() {
    a_third_signal_during_a_restart_leaves_no_successor("tokio_http");
}
