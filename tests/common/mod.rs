//! Running the examples as real processes: start, read the `listening on`
//! line, send real signals with `kill`, collect stderr, and never leave a
//! process behind.
#![allow(dead_code, unreachable_pub)]

pub mod load;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long any wait may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The path of a built example. Unless `GRACEFUL_EXAMPLES_BUILT` is set
/// (CI builds them all once beforehand), asks cargo to bring it up to date
/// first, once per test process.
pub fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/examples/<name>
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let path = profile_dir.join("examples").join(name);
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if std::env::var_os("GRACEFUL_EXAMPLES_BUILT").is_none() && !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--example", name]);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building example {name} failed");
        built.push(name.to_string());
    }
    assert!(path.exists(), "{} not found", path.display());
    path
}

/// A running example process.
pub struct Service {
    pub name: String,
    pub addr: SocketAddr,
    child: Child,
    stderr: Arc<(Mutex<String>, Condvar)>,
    stderr_done: Option<mpsc::Receiver<()>>,
    /// The lines printed on stdout after the first, once stdout closed.
    stdout_rest: mpsc::Receiver<Vec<String>>,
    status: Option<i32>,
}

impl Service {
    /// Starts example `name` on a free loopback port with `args`, and waits
    /// for its `listening on` line.
    pub fn start(name: &str, args: &[&str]) -> Service {
        Service::start_with(name, args, |_| {})
    }

    /// Like [`start`](Self::start), letting the caller adjust the command.
    pub fn start_with(name: &str, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Service {
        Service::launch(name, &[&["--addr", "127.0.0.1:0"], args].concat(), adjust)
    }

    /// Like [`start`](Self::start), with at most 64 descriptors, so
    /// connections beyond about 50 make `accept` fail with EMFILE.
    pub fn start_with_few_descriptors(name: &str, args: &[&str]) -> Service {
        Service::start_with(name, args, |cmd| {
            let program = cmd.get_program().to_owned();
            let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
            *cmd = Command::new("sh");
            cmd.arg("-c")
                .arg("ulimit -n 64 && exec \"$0\" \"$@\"")
                .arg(program)
                .args(args)
                .env("RUST_LOG", "info,request=debug")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        })
    }

    /// Starts example `name` with exactly `args` (which must make it listen
    /// on a free loopback port), and waits for its `listening on` line.
    pub fn start_exactly(name: &str, args: &[&str]) -> Service {
        Service::launch(name, args, |_| {})
    }

    fn launch(name: &str, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Service {
        let mut cmd = Command::new(example_path(name));
        // Each unit of work read is logged (target `request`), so tests can
        // wait for a request to be in flight instead of sleeping.
        cmd.env("RUST_LOG", "info,request=debug")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        adjust(&mut cmd);
        let mut child = cmd.spawn().expect("spawn example");
        let stderr = Arc::new((Mutex::new(String::new()), Condvar::new()));
        let (done_tx, done_rx) = mpsc::channel();
        {
            let mut pipe = child.stderr.take().unwrap();
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    stderr
                        .0
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                    stderr.1.notify_all();
                }
                let _ = done_tx.send(());
            });
        }
        let (line_tx, line_rx) = mpsc::channel();
        let (rest_tx, stdout_rest) = mpsc::channel();
        {
            let stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                let mut stdout = BufReader::new(stdout);
                let mut line = String::new();
                let first = match stdout.read_line(&mut line) {
                    Ok(0) => None,
                    Ok(_) => Some(Ok(line.trim_end_matches(['\r', '\n']).to_string())),
                    Err(e) => Some(Err(e)),
                };
                let _ = line_tx.send(first);
                // Keep draining so the child never blocks on a full pipe,
                // whatever it prints, to the end.
                let mut rest = Vec::new();
                let mut line = Vec::new();
                while stdout.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                    rest.push(String::from_utf8_lossy(&line).trim_end().to_string());
                    line.clear();
                }
                let _ = rest_tx.send(rest);
            });
        }
        let mut service = Service {
            name: name.to_string(),
            addr: "0.0.0.0:0".parse().unwrap(),
            child,
            stderr,
            stderr_done: Some(done_rx),
            stdout_rest,
            status: None,
        };
        let line = match line_rx.recv_timeout(PATIENCE) {
            Ok(Some(Ok(line))) => line,
            other => panic!(
                "{name} printed no `listening on` line ({other:?}); stderr:\n{}",
                service.stderr()
            ),
        };
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        service.addr = addr.parse().expect("an address");
        service
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `INT`, ...) with the `kill` command.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// The exit code if the process exits within `within`; `-signo` if a
    /// signal killed it, so that a death by signal never passes for the
    /// `128 + signo` the programs exit with after a second signal.
    pub fn exit_within(&mut self, within: Duration) -> Option<i32> {
        if let Some(code) = self.status {
            return Some(code);
        }
        let until = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let code = status
                    .code()
                    .unwrap_or_else(|| status.signal().map_or(i32::MIN, |signo| -signo));
                self.status = Some(code);
                if let Some(done) = self.stderr_done.take() {
                    let _ = done.recv_timeout(Duration::from_secs(2));
                }
                return Some(code);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Asserts that the process exited with `code` (a death by the signal
    /// is not that), forced by a second `signal` (`TERM`, `INT`), after
    /// the forced stop's report naming a connection.
    pub fn assert_exit_forced_by_a_second(&mut self, signal: &str, code: i32) {
        assert_eq!(self.exit_code(), code, "{}", self.stderr());
        let log = self.stderr();
        assert!(
            log.contains(&format!("SIG{signal} received again")),
            "{log}"
        );
        assert!(log.contains("what was left"), "{log}");
        assert!(log.contains("conn 127.0.0.1:"), "{log}");
    }

    /// What the process printed on stdout after its `listening on` line,
    /// once it exited (call after [`exit_code`](Self::exit_code)).
    pub fn stdout_after_the_first_line(&self) -> Vec<String> {
        self.stdout_rest
            .recv_timeout(PATIENCE)
            .expect("stdout still open after the exit")
    }

    /// The exit code; fails the test if the process does not exit in
    /// [`PATIENCE`].
    pub fn exit_code(&mut self) -> i32 {
        match self.exit_within(PATIENCE) {
            Some(code) => code,
            None => panic!("{} did not exit; stderr:\n{}", self.name, self.stderr()),
        }
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.0.lock().unwrap().clone()
    }

    /// Waits until the process has written `needle` to stderr `count` times
    /// (woken by each write, at most [`PATIENCE`]). With the `request` log
    /// target on, this is how a test knows its request is in flight.
    pub fn wait_log(&self, needle: &str, count: usize) {
        let (text, written) = &*self.stderr;
        let until = Instant::now() + PATIENCE;
        let mut text = text.lock().unwrap();
        while text.matches(needle).count() < count {
            let left = until.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{} never logged {needle:?} x{count}:\n{text}",
                self.name
            );
            text = written.wait_timeout(text, left).unwrap().0;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs example `name` with `args` to completion (no server expected);
/// returns its exit code and stderr.
pub fn run_to_exit(name: &str, args: &[&str]) -> (i32, String) {
    let (code, _, stderr) = run_to_exit_with_stdout(name, args);
    (code, stderr)
}

/// [`run_to_exit`], with stdout too: the exit code, stdout and stderr.
pub fn run_to_exit_with_stdout(name: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(example_path(name))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run example");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether a connect to `addr` is refused within `within`.
pub fn refused_within(addr: SocketAddr, within: Duration) -> bool {
    let until = Instant::now() + within;
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return true,
            _ if Instant::now() >= until => return false,
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// How many queued connections a server out of descriptors at its close
/// logged it could not take (and closed), if it logged that.
#[allow(dead_code)] // not every test binary uses it
pub fn could_not_take(log: &str) -> Option<usize> {
    let (_, rest) = log.split_once("could not take ")?;
    let n = rest.split(',').next()?;
    n.strip_prefix("at least ").unwrap_or(n).parse().ok()
}
