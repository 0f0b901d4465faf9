//! Escalation of stop signals (B1–B3), driven by a scripted source.

use std::sync::{Arc, Mutex};

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
    assert_eq!(esc.handle(Signal::Terminate), SignalAction::Triggered);
    assert!(matches!(
        s.reason(),
        Some(Reason::Signal(Signal::Terminate))
    ));
    assert!(!s.is_forced());
    assert_eq!(esc.handle(Signal::Interrupt), SignalAction::Forced);
    assert_eq!(s.force_cause(), Some(ForceCause::Signal(Signal::Interrupt)));
    assert!(exits.lock().unwrap().is_empty());
    assert_eq!(esc.handle(Signal::Terminate), SignalAction::Exit(143));
    assert_eq!(*exits.lock().unwrap(), [143]);
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
    assert_eq!(esc.handle(Signal::Hangup), SignalAction::Triggered);
    assert!(matches!(s.reason(), Some(Reason::Signal(Signal::Hangup))));
}

#[test]
fn a_burst_counts_each_signal_and_never_triggers_twice() {
    let s = Shutdown::new();
    let _work = s.guard();
    let triggers = Arc::new(Mutex::new(0));
    let t = triggers.clone();
    s.on_shutdown(move |_| *t.lock().unwrap() += 1);
    let (config, exits) = recording();
    let esc = Escalation::new(s.clone(), config.exit_after(Some(5)));
    block_on(esc.run(stream::iter([Signal::Terminate; 4])));
    assert_eq!(*triggers.lock().unwrap(), 1);
    assert!(s.is_forced());
    assert!(exits.lock().unwrap().is_empty(), "4 < 5: no exit");
}

#[test]
fn a_signal_after_a_code_request_still_counts_as_the_first() {
    let s = Shutdown::new();
    let _work = s.guard();
    s.request();
    let (config, _) = recording();
    let esc = Escalation::new(s.clone(), config);
    assert_eq!(esc.handle(Signal::Terminate), SignalAction::Triggered);
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
