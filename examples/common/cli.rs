//! Flags common to every example (DESIGN §7), logging to stderr, and the
//! one `listening on ADDR` line on stdout.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use graceful_core::restart::{RestartConfig, RestartSignal, Restarter};
use graceful_core::ServeConfig;

/// The parsed command line.
#[derive(Debug, Clone)]
pub(crate) struct Args {
    /// `--addr` (default 127.0.0.1:8080; port 0 picks one).
    pub(crate) addr: SocketAddr,
    /// `--timeout-ms`: the drain deadline (default 30000).
    pub(crate) timeout: Duration,
    /// `--pre-drain-ms`: keep serving this long after the trigger (default 0).
    pub(crate) pre_drain: Duration,
    /// `--delay-ms`: how long each unit of work takes.
    pub(crate) delay: Duration,
    /// `--restart-signal`: the signal that restarts the process with its
    /// listener handed over (none by default).
    pub(crate) restart_signal: Option<RestartSignal>,
    /// `--pid-file`: where the current process's PID is kept.
    pub(crate) pid_file: Option<std::path::PathBuf>,
    /// `--restart-timeout-ms`: how long a successor has to be ready.
    pub(crate) restart_timeout: Duration,
}

impl Args {
    /// The server configuration these flags ask for.
    pub(crate) fn serve_config(&self) -> ServeConfig {
        ServeConfig::default()
            .timeout(self.timeout)
            .pre_drain(self.pre_drain)
            // A listener another process may hold (passed by socket
            // activation, or by a restart whose predecessor still runs) is
            // closed as a shared one whatever this says.
            .exclusive_listener(true)
    }
}

fn usage(name: &str, delay_default: u64) -> String {
    format!(
        "usage: {name} [--addr IP:PORT] [--delay-ms N] [--timeout-ms N] [--pre-drain-ms N]\n\
         \x20      [--restart-signal SIGHUP|SIGUSR2] [--restart-timeout-ms N] [--pid-file PATH]\n\
         \n\
         --addr            address to listen on (default 127.0.0.1:8080; port 0 picks a free port)\n\
         --delay-ms        time each request takes (default {delay_default})\n\
         --timeout-ms      drain deadline after the listener closes (default 30000)\n\
         --pre-drain-ms    keep serving this long after the stop signal (default 0)\n\
         --restart-signal  restart on this signal, handing the listener to the new process\n\
         --restart-timeout-ms  how long the new process has to be ready (default 60000)\n\
         --pid-file        keep the current process's PID in this file"
    )
}

/// Parses the process's arguments; on `--help` prints usage and exits 0, on
/// a malformed or unknown flag prints the problem and usage to stderr and
/// exits 2.
pub(crate) fn parse(name: &str, delay_default_ms: u64) -> Args {
    match parse_from(std::env::args().skip(1), delay_default_ms) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{}", usage(name, delay_default_ms));
            std::process::exit(0);
        }
        Err(msg) => {
            eprintln!("{name}: {msg}\n\n{}", usage(name, delay_default_ms));
            std::process::exit(2);
        }
    }
}

/// Parses `args` (with `lexopt`): `Ok(None)` for `--help`.
pub(crate) fn parse_from(
    args: impl IntoIterator<Item = String>,
    delay_default_ms: u64,
) -> Result<Option<Args>, String> {
    use lexopt::prelude::*;
    let mut parsed = Args {
        addr: "127.0.0.1:8080".parse().unwrap(),
        timeout: Duration::from_millis(30_000),
        pre_drain: Duration::ZERO,
        delay: Duration::from_millis(delay_default_ms),
        restart_signal: None,
        pid_file: None,
        restart_timeout: Duration::from_secs(60),
    };
    let mut parser = lexopt::Parser::from_args(args);
    let value = |parser: &mut lexopt::Parser| -> Result<String, String> {
        let raw = parser.value().map_err(|e| e.to_string())?;
        raw.string().map_err(|e| e.to_string())
    };
    let millis = |parser: &mut lexopt::Parser, flag: &str| -> Result<Duration, String> {
        let v = value(parser)?;
        v.parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("{flag} takes a whole number of milliseconds, not {v:?}"))
    };
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(None),
            Long("addr") => {
                let v = value(&mut parser)?;
                parsed.addr = v.parse().map_err(|_| {
                    format!("--addr takes IP:PORT (like 127.0.0.1:8080 or [::1]:8080), not {v:?}")
                })?;
            }
            Long("delay-ms") => parsed.delay = millis(&mut parser, "--delay-ms")?,
            Long("timeout-ms") => parsed.timeout = millis(&mut parser, "--timeout-ms")?,
            Long("pre-drain-ms") => parsed.pre_drain = millis(&mut parser, "--pre-drain-ms")?,
            Long("restart-signal") => {
                let v = value(&mut parser)?;
                parsed.restart_signal = Some(RestartSignal::from_name(&v).ok_or_else(|| {
                    format!("--restart-signal takes SIGHUP or SIGUSR2, not {v:?}")
                })?);
            }
            Long("restart-timeout-ms") => {
                parsed.restart_timeout = millis(&mut parser, "--restart-timeout-ms")?
            }
            Long("pid-file") => parsed.pid_file = Some(value(&mut parser)?.into()),
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(Some(parsed))
}

/// Logs to stderr; `RUST_LOG` overrides the default `info` level.
pub(crate) fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// The listener: the socket systemd passed (socket activation, the one
/// named `http` or else the first), or else `addr` bound here; exits 1 with
/// a message if it cannot listen. Call it before starting threads: taking
/// activated sockets clears their environment variables.
pub(crate) fn listen(addr: SocketAddr) -> TcpListener {
    let activated = graceful_core::systemd::activated_listener("http")
        .unwrap_or_else(|e| fail(format!("bad socket activation: {e}")));
    match activated {
        Some(listener) => {
            tracing::info!("using the listening socket passed by socket activation");
            listener
        }
        None => match bind(addr) {
            Ok(listener) => listener,
            Err(e) => fail(format!("cannot listen on {addr}: {e}")),
        },
    }
}

/// The accept queue's length: as tokio's `TcpListener::bind` (std's is
/// 128, which a burst of connects overflows: the kernel then answers with
/// SYN cookies, and a connection whose cookie fails is reset).
const BACKLOG: i32 = 1024;

/// Binds `addr` as `TcpListener::bind` does, with a [`BACKLOG`]-long queue.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Prints the one `listening on ADDR` line (the real address) on stdout.
pub(crate) fn announce(listener: &TcpListener) {
    let bound = listener
        .local_addr()
        .unwrap_or_else(|e| fail(e.to_string()));
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {bound}");
    let _ = out.flush();
}

/// What every example starts with.
pub(crate) struct Started<R> {
    pub(crate) args: Args,
    pub(crate) runtime: R,
    pub(crate) shutdown: graceful_core::Shutdown,
    pub(crate) listener: TcpListener,
}

/// Flags, logging, the listener, the runtime, signals, then the
/// `listening on` line and [`serving`]: every example's start, in the order
/// that matters (sockets taken before threads start; the line printed only
/// once signals are handled). `runtime` and `signals` are the adapter's
/// `Runtime::new` and `signals`.
pub(crate) fn start<R: graceful_core::Runtime>(
    name: &str,
    delay_default_ms: u64,
    runtime: fn() -> std::io::Result<R>,
    signals: fn(&graceful_core::Shutdown, graceful_core::SignalConfig) -> std::io::Result<()>,
) -> Started<R> {
    start_with(name, delay_default_ms, runtime, signals, |_| ()).0
}

/// [`start`], with `setup` run on the shutdown before any signal is
/// handled: stages and the guards that keep them open while the program
/// starts, so a stop that comes during start-up cannot find them drained.
pub(crate) fn start_with<R: graceful_core::Runtime, T>(
    name: &str,
    delay_default_ms: u64,
    runtime: fn() -> std::io::Result<R>,
    signals: fn(&graceful_core::Shutdown, graceful_core::SignalConfig) -> std::io::Result<()>,
    setup: impl FnOnce(&graceful_core::Shutdown) -> T,
) -> (Started<R>, T) {
    let args = parse(name, delay_default_ms);
    init_logging();
    let listener = listen(args.addr);
    let runtime = runtime().unwrap_or_else(|e| fail(format!("cannot start the runtime: {e}")));
    let shutdown = graceful_core::Shutdown::named(name.to_string());
    let set_up = setup(&shutdown);
    signals(&shutdown, graceful_core::SignalConfig::default())
        .unwrap_or_else(|e| fail(format!("cannot listen for signals: {e}")));
    restarts(&shutdown, &listener, &args);
    announce(&listener);
    serving(&runtime, &shutdown, &args);
    let started = Started {
        args,
        runtime,
        shutdown,
        listener,
    };
    (started, set_up)
}

/// With `--restart-signal` or `--pid-file`: restarts on the signal, handing
/// the listener over, and keeps the PID file.
fn restarts(shutdown: &graceful_core::Shutdown, listener: &TcpListener, args: &Args) {
    if args.restart_signal.is_none() && args.pid_file.is_none() {
        return;
    }
    let mut config = RestartConfig::new()
        .signal(args.restart_signal)
        .ready_timeout(args.restart_timeout);
    if let Some(path) = &args.pid_file {
        config = config.pid_file(path);
    }
    let restarter = Restarter::new(shutdown, &[("http", listener)], config)
        .unwrap_or_else(|e| fail(format!("cannot set up restarts: {e}")));
    let _ = RESTARTER.set((restarter, args.pre_drain + args.timeout));
}

/// The process's restarter, if restarts are on, and the stop's budget
/// (pre-drain delay and deadline): [`exit`] waits for a restart in
/// progress to end first, within that budget.
static RESTARTER: std::sync::OnceLock<(Restarter, Duration)> = std::sync::OnceLock::new();

/// Exits with the outcome's code (B17), or 1 if serving failed: also 1
/// if a successor being stopped (the stop came during a restart) had to
/// be killed at the deadline.
pub(crate) fn exit(served: std::io::Result<graceful_core::Outcome>) -> ! {
    let restart_ended = RESTARTER
        .get()
        .is_none_or(|(restarter, budget)| restarter.finish_within(*budget));
    match served {
        Ok(outcome) if outcome.exit_code() == 0 && !restart_ended => std::process::exit(1),
        Ok(outcome) => std::process::exit(outcome.exit_code()),
        Err(e) => fail(format!("serve failed: {e}")),
    }
}

/// Prints `msg` to stderr and exits 1.
pub(crate) fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}

/// Once serving: warns if a stop could outlast the supervisor's kill budget
/// (B19), tells systemd the service is ready, and keeps it informed while
/// stopping. Each is a no-op where it does not apply.
pub(crate) fn serving<R: graceful_core::Runtime>(
    runtime: &R,
    shutdown: &graceful_core::Shutdown,
    args: &Args,
) {
    graceful_core::check_kill_budget(args.pre_drain, args.timeout);
    if let Err(e) = graceful_core::systemd::notify_ready() {
        tracing::warn!("cannot notify systemd: {e}");
    }
    if let Err(e) = graceful_core::restart::notify_ready() {
        tracing::warn!("cannot tell the process that restarted into this one: {e}");
    }
    graceful_core::systemd::watch_stop(runtime, shutdown, args.pre_drain + args.timeout);
}
