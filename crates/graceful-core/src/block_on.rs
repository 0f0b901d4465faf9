//! A minimal executor for one future on the current thread.
//!
//! Invariant: the waker sets `notified` before unparking, and the runner
//! clears it before polling, so a wake that races with a poll is never lost
//! (at worst the future is polled once more than needed).

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Instant;

struct Unparker {
    thread: Thread,
    notified: AtomicBool,
}

impl Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.notified.swap(true, Ordering::AcqRel) {
            self.thread.unpark();
        }
    }
}

/// Polls `future` on this thread, parking between wake-ups, until it
/// resolves or `until` passes (`None` then).
pub(crate) fn run<F: Future>(future: F, until: Option<Instant>) -> Option<F::Output> {
    let unparker = Arc::new(Unparker {
        thread: thread::current(),
        notified: AtomicBool::new(true),
    });
    let waker = Waker::from(unparker.clone());
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if unparker.notified.swap(false, Ordering::AcqRel) {
            if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                return Some(out);
            }
            continue;
        }
        match until {
            None => thread::park(),
            Some(until) => {
                let now = Instant::now();
                if now >= until {
                    return None;
                }
                thread::park_timeout(until - now);
            }
        }
    }
}

/// Runs `future` to completion on this thread, with no runtime.
///
/// The future must not need a runtime's reactor to make progress.
///
/// ```
/// use graceful_core::{block_on, Reason, Shutdown};
///
/// let shutdown = Shutdown::new();
/// shutdown.trigger(Reason::requested());
/// block_on(shutdown.drained());
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    match run(future, None) {
        Some(out) => out,
        None => unreachable!("a wait with no deadline ends only when the future does"),
    }
}
