//! Real OS signals through `listen_signals`: the only test in this binary,
//! since handlers are process-wide.
#![cfg(all(unix, feature = "signals"))]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use graceful_core::{listen_signals, ForceCause, Reason, Shutdown, Signal, SignalConfig};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::low_level::raise;

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn raised_signals_trigger_force_then_exit() {
    let shutdown = Shutdown::new();
    let _work = shutdown.guard();
    let exits = Arc::new(Mutex::new(Vec::new()));
    let e = exits.clone();
    let config = SignalConfig::default().on_exit(move |code| e.lock().unwrap().push(code));

    // Raised before anything awaits the shutdown: not lost (B3).
    listen_signals(&shutdown, config).unwrap();
    raise(SIGTERM).unwrap();
    shutdown.wait_triggered_until(Instant::now() + Duration::from_secs(5));
    assert!(matches!(
        shutdown.reason(),
        Some(Reason::Signal(Signal::Terminate))
    ));
    assert!(!shutdown.is_forced());

    raise(SIGINT).unwrap();
    assert!(shutdown.wait_forced_until(Instant::now() + Duration::from_secs(5)));
    assert_eq!(
        shutdown.force_cause(),
        Some(ForceCause::Signal(Signal::Interrupt))
    );
    assert!(exits.lock().unwrap().is_empty());

    raise(SIGTERM).unwrap();
    wait_for("the exit", || !exits.lock().unwrap().is_empty());
    assert_eq!(*exits.lock().unwrap(), [143]);
}
