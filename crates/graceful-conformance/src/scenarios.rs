//! One function per behaviour, generic over the [`Adapter`]. The
//! [`suite!`](crate::suite) macro turns each into a `#[test]` of the same
//! name in every adapter.
//!
//! Bounds are generous (the machine may be loaded); the behaviour, not the
//! speed, is what is checked. Speed belongs to the benchmark.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use graceful_core::{
    Escalation, ForceCause, Outcome, Reason, Runtime, ServeConfig, Shutdown, Signal, SignalConfig,
};

use crate::harness::{eventually, refused_within, Cancellable, Client, Options, Server, PATIENCE};
use crate::script::{scripted, SignalScript};
use crate::Adapter;

const SHORT: Duration = Duration::from_millis(200);

/// Runs the signal handling of `signals(...)` over a scripted source on the
/// adapter's runtime; returns the script and the exit codes the third
/// signal would have exited with.
fn scripted_signals<A: Adapter>(
    rt: &A::Runtime,
    shutdown: &Shutdown,
    config: SignalConfig,
) -> (SignalScript, Arc<Mutex<Vec<i32>>>) {
    let exits = Arc::new(Mutex::new(Vec::new()));
    let e = exits.clone();
    let config = config.on_exit(move |code| e.lock().unwrap().push(code));
    let (script, source) = scripted();
    rt.spawn(Escalation::new(shutdown.clone(), config).run(source));
    (script, exits)
}

fn wait_forced(shutdown: &Shutdown) {
    assert!(
        shutdown.wait_forced_until(Instant::now() + PATIENCE),
        "not forced in time"
    );
}

// ----- core phases on the adapter's runtime --------------------------------

/// Many tasks waiting for the trigger on the adapter's runtime all wake,
/// and a task subscribing after the trigger sees it at once.
pub fn core_waiters_wake_on_the_runtime<A: Adapter>() {
    let rt = A::runtime();
    let shutdown = Shutdown::new();
    let woke = Arc::new(AtomicUsize::new(0));
    let all = shutdown.child();
    for _ in 0..1000 {
        let s = shutdown.clone();
        let woke = woke.clone();
        let g = all.guard();
        rt.spawn(async move {
            s.triggered().await;
            woke.fetch_add(1, Ordering::SeqCst);
            drop(g);
        });
    }
    shutdown.trigger(Reason::requested());
    assert!(all.wait_drained_until(Instant::now() + PATIENCE));
    assert_eq!(woke.load(Ordering::SeqCst), 1000);
    let late = shutdown.clone();
    rt.block_on(async move { late.triggered().await });
}

/// `enforce_deadline` on the adapter's runtime with a manual clock: not forced a
/// moment before the deadline, forced at it, with the report and exit 1.
pub fn core_drain_deadline_on_manual_clock<A: Adapter>() {
    let clock = crate::ManualClock::new();
    let rt = crate::TestRuntime::new(A::runtime(), Some(clock.clone()));
    let shutdown = Shutdown::named("jobs");
    let job = shutdown.guard_named("export 42");
    shutdown.trigger(Reason::requested());
    let (tx, rx) = std::sync::mpsc::channel();
    let (s, r) = (shutdown.clone(), rt.clone());
    std::thread::spawn(move || {
        let outcome = r.block_on(
            s.enforce_deadline(&r, Duration::from_secs(30))
                .progress_every(None),
        );
        let _ = tx.send(outcome);
    });
    assert!(clock.wait_for_sleep(Duration::from_secs(30), PATIENCE));
    clock.advance(Duration::from_millis(29_999));
    assert!(
        rx.recv_timeout(SHORT).is_err(),
        "forced before the deadline"
    );
    assert!(!shutdown.is_forced());
    clock.advance(Duration::from_millis(1));
    wait_forced(&shutdown);
    drop(job);
    let outcome = rx.recv_timeout(PATIENCE).expect("drain returned");
    assert_eq!(outcome.exit_code(), 1);
    let report = outcome.report().expect("a report");
    assert_eq!(report.named[0].name, "export 42");
    assert_eq!(outcome.took(), Duration::from_secs(30));
}

// ----- signals -------------------------------------------------------------

/// B1: the first stop signal triggers with that signal as the reason.
pub fn b1_first_signal_triggers<A: Adapter>() {
    let rt = A::runtime();
    let shutdown = Shutdown::new();
    let (script, _) = scripted_signals::<A>(&rt, &shutdown, SignalConfig::default());
    script.send(Signal::Interrupt);
    assert!(shutdown.wait_triggered_until(Instant::now() + PATIENCE));
    assert!(matches!(
        shutdown.reason(),
        Some(Reason::Signal(Signal::Interrupt))
    ));
    assert!(!shutdown.is_forced());
}

/// B1: SIGHUP and SIGQUIT do nothing unless opted in.
pub fn b1_hangup_and_quit_are_opt_in<A: Adapter>() {
    let rt = A::runtime();
    let default = Shutdown::new();
    let (script, _) = scripted_signals::<A>(&rt, &default, SignalConfig::default());
    script.send(Signal::Hangup);
    script.send(Signal::Quit);
    script.send(Signal::Terminate);
    assert!(default.wait_triggered_until(Instant::now() + PATIENCE));
    assert!(matches!(
        default.reason(),
        Some(Reason::Signal(Signal::Terminate))
    ));

    let opted = Shutdown::new();
    let config = SignalConfig::default().with(Signal::Hangup);
    let (script, _) = scripted_signals::<A>(&rt, &opted, config);
    script.send(Signal::Hangup);
    assert!(opted.wait_triggered_until(Instant::now() + PATIENCE));
    assert!(matches!(
        opted.reason(),
        Some(Reason::Signal(Signal::Hangup))
    ));
}

/// B2: a second stop signal during the drain forces it; the server cuts
/// its connections and the outcome exits 128+signo.
pub fn b2_second_signal_forces_with_128_plus_signo<A: Adapter>() {
    let mut server = Server::<A>::start(Options::default());
    let (script, exits) =
        scripted_signals::<A>(server.rt.inner(), &server.shutdown, SignalConfig::default());
    let mut stuck = server.connect();
    stuck.send("hang");
    assert!(stuck.silent_for(Duration::from_millis(50)));
    script.send(Signal::Terminate);
    assert!(server
        .shutdown
        .wait_triggered_until(Instant::now() + PATIENCE));
    server.assert_running(SHORT);
    script.send(Signal::Terminate);
    wait_forced(&server.shutdown);
    assert!(stuck.closed_within(PATIENCE), "forced connection not cut");
    let outcome = server.outcome();
    assert_eq!(outcome.exit_code(), 143, "{outcome}");
    assert!(exits.lock().unwrap().is_empty());
}

/// B2: the third stop signal exits at once with 128+signo.
pub fn b2_third_signal_exits_at_once<A: Adapter>() {
    let rt = A::runtime();
    let shutdown = Shutdown::new();
    let _work = shutdown.guard();
    let (script, exits) = scripted_signals::<A>(&rt, &shutdown, SignalConfig::default());
    script.send(Signal::Terminate);
    script.send(Signal::Terminate);
    script.send(Signal::Interrupt);
    assert!(
        eventually(PATIENCE, || !exits.lock().unwrap().is_empty()),
        "no exit"
    );
    assert_eq!(*exits.lock().unwrap(), [130]);
}

/// B3: a signal that arrives before anything waits is not lost.
pub fn b3_early_signal_is_not_lost<A: Adapter>() {
    let rt = A::runtime();
    let shutdown = Shutdown::new();
    let (script, source) = scripted();
    script.send(Signal::Terminate);
    // Only now does anything read the source, and only later wait.
    rt.spawn(Escalation::new(shutdown.clone(), SignalConfig::default()).run(source));
    let s = shutdown.clone();
    rt.block_on(async move { s.triggered().await });
    assert!(matches!(
        shutdown.reason(),
        Some(Reason::Signal(Signal::Terminate))
    ));
}

/// B3: a burst counts as the signals it contains and triggers once.
pub fn b3_burst_counts_each_signal_and_triggers_once<A: Adapter>() {
    let rt = A::runtime();
    let shutdown = Shutdown::new();
    let _work = shutdown.guard();
    let hooks = Arc::new(AtomicUsize::new(0));
    let h = hooks.clone();
    shutdown.on_triggered(move |_| {
        h.fetch_add(1, Ordering::SeqCst);
    });
    let (script, exits) =
        scripted_signals::<A>(&rt, &shutdown, SignalConfig::default().exit_after(Some(4)));
    for _ in 0..3 {
        script.send(Signal::Terminate);
    }
    wait_forced(&shutdown);
    // The trigger's hooks run on a thread of their own, and a force never
    // waits for them: they may still be on their way.
    assert!(eventually(PATIENCE, || hooks.load(Ordering::SeqCst) == 1));
    assert!(exits.lock().unwrap().is_empty(), "3 of 4: no exit yet");
    script.send(Signal::Terminate);
    assert!(eventually(PATIENCE, || !exits.lock().unwrap().is_empty()));
    assert_eq!(hooks.load(Ordering::SeqCst), 1);
}

// ----- servers -------------------------------------------------------------

/// B4: once the listener closes, a new connect is refused (not ignored).
pub fn b4_new_connects_refused_after_close<A: Adapter>() {
    let mut server = Server::<A>::start(Options::default());
    server.connect().roundtrip("hello", "hello");
    let mut busy = server.connect();
    busy.send("sleep 300");
    assert!(busy.silent_for(Duration::from_millis(20)));
    server.stop();
    assert!(refused_within(server.addr, Duration::from_millis(500)));
    assert_eq!(busy.read_line().unwrap(), "slept 300");
    assert!(server.outcome().is_drained());
}

/// B4: connections the kernel already queued when the listener closes are
/// accepted and served, not reset.
pub fn b4_queued_connections_are_served_before_close<A: Adapter>() {
    let config = ServeConfig::default()
        .max_connections(Some(1))
        .progress_every(None);
    let mut server = Server::<A>::start(Options::config(config));
    let mut first = server.connect();
    first.roundtrip("one", "one");
    // The server is full: these complete in the kernel's backlog only.
    let mut queued: Vec<_> = (0..3).map(|_| server.connect()).collect();
    for (i, c) in queued.iter_mut().enumerate() {
        c.send(&format!("queued {i}"));
    }
    assert!(
        queued[0].silent_for(Duration::from_millis(100)),
        "not accepted while full"
    );
    server.stop();
    for (i, c) in queued.iter_mut().enumerate() {
        assert_eq!(
            c.read_line().expect("served, not reset"),
            format!("queued {i}")
        );
        assert!(c.closed_within(PATIENCE));
    }
    assert!(first.closed_within(PATIENCE));
    assert!(server.outcome().is_drained());
    assert!(refused_within(server.addr, Duration::from_millis(500)));
}

/// B4, B5: a stop that comes while the server is starting (a signal
/// during start-up): the server starts triggered, serves what its backlog
/// already holds, and returns only once that work is done, instead of
/// counting as drained before its first connection was registered.
pub fn b4_stop_before_serve_starts_serves_the_backlog<A: Adapter>() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut quick = Client::connect(addr);
    let mut slow = Client::connect(addr);
    quick.send("early");
    slow.send("sleep 300");
    let shutdown = Shutdown::new();
    shutdown.trigger(Reason::requested());
    let config = ServeConfig::default().progress_every(None);
    let mut server = Server::<A>::start_on(listener, Options::config(config).under(shutdown));
    assert_eq!(quick.read_line().expect("served, not reset"), "early");
    assert!(
        !server.has_returned(),
        "serve returned while a request from its backlog was in flight"
    );
    assert_eq!(slow.read_line().expect("served, not reset"), "slept 300");
    let outcome = server.outcome();
    assert!(outcome.is_drained(), "{outcome:?}");
    assert!(refused_within(addr, Duration::from_millis(500)));
}

/// B15 (TCP): during the pre-drain delay the listener keeps accepting and
/// serving; a connection accepted then gets the first-request grace (B7)
/// before its reads end; after the delay, connects are refused.
pub fn b15_pre_drain_keeps_accepting_then_refuses<A: Adapter>() {
    let config = ServeConfig::default()
        .pre_drain(Duration::from_secs(5))
        .first_request_grace(Duration::from_secs(1))
        .progress_every(None);
    let mut server = Server::<A>::start(Options::config(config).manual());
    // Idle at the trigger, like a pooled keep-alive connection.
    let mut pooled = server.connect();
    pooled.roundtrip("before", "before");
    server.stop();
    assert!(server
        .clock()
        .wait_for_sleep_ending_at(Duration::from_secs(5), PATIENCE));
    let mut during = server.connect();
    during.roundtrip("still serving", "still serving");
    // Past the first-request grace, still within the delay: neither the
    // pooled connection nor the new one is cut, both are still served.
    server.clock().advance(Duration::from_secs(2));
    assert!(
        pooled.silent_for(Duration::from_millis(50)),
        "an idle connection closed during the pre-drain delay"
    );
    pooled.roundtrip("reused", "reused");
    assert!(
        during.silent_for(Duration::from_millis(50)),
        "a connection accepted during the delay closed within it"
    );
    during.roundtrip("slow to send", "slow to send");
    // The delay ends: the listener closes, idle connections from before
    // the trigger end now; the late one after its grace.
    server.clock().advance(Duration::from_secs(3));
    assert!(refused_within(server.addr, Duration::from_millis(500)));
    // (The late connections' grace is armed before any read ends.)
    assert!(
        pooled.closed_within(PATIENCE),
        "reads end when the listener closes"
    );
    assert!(
        during.silent_for(Duration::from_millis(50)),
        "closed before its grace"
    );
    server.clock().advance(Duration::from_secs(1));
    assert!(during.closed_within(PATIENCE), "reads end after the grace");
    assert!(server.outcome().is_drained());
}

/// B7 (TCP): a connection that is new at the trigger is not cut before it
/// could send its request: one arriving from the backlog with its request
/// a moment later is still served.
pub fn b7_new_connection_gets_the_first_request_grace<A: Adapter>() {
    let config = ServeConfig::default()
        .max_connections(Some(1))
        .progress_every(None);
    let mut server = Server::<A>::start(Options::config(config));
    let mut first = server.connect();
    first.roundtrip("one", "one");
    let mut queued = server.connect();
    let queued_name = format!("conn {}", queued.local_addr());
    server.stop();
    assert!(first.closed_within(PATIENCE));
    // Accepted from the backlog after the trigger, before its request.
    server.wait_accepted(&queued_name);
    queued.roundtrip("sent after the trigger", "sent after the trigger");
    assert!(queued.closed_within(PATIENCE));
    assert!(server.outcome().is_drained());
}

/// One descriptor per connection: the registry that cuts connections at
/// the close and the force shares each connection's socket instead of
/// holding a duplicate, so a server reaches its descriptor limit at as
/// many connections as a plain accept loop.
pub fn one_descriptor_per_connection<A: Adapter>() {
    const N: usize = 40;
    let mut server = Server::<A>::start(Options::default());
    let mut clients: Vec<_> = (0..N).map(|_| server.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.roundtrip(&format!("open {i}"), &format!("open {i}"));
    }
    let fds = crate::harness::descriptors_of_connections_on(server.addr.port())
        .expect("/proc is readable");
    assert_eq!(fds, N, "descriptors held for {N} connections");
    server.stop();
    for c in &mut clients {
        assert!(c.closed_within(PATIENCE));
    }
    assert!(server.outcome().is_drained());
}

/// B5: `serve` returns only once its connections drained.
pub fn b5_serve_returns_only_after_drain<A: Adapter>() {
    let mut server = Server::<A>::start(Options::default());
    let mut busy = server.connect();
    busy.send("sleep 400");
    assert!(busy.silent_for(Duration::from_millis(20)));
    server.stop();
    server.assert_running(Duration::from_millis(200));
    assert_eq!(busy.read_line().unwrap(), "slept 400");
    let outcome = server.outcome();
    assert!(outcome.is_drained(), "{outcome}");
    assert_eq!(outcome.exit_code(), 0);
}

/// A listener that fails for good (here shut down under the server, so
/// that every accept fails with `EINVAL`) stops the server rather than
/// spinning on it: the shutdown passed to `serve` is triggered with the
/// error as its reason, the request in flight is answered, and the outcome
/// drains with exit code 1.
pub fn a_listener_that_fails_for_good_stops_the_server_with_an_error<A: Adapter>() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let same = listener.try_clone().unwrap();
    let mut server = Server::<A>::start_on(listener, Options::default());
    let mut busy = server.connect();
    // Accepted (the listener's shutdown resets what its backlog holds).
    busy.roundtrip("hi", "hi");
    busy.send("sleep 300");
    assert!(busy.silent_for(Duration::from_millis(20)));
    socket2::SockRef::from(&same)
        .shutdown(std::net::Shutdown::Both)
        .unwrap();
    assert!(
        server
            .shutdown
            .wait_triggered_until(Instant::now() + PATIENCE),
        "the failed listener did not stop the server"
    );
    let reason = server.shutdown.reason().unwrap();
    assert!(matches!(reason, Reason::Error(_)), "{reason}");
    assert_eq!(busy.read_line().unwrap(), "slept 300");
    let outcome = server.outcome();
    assert!(outcome.is_drained(), "{outcome}");
    assert_eq!(outcome.exit_code(), 1, "{outcome}");
}

/// B6: a request the server read before the trigger gets its complete
/// response, then the connection ends.
pub fn b6_in_flight_request_completes<A: Adapter>() {
    let mut server = Server::<A>::start(Options::default());
    let mut c = server.connect();
    c.send("sleep 200");
    assert!(c.silent_for(Duration::from_millis(20)));
    server.stop();
    assert_eq!(c.read_line().unwrap(), "slept 200");
    assert!(c.closed_within(PATIENCE));
    assert!(server.outcome().is_drained());
}

/// B7/B8: an idle connection (its handler waiting for input) is closed at
/// the trigger, woken by the trigger itself.
pub fn b7_idle_connection_closed_at_trigger<A: Adapter>() {
    let mut server = Server::<A>::start(Options::default());
    let mut idle = server.connect();
    idle.roundtrip("hi", "hi");
    let t0 = Instant::now();
    server.stop();
    assert!(idle.closed_within(PATIENCE));
    let took = t0.elapsed();
    assert!(
        took < Duration::from_millis(300),
        "idle close took {took:?}"
    );
    assert!(server.outcome().is_drained());
}

/// B7: a handler that tells the server its connection waits idle (the
/// stream's `idle`) has it shut down when the listener closes, before the
/// handler runs again: its client reads the end, not what the handler
/// writes at the end of its input (which a handler that does not tell
/// gets out), also with `close_idle` off; a command that reached the
/// server before the stop (read, or still waiting in its socket) is still
/// answered.
pub fn b7_a_connection_told_idle_is_shut_down_before_its_handler_runs<A: Adapter>() {
    for (tell, close_idle) in [(true, true), (false, true), (true, false)] {
        let options = Options::default().config_close_idle(close_idle);
        let mut server = Server::<A>::start(options.telling_idle(tell));
        let mut idle = server.connect();
        idle.roundtrip("bye", "bye");
        let mut busy = server.connect();
        busy.roundtrip("hi", "hi");
        busy.send("sleep 200");
        busy.delivered();
        server.stop();
        if tell {
            assert!(idle.closed_within(PATIENCE), "told idle: not closed");
        } else {
            assert_eq!(idle.read_line().unwrap(), "bye");
            assert!(idle.closed_within(PATIENCE));
        }
        assert_eq!(busy.read_line().unwrap(), "slept 200");
        match close_idle {
            true => assert!(busy.closed_within(PATIENCE)),
            // Its reads are not ended: the client ends it.
            false => drop(busy),
        }
        let outcome = server.outcome();
        assert!(
            outcome.is_drained(),
            "tell {tell}, close_idle {close_idle}: {outcome}"
        );
    }
}

/// B7: once the server closed a connection as idle, a read takes nothing
/// of what the client sent since (it came after the server looked, and
/// could not be answered) and reports the end of the stream.
pub fn b7_a_read_after_an_idle_close_takes_nothing<A: Adapter>() {
    let (go_tx, go) = futures::channel::oneshot::channel::<()>();
    let go = std::sync::Mutex::new(Some(go));
    let (read_tx, read) = std::sync::mpsc::channel();
    let shutdown = Shutdown::new();
    let s = shutdown.clone();
    let server = Cancellable::start(move |listener, cancelled| {
        let rt = crate::TestRuntime::new(A::runtime(), None);
        let config = ServeConfig::default().progress_every(None);
        let handler = move |mut stream: A::Stream, _| {
            let (go, read_tx) = (go.lock().unwrap().take(), read_tx.clone());
            async move {
                let idle = A::idle(&stream);
                idle.set_idle();
                // The client's line is in the socket by now; the server
                // claims the connection, as after a look that missed it.
                let _ = go.expect("one connection").await;
                let closed = idle.close();
                let mut buf = [0u8; 16];
                let n = futures::AsyncReadExt::read(&mut stream, &mut buf).await;
                let _ = read_tx.send((closed, n.map_err(|e| e.to_string())));
                Ok(())
            }
        };
        let serve = A::serve(&rt, listener, &s, config, handler);
        let _ = rt.block_on(futures::future::select(serve, cancelled));
        rt
    });
    let mut client = Client::connect(server.addr);
    client.send("late");
    client.delivered();
    go_tx.send(()).unwrap();
    let (closed, n) = read.recv_timeout(PATIENCE).expect("the handler read");
    assert!(closed, "the connection was not idle");
    assert_eq!(n, Ok(0), "bytes read after the close were handed on");
    shutdown.trigger(Reason::requested());
}

/// B8: the drain's completion is seen promptly after the last connection
/// ends (event-driven, no poll interval).
pub fn b8_drain_seen_promptly<A: Adapter>() {
    let mut server = Server::<A>::start(Options::default());
    let mut c = server.connect();
    c.send("sleep 150");
    assert!(c.silent_for(Duration::from_millis(20)));
    server.stop();
    assert_eq!(c.read_line().unwrap(), "slept 150");
    let answered = Instant::now();
    let outcome = server.outcome();
    let lag = answered.elapsed();
    assert!(outcome.is_drained());
    assert!(
        lag < Duration::from_millis(100),
        "drain seen {lag:?} after the last reply"
    );
}

/// B9: at the deadline every remaining connection is cut promptly, the
/// outcome says how many, and the report names them.
pub fn b9_deadline_cuts_remaining_connections_and_reports<A: Adapter>() {
    let config = ServeConfig::default()
        .timeout(Duration::from_secs(30))
        .progress_every(None);
    let mut server = Server::<A>::start(Options::config(config).manual());
    let mut stuck = server.connect();
    let stuck_addr = stuck.local_addr();
    stuck.send("hang");
    let mut stuck2 = server.connect();
    stuck2.send("hang");
    let mut fine = server.connect();
    fine.roundtrip("ok", "ok");
    assert!(stuck.silent_for(Duration::from_millis(20)));
    server.stop();
    assert!(fine.closed_within(PATIENCE));
    assert!(server
        .clock()
        .wait_for_sleep(Duration::from_secs(30), PATIENCE));
    server.clock().advance(Duration::from_millis(29_900));
    assert!(
        stuck.silent_for(Duration::from_millis(50)),
        "cut before the deadline"
    );
    server.clock().advance(Duration::from_millis(100));
    let t0 = Instant::now();
    assert!(stuck.closed_within(PATIENCE) && stuck2.closed_within(PATIENCE));
    let cut = t0.elapsed();
    assert!(
        cut < Duration::from_millis(300),
        "cut {cut:?} after the deadline"
    );
    let outcome = server.outcome();
    match &outcome {
        Outcome::Forced { cause, report, .. } => {
            assert_eq!(*cause, ForceCause::Deadline);
            assert_eq!(report.total(), 2, "{report}");
            let names: Vec<_> = report.all_named().iter().map(|g| g.name.clone()).collect();
            assert!(
                names.contains(&format!("conn {stuck_addr}")),
                "{names:?} should name {stuck_addr}"
            );
        }
        other => panic!("expected a forced outcome, got {other}"),
    }
    assert_eq!(outcome.forced_count(), 2);
    assert_eq!(outcome.exit_code(), 1);
}

/// B9 x pre-drain: a force during the pre-drain delay (a second signal)
/// cuts the connections and reports them, and only them: the listener,
/// still open until the force ends the delay, is no work abandoned.
pub fn b9_a_force_during_pre_drain_reports_only_connections<A: Adapter>() {
    let config = ServeConfig::default()
        .pre_drain(Duration::from_secs(5))
        .progress_every(None);
    let mut server = Server::<A>::start(Options::config(config).manual());
    let mut stuck = server.connect();
    let stuck_addr = stuck.local_addr();
    stuck.send("hang");
    // Accepted (so in the report the force takes), not still queued.
    let stuck_name = format!("conn {stuck_addr}");
    server.wait_accepted(&stuck_name);
    server.stop();
    assert!(server
        .clock()
        .wait_for_sleep_ending_at(Duration::from_secs(5), PATIENCE));
    server.shutdown.force(ForceCause::Signal(Signal::Interrupt));
    assert!(stuck.closed_within(PATIENCE));
    let outcome = server.outcome();
    let Outcome::Forced { cause, report, .. } = &outcome else {
        panic!("expected a forced outcome, got {outcome}");
    };
    assert_eq!(*cause, ForceCause::Signal(Signal::Interrupt));
    let names: Vec<_> = report.all_named().iter().map(|g| g.name.clone()).collect();
    assert_eq!(names, [stuck_name], "{report}");
    assert_eq!(outcome.forced_count(), 1, "{report}");
    assert!(
        report.children.is_empty(),
        "the listener is not listed: {report}"
    );
    assert_eq!(outcome.exit_code(), 130);
}

/// B10: a handler that panics loses only its own connection; its guard is
/// released and the shutdown completes.
pub fn b10_panicking_handler_releases_its_guard<A: Adapter>() {
    let mut server = Server::<A>::start(Options::default());
    let mut other = server.connect();
    other.roundtrip("before", "before");
    let mut bad = server.connect();
    bad.send("panic");
    assert!(bad.closed_within(PATIENCE));
    other.roundtrip("after", "after");
    server.connect().roundtrip("new", "new");
    server.stop();
    let outcome = server.outcome();
    assert!(outcome.is_drained(), "{outcome}");
    // The server's stage releases its guard on the root right after it
    // drained: the root drains with nothing held.
    assert!(server
        .shutdown
        .wait_drained_until(Instant::now() + PATIENCE));
    assert_eq!(server.shutdown.held(), 0);
}

/// B10: a handler that panics before it returns its future (in the
/// closure passed to `serve`, say a pool's `get().unwrap()`) costs its
/// connection alone: that connection is closed, the server goes on
/// serving, and the stop drains with nothing held.
pub fn b10_a_handler_that_panics_before_its_future_costs_its_connection_alone<A: Adapter>() {
    let shutdown = Shutdown::new();
    let s = shutdown.clone();
    let (returned, outcome) = std::sync::mpsc::channel();
    let server = Cancellable::start(move |listener, cancelled| {
        let rt = crate::TestRuntime::new(A::runtime(), None);
        let config = ServeConfig::default().progress_every(None);
        let observer = crate::fixture::Observer::default();
        let mut inner = crate::fixture::handler::<A::Stream, _>(rt.clone(), observer, None);
        let mut first = true;
        let handler = move |stream, conn| {
            if std::mem::take(&mut first) {
                panic!("the handler panics before its future");
            }
            inner(stream, conn)
        };
        let serve = A::serve(&rt, listener, &s, config, handler);
        if let futures::future::Either::Left((served, _)) =
            rt.block_on(futures::future::select(serve, cancelled))
        {
            let _ = returned.send(served);
        }
        rt
    });
    let mut bad = Client::connect(server.addr);
    assert!(bad.closed_within(PATIENCE), "the connection was kept");
    let mut good = Client::connect(server.addr);
    good.roundtrip("after", "after");
    drop(good);
    shutdown.trigger(Reason::requested());
    let served = outcome.recv_timeout(PATIENCE).expect("serve returned");
    let outcome = served.expect("serve kept serving");
    assert!(outcome.is_drained(), "{outcome}");
    assert!(shutdown.wait_drained_until(Instant::now() + PATIENCE));
    assert_eq!(shutdown.held(), 0);
}

/// B17: drained in time exits 0; a requested exit code is kept.
pub fn b17_exit_code_zero_when_drained_and_requested_code_kept<A: Adapter>() {
    let mut server = Server::<A>::start(Options::default());
    server.connect().roundtrip("x", "x");
    server.shutdown.trigger(Reason::Signal(Signal::Terminate));
    assert_eq!(server.outcome().exit_code(), 0);

    let mut server = Server::<A>::start(Options::default());
    server.shutdown.trigger(Reason::Requested { code: Some(3) });
    assert_eq!(server.outcome().exit_code(), 3);
}

/// A handler can watch its connection's shutdown and wind down itself.
pub fn conn_handler_sees_the_trigger<A: Adapter>() {
    let mut server = Server::<A>::start(Options::default().config_close_idle(false));
    let mut c = server.connect();
    c.send("wait-trigger");
    assert!(c.silent_for(Duration::from_millis(50)));
    server.stop();
    assert_eq!(c.read_line().unwrap(), "stopping");
    drop(c);
    assert!(server.outcome().is_drained());
}

/// A server with a limit of one connection, full: its first connection
/// served, a second queued in the backlog with its line sent, not served.
fn full_at_one_connection<A: Adapter>() -> (Server<A>, Client, Client) {
    full_at_one_connection_set_as::<A>(Some(1))
}

/// [`full_at_one_connection`], the limit set on the field as `max` (the
/// setter refuses 0; a 0 set on the field is taken as 1).
fn full_at_one_connection_set_as<A: Adapter>(max: Option<usize>) -> (Server<A>, Client, Client) {
    let mut config = ServeConfig::default().progress_every(None);
    config.max_connections = max;
    let server = Server::<A>::start(Options::config(config));
    let mut first = server.connect();
    first.roundtrip("first", "first");
    let mut queued = server.connect();
    queued.send("queued");
    assert!(
        queued.silent_for(Duration::from_millis(150)),
        "served over the limit"
    );
    (server, first, queued)
}

/// With a connection limit, accepting waits for room: a connection over
/// the limit is served later, never dropped. A limit of 0 set on the
/// field is taken as 1 (not a server that accepts nothing).
pub fn max_connections_waits_instead_of_dropping<A: Adapter>() {
    for max in [1, 0] {
        let (mut server, first, mut queued) = full_at_one_connection_set_as::<A>(Some(max));
        drop(first);
        assert_eq!(queued.read_line().unwrap(), "queued", "limit {max}");
        server.stop();
        assert!(server.outcome().is_drained());
    }
}

/// B4 x the connection limit: a client queued in the backlog while the
/// limit is full, whose request is sent, is still taken and served at the
/// close (past the limit), not reset with the listener.
pub fn max_connections_full_at_the_close_still_serves_the_queued<A: Adapter>() {
    let (mut server, mut first, mut queued) = full_at_one_connection::<A>();
    server.stop();
    assert_eq!(queued.read_line().unwrap(), "queued");
    assert!(queued.closed_within(PATIENCE) && first.closed_within(PATIENCE));
    assert!(server.outcome().is_drained());
}

/// Ordered cleanup: a stage declared after the server starts only once the
/// server's connections drained.
pub fn order_stage_after_server_starts_when_it_drained<A: Adapter>() {
    let root = Shutdown::new();
    let http = root.stage("http");
    let pool = root.stage_after("pool", [&http]);
    let mut server = Server::<A>::start(Options::default().under(http.clone()));
    let mut busy = server.connect();
    busy.send("sleep 200");
    assert!(busy.silent_for(Duration::from_millis(20)));
    root.trigger(Reason::requested());
    assert!(!pool.wait_triggered_until(Instant::now() + Duration::from_millis(100)));
    assert_eq!(busy.read_line().unwrap(), "slept 200");
    assert!(pool.wait_triggered_until(Instant::now() + PATIENCE));
    assert!(
        http.is_drained(),
        "the pool started before the server drained"
    );
    assert!(server.outcome().is_drained());
    assert!(root.wait_drained_until(Instant::now() + PATIENCE));
}

/// Forcing from code (or a parent) cuts the server's connections at once
/// and the outcome names the cause.
pub fn forced_from_code_cuts_at_once<A: Adapter>() {
    let mut server = Server::<A>::start(Options::default());
    let mut stuck = server.connect();
    stuck.send("hang");
    assert!(stuck.silent_for(Duration::from_millis(20)));
    server.stop();
    server.assert_running(Duration::from_millis(100));
    server.shutdown.force(ForceCause::Requested);
    assert!(stuck.closed_within(Duration::from_secs(1)));
    let outcome = server.outcome();
    assert!(!outcome.is_drained());
    assert_eq!(outcome.exit_code(), 1);
}

/// A `serve` cancelled (dropped, as a `select!` does) while a handler
/// still works leaves that connection running, and a force of the
/// shutdown passed to `serve` still cuts it: the client sees it end, and
/// the shutdown drains (the connection's guard is released).
pub fn a_cancelled_serve_leaves_busy_connections_to_the_force<A: Adapter>() {
    let shutdown = Shutdown::new();
    let (working, handler_runs) = std::sync::mpsc::channel();
    let s = shutdown.clone();
    let mut server = Cancellable::start(move |listener, cancelled| {
        let rt = crate::TestRuntime::new(A::runtime(), None);
        let config = ServeConfig::default().progress_every(None);
        let serve = A::serve(&rt, listener, &s, config, move |stream, conn| {
            drop(conn);
            let working = working.clone();
            async move {
                let _ = working.send(());
                std::future::pending::<()>().await;
                drop(stream);
                Ok(())
            }
        });
        rt.block_on(futures::future::select(serve, cancelled));
        rt
    });
    let mut client = Client::connect(server.addr);
    handler_runs
        .recv_timeout(PATIENCE)
        .expect("the handler runs");
    server.cancel();
    assert!(
        client.silent_for(SHORT),
        "the cancelled serve's connection ended before the force"
    );
    shutdown.trigger(Reason::requested());
    shutdown.force(ForceCause::Requested);
    assert!(
        client.closed_within(PATIENCE),
        "the force did not cut the connection"
    );
    assert!(
        shutdown.wait_drained_until(Instant::now() + PATIENCE),
        "the cut connection's guard is still held"
    );
}

/// B7: a `serve` cancelled (dropped, as a `select!` does) closed its
/// listener: the read of a connection whose handler waits for input
/// returns end-of-stream, as at any listener close, so the handler ends
/// and the stop drains rather than wait for its deadline; also for a
/// connection accepted during the pre-drain delay.
pub fn a_cancelled_serve_ends_the_reads_of_its_idle_connections<A: Adapter>() {
    // Cancelled while serving; then cancelled during a pre-drain delay,
    // with a connection accepted during it (late: no timer is left for its
    // first-request grace, so its read ends at once too).
    for in_pre_drain in [false, true] {
        let shutdown = Shutdown::new();
        let s = shutdown.clone();
        let mut server = Cancellable::start(move |listener, cancelled| {
            let rt = crate::TestRuntime::new(A::runtime(), None);
            let config = ServeConfig::default()
                .progress_every(None)
                .pre_drain(Duration::from_secs(60));
            let observer = crate::fixture::Observer::default();
            let handler = crate::fixture::handler::<A::Stream, _>(rt.clone(), observer, None);
            let serve = A::serve(&rt, listener, &s, config, handler);
            rt.block_on(futures::future::select(serve, cancelled));
            rt
        });
        let mut clients = vec![Client::connect(server.addr)];
        clients[0].roundtrip("early", "early");
        if in_pre_drain {
            shutdown.trigger(Reason::requested());
            let mut late = Client::connect(server.addr);
            late.roundtrip("late", "late");
            clients.push(late);
        }
        server.cancel();
        for (i, c) in clients.iter_mut().enumerate() {
            assert!(
                c.closed_within(PATIENCE),
                "idle connection {i} of the cancelled serve is still open (pre-drain: {in_pre_drain})"
            );
        }
        shutdown.trigger(Reason::requested());
        assert!(
            shutdown.wait_drained_until(Instant::now() + PATIENCE),
            "an idle connection's guard is still held (pre-drain: {in_pre_drain})"
        );
    }
}

/// The scripted source's signals reach a server end to end: first drains,
/// its outcome carries the signal.
pub fn signal_stops_a_server_gracefully<A: Adapter>() {
    let mut server = Server::<A>::start(Options::default());
    let (script, _) =
        scripted_signals::<A>(server.rt.inner(), &server.shutdown, SignalConfig::default());
    let mut c = server.connect();
    c.send("sleep 100");
    assert!(c.silent_for(Duration::from_millis(20)));
    script.send(Signal::Terminate);
    assert_eq!(c.read_line().unwrap(), "slept 100");
    let outcome = server.outcome();
    assert!(outcome.is_drained());
    assert!(matches!(
        outcome.reason().root(),
        Reason::Signal(Signal::Terminate)
    ));
}

// ----- combinations ----------------------------------------------------------

/// Combinations no single scenario covers: a seeded generator draws stop
/// configurations and client mixes, and every stop keeps the invariants of
/// [`crate::random`]. Runs [`crate::random::FIXED_SEEDS`] seeds, or those
/// `GRACEFUL_SEEDS` / `GRACEFUL_SEED` ask for; a failure prints its seed.
pub fn randomized_stop_over_fixed_seeds<A: Adapter>() {
    crate::random::assert_fixed_coverage(&crate::random::run_seeds::<A>());
}
