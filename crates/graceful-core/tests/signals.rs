//! Escalation of stop signals (B1–B3), driven by a scripted source.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use futures::stream;
use graceful_core::{Escalation, ForceCause, Reason, Shutdown, Signal, SignalAction, SignalConfig};

fn recording() -> (SignalConfig, Arc<Mutex<Vec<i32>>>) {
    let exits = Arc::new(Mutex::new(Vec::new()));
    let e = exits.clone();
    (
        SignalConfig::default().on_exit(move |c| e.lock().unwrap().push(c)),
        exits,
    )
}

#[test]
fn first_triggers_second_forces_third_exits() {
    let s = Shutdown::new();
    let _work = s.guard();
    let (config, exits) = recording();
    let esc = Escalation::new(s.clone(), config);
    assert_eq!(esc.on_signal(Signal::Terminate), SignalAction::Triggered);
    assert!(matches!(
        s.reason(),
        Some(Reason::Signal(Signal::Terminate))
    ));
    assert!(!s.is_forced());
    assert_eq!(esc.on_signal(Signal::Interrupt), SignalAction::Forced);
    assert_eq!(s.force_cause(), Some(ForceCause::Signal(Signal::Interrupt)));
    assert!(exits.lock().unwrap().is_empty());
    assert_eq!(esc.handle(Signal::Terminate), SignalAction::Exit(143));
    assert_eq!(*exits.lock().unwrap(), [143]);
}

/// `handle` (what the OS listener calls) acts on the second and third
/// signal while an `on_triggered` hook of the first still blocks.
#[test]
fn a_blocking_hook_never_holds_back_the_next_signal() {
    let s = Shutdown::new();
    let _work = s.guard();
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
    s.on_triggered(move |_| {
        entered_tx.send(()).unwrap();
        // Blocks until the test ends (or 10 s).
        let _ = blocked.recv_timeout(Duration::from_secs(10));
    });
    let (config, exits) = recording();
    let esc = Escalation::new(s.clone(), config);
    assert_eq!(esc.handle(Signal::Interrupt), SignalAction::Triggered);
    entered
        .recv_timeout(Duration::from_secs(10))
        .expect("the hook runs");
    let start = Instant::now();
    assert_eq!(esc.handle(Signal::Interrupt), SignalAction::Forced);
    assert!(
        s.wait_forced_until(Instant::now() + Duration::from_secs(2)),
        "the second signal did not force within 2 s while a hook blocked (for 10 s)"
    );
    assert_eq!(esc.handle(Signal::Interrupt), SignalAction::Exit(130));
    assert_eq!(*exits.lock().unwrap(), [130]);
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(matches!(
        s.reason(),
        Some(Reason::Signal(Signal::Interrupt))
    ));
    drop(release);
}

/// A burst (two signals handled back to back, before the first signal's
/// thread ran) while an `on_triggered` hook blocks: the force does not wait
/// for the hook, and the reason is the first signal.
#[test]
fn a_burst_forces_at_once_with_the_first_signal_as_reason() {
    let s = Shutdown::new();
    let _work = s.guard();
    let (release, blocked) = std::sync::mpsc::channel::<()>();
    s.on_triggered(move |_| {
        let _ = blocked.recv_timeout(Duration::from_secs(10));
    });
    let (config, _) = recording();
    let esc = Escalation::new(s.clone(), config);
    assert_eq!(esc.handle(Signal::Interrupt), SignalAction::Triggered);
    assert_eq!(esc.handle(Signal::Terminate), SignalAction::Forced);
    assert!(
        s.wait_forced_until(Instant::now() + Duration::from_secs(2)),
        "the force waited for a blocking hook (of 10 s)"
    );
    assert!(matches!(
        s.reason(),
        Some(Reason::Signal(Signal::Interrupt))
    ));
    assert_eq!(s.force_cause(), Some(ForceCause::Signal(Signal::Terminate)));
    drop(release);
}

/// SIGINT and SIGTERM arriving together on two threads: one triggers, the
/// other forces, and the recorded reason is a signal, never `Forced`.
#[test]
fn racing_signals_record_a_signal_as_the_reason() {
    for _ in 0..200 {
        let s = Shutdown::new();
        let _work = s.guard();
        let (config, _) = recording();
        let esc = Escalation::new(s.clone(), config);
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let threads: Vec<_> = [Signal::Interrupt, Signal::Terminate]
            .into_iter()
            .map(|signal| {
                let (esc, barrier) = (esc.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    esc.on_signal(signal)
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(s.is_forced());
        // The reason is the signal that counted first, the force cause the
        // other one: never `Forced`, never the same signal twice.
        let (Some(Reason::Signal(first)), Some(ForceCause::Signal(second))) =
            (s.reason(), s.force_cause())
        else {
            panic!("reason {:?}, cause {:?}", s.reason(), s.force_cause());
        };
        assert_ne!(first, second);
    }
}

/// A signal named twice in `only` is registered once: one Ctrl+C triggers
/// and does not force.
#[test]
fn only_removes_every_duplicate() {
    let config =
        SignalConfig::default().only([Signal::Interrupt, Signal::Terminate, Signal::Interrupt]);
    assert_eq!(config.signals(), [Signal::Interrupt, Signal::Terminate]);
}

#[test]
fn signals_outside_the_set_are_ignored_and_opt_in_works() {
    let s = Shutdown::new();
    let esc = Escalation::new(s.clone(), SignalConfig::default());
    assert_eq!(esc.handle(Signal::Hangup), SignalAction::Ignored);
    assert_eq!(esc.handle(Signal::Quit), SignalAction::Ignored);
    assert!(!s.is_triggered());
    let s = Shutdown::new();
    let esc = Escalation::new(s.clone(), SignalConfig::default().with(Signal::Hangup));
    assert_eq!(esc.on_signal(Signal::Hangup), SignalAction::Triggered);
    assert!(matches!(s.reason(), Some(Reason::Signal(Signal::Hangup))));
}

#[test]
fn a_burst_counts_each_signal_and_never_triggers_twice() {
    let s = Shutdown::new();
    let _work = s.guard();
    let triggers = Arc::new(Mutex::new(0));
    let t = triggers.clone();
    s.on_triggered(move |_| *t.lock().unwrap() += 1);
    let (config, exits) = recording();
    let esc = Escalation::new(s.clone(), config.exit_after(Some(5)));
    block_on(esc.clone().run(stream::iter([Signal::Terminate; 4])));
    // The trigger and the forces run off the signal's thread.
    assert!(s.wait_forced_until(Instant::now() + Duration::from_secs(10)));
    let until = Instant::now() + Duration::from_secs(10);
    while *triggers.lock().unwrap() == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(*triggers.lock().unwrap(), 1);
    assert_eq!(esc.count(), 4);
    assert!(exits.lock().unwrap().is_empty(), "4 < 5: no exit");
}

#[test]
fn a_signal_after_a_code_request_still_counts_as_the_first() {
    let s = Shutdown::new();
    let _work = s.guard();
    s.trigger(Reason::requested());
    let (config, _) = recording();
    let esc = Escalation::new(s.clone(), config);
    assert_eq!(esc.on_signal(Signal::Terminate), SignalAction::Triggered);
    assert!(!s.is_forced());
    assert!(matches!(s.reason(), Some(Reason::Requested { .. })));
}

#[test]
fn exit_codes_are_128_plus_signo() {
    assert_eq!(Signal::Interrupt.exit_code(), 130);
    assert_eq!(Signal::Terminate.exit_code(), 143);
    assert_eq!(Signal::Hangup.exit_code(), 129);
    assert_eq!(Signal::Quit.exit_code(), 131);
    for s in [
        Signal::Interrupt,
        Signal::Terminate,
        Signal::Hangup,
        Signal::Quit,
    ] {
        assert_eq!(Signal::from_number(s.number()), Some(s));
    }
}

/// `exit_after(None)`: no number of stop signals exits the process.
#[test]
fn with_no_exit_count_no_signal_exits() {
    let s = Shutdown::new();
    let _work = s.guard();
    let (config, exits) = recording();
    let esc = Escalation::new(s.clone(), config.exit_after(None));
    let actions: Vec<SignalAction> = (0..5).map(|_| esc.handle(Signal::Terminate)).collect();
    assert_eq!(actions[0], SignalAction::Triggered);
    assert!(
        actions[1..].iter().all(|a| *a == SignalAction::Forced),
        "{actions:?}"
    );
    // `handle` forces on a thread of its own.
    assert!(s.wait_forced_until(Instant::now() + Duration::from_secs(10)));
    assert!(exits.lock().unwrap().is_empty());
}
