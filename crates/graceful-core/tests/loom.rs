//! Model checks of the core's synchronisation (run with
//! `RUSTFLAGS="--cfg loom" cargo test -p graceful-core --release --test loom`).
#![cfg(loom)]

use loom::future::block_on;
use loom::thread;

use graceful_core::{ForceCause, Reason, Shutdown};

/// A trigger racing a subscription: the subscriber always wakes.
#[test]
fn trigger_racing_subscribe() {
    loom::model(|| {
        let s = Shutdown::new();
        let s2 = s.clone();
        let t = thread::spawn(move || {
            assert!(s2.trigger(Reason::requested()));
        });
        block_on(s.triggered());
        assert!(s.is_triggered());
        t.join().unwrap();
    });
}

/// The last guard's release racing a `drained` wait: never a lost wake-up,
/// never drained while a guard is held.
#[test]
fn last_guard_drop_racing_drained_wait() {
    loom::model(|| {
        let s = Shutdown::new();
        let g = s.guard();
        let s2 = s.clone();
        let t = thread::spawn(move || {
            s2.trigger(Reason::requested());
        });
        let t2 = thread::spawn(move || {
            drop(g);
        });
        block_on(s.drained());
        assert_eq!(s.held(), 0);
        t.join().unwrap();
        t2.join().unwrap();
    });
}

/// A guard taken while the trigger runs either counts (and holds the drain)
/// or is detached after the drain; never both drained and counted.
#[test]
fn guard_taken_racing_trigger() {
    loom::model(|| {
        let s = Shutdown::new();
        let s2 = s.clone();
        let t = thread::spawn(move || {
            let g = s2.guard();
            if g.is_attached() {
                assert!(!s2.is_drained());
            }
            drop(g);
        });
        s.trigger(Reason::requested());
        t.join().unwrap();
        block_on(s.drained());
    });
}

/// A child created while the parent is being triggered is triggered too,
/// and while an attached guard of the child is held the parent does not
/// drain. (A child created after the parent triggered, with nothing held,
/// drains at once; a guard taken from it then is detached.)
#[test]
fn child_propagation_racing_parent_trigger() {
    loom::model(|| {
        let root = Shutdown::new();
        let keep = root.guard();
        let r2 = root.clone();
        let t = thread::spawn(move || {
            r2.trigger(Reason::requested());
        });
        let child = root.child();
        let work = child.guard();
        drop(keep);
        if work.is_attached() {
            assert!(!root.is_drained(), "the child still holds work");
        }
        drop(work);
        block_on(child.triggered());
        block_on(root.drained());
        assert!(child.is_drained());
        t.join().unwrap();
    });
}

/// Force racing the trigger: forced implies triggered, and a forced waiter
/// always wakes.
#[test]
fn force_racing_trigger() {
    loom::model(|| {
        let s = Shutdown::new();
        let s2 = s.clone();
        let t = thread::spawn(move || {
            s2.force(ForceCause::Deadline);
        });
        s.trigger(Reason::requested());
        block_on(s.forced());
        assert!(s.is_triggered());
        t.join().unwrap();
    });
}

/// Force racing the last release: both phases are reached and their
/// waiters wake; the outcome is "forced" only if the force found the guard
/// still held (then its report names exactly that one guard).
#[test]
fn force_racing_last_release() {
    loom::model(|| {
        let s = Shutdown::new();
        let g = s.guard();
        s.trigger(Reason::requested());
        let s2 = s.clone();
        let t = thread::spawn(move || {
            s2.force(ForceCause::Deadline);
        });
        drop(g);
        block_on(s.drained());
        block_on(s.forced());
        t.join().unwrap();
        let report = s.forced_report().expect("forced");
        assert!(report.total() <= 1, "the report never over-counts");
        if !s.is_drained_in_time() {
            assert_eq!(
                report.total(),
                1,
                "forced only when the force found the guard"
            );
        }
    });
}

/// A wait abandoned (polled once, then dropped) while the trigger runs:
/// neither a lost wake-up for the other waiter nor a stale registration
/// that breaks the set.
#[test]
fn abandoned_wait_racing_trigger() {
    use std::future::Future;
    use std::task::Context;

    loom::model(|| {
        let s = Shutdown::new();
        let s2 = s.clone();
        let abandoned = thread::spawn(move || {
            let mut wait = Box::pin(s2.triggered());
            let waker = futures::task::noop_waker();
            let _ = wait.as_mut().poll(&mut Context::from_waker(&waker));
            drop(wait);
        });
        let s3 = s.clone();
        let trigger = thread::spawn(move || {
            s3.trigger(Reason::requested());
        });
        block_on(s.triggered());
        abandoned.join().unwrap();
        trigger.join().unwrap();
        // A late waiter sees the phase at once.
        block_on(s.triggered());
    });
}

/// A fresh `drained()` (and `is_drained`) racing the last release, whose
/// drained hook is still running: neither sees the shutdown drained before
/// the hook returned.
#[test]
fn drained_wait_racing_a_drained_hook() {
    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::sync::Arc;

    loom::model(|| {
        let s = Shutdown::new();
        let hook_done = Arc::new(AtomicBool::new(false));
        let h = hook_done.clone();
        s.on_drained(move || h.store(true, Ordering::SeqCst));
        let g = s.guard();
        s.trigger(Reason::requested());
        let t = thread::spawn(move || drop(g));
        if s.is_drained() {
            assert!(
                hook_done.load(Ordering::SeqCst),
                "drained seen before its hook ran"
            );
        }
        block_on(s.drained());
        assert!(
            hook_done.load(Ordering::SeqCst),
            "drained() returned before its hook ran"
        );
        t.join().unwrap();
    });
}

/// A stage forced during the stop drains while the root's other guard is
/// released on another thread: whichever release is the root's last, the
/// root's drain is never clean.
#[test]
fn stage_drained_forced_racing_the_roots_last_release() {
    loom::model(|| {
        let root = Shutdown::new();
        let stage = root.stage("server");
        let held = stage.guard();
        let other = root.guard();
        root.trigger(Reason::requested());
        stage.force(ForceCause::Deadline);
        let t = thread::spawn(move || drop(other));
        drop(held);
        drop(stage);
        t.join().unwrap();
        block_on(root.drained());
        assert!(!root.is_drained_in_time());
    });
}

/// A report taken while a child's last guard is released never counts
/// less than what is held for certain (the root's own guard): the children
/// are taken first, the count next, and a child is listed only while it
/// still holds its parent, so the parent's own count (its guards minus
/// those of listed children) never loses one of its own.
#[test]
fn report_racing_a_childs_last_release() {
    loom::model(|| {
        let root = Shutdown::new();
        let _own = root.guard();
        let child = root.child();
        let g = child.guard();
        root.trigger(Reason::requested());
        let t = thread::spawn(move || drop(g));
        let report = root.report();
        assert!(report.total() >= 1, "{report}");
        assert!(report.total() <= 2, "{report}");
        t.join().unwrap();
        drop(child);
    });
}

/// A report taken while a child is made (a server started during the
/// stop) never counts less than the root's own guard either.
#[test]
fn report_racing_a_childs_creation() {
    loom::model(|| {
        let root = Shutdown::new();
        let _own = root.guard();
        let r2 = root.clone();
        let t = thread::spawn(move || r2.child());
        let report = root.report();
        assert!(report.total() >= 1, "{report}");
        assert!(report.total() <= 2, "{report}");
        drop(t.join().unwrap());
    });
}

/// A read racing the registry's close of an idle connection: either the
/// read claims the connection first (the close then leaves it, also after
/// the read took a byte), or the close comes first (the read then takes
/// nothing); a byte is never taken from a connection the registry closed,
/// nor the connection closed while a read runs.
#[test]
fn read_racing_an_idle_close() {
    use graceful_core::server::Idle;
    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::sync::Arc;
    use std::task::Poll;
    loom::model(|| {
        let idle = Arc::new(Idle::default());
        let reading = Arc::new(AtomicBool::new(false));
        idle.set_idle();
        let closer = {
            let (idle, reading) = (idle.clone(), reading.clone());
            thread::spawn(move || {
                let closed = idle.close();
                assert!(
                    !(closed && reading.load(Ordering::SeqCst)),
                    "closed under a read"
                );
                closed
            })
        };
        // A read that takes a byte.
        let read = idle.read(|| {
            reading.store(true, Ordering::SeqCst);
            reading.store(false, Ordering::SeqCst);
            Poll::Ready(Ok(1))
        });
        let handed_on = matches!(read, Poll::Ready(Ok(1)));
        let closed = closer.join().unwrap();
        assert!(
            handed_on != closed,
            "handed on {handed_on}, closed {closed}"
        );
        assert_eq!(idle.is_closed(), closed);
    });
}
